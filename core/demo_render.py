"""Defects and image finishing of the Nexperia-like demo renderer: :func:`render_part`.

Places a part from :mod:`core.demo_scene` in its pocket, plants one of the 13 defects with a
severity and a bounding box, and adds lighting, blur and sensor noise. See
:mod:`core.demodata` for the data set written from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from core.demo_scene import (
    IMAGE_SHAPE,
    NEXPERIA_LIGHTING,
    PRODUCTS,
    Box,
    Lighting,
    Look,
    Part,
    Pose,
    Product,
    draw_layer,
    draw_look,
    scene,
)

# Relative frequencies among bad images of the "mixed" style. The big, unmistakable failures
# (empty pocket, overexposure, two parts) are rarer in real lots than lead and body damage.
DEFECT_WEIGHTS = {
    "rotated": 9, "shifted": 8, "missing_lead": 10, "bent_lead": 9, "extra_lead": 6,
    "chipped_corner": 9, "crack": 9, "particle": 10, "missing_marking": 7,
    "smeared_marking": 7, "empty_pocket": 5, "overexposed": 5, "two_parts": 6,
}
DEFECT_TYPES = tuple(DEFECT_WEIGHTS)

SUBTLE_FRACTION = 0.1
"""Share of bad images drawn with a low severity (hard to see at reduced resolution)."""

_H, _W = IMAGE_SHAPE


# --- geometry -------------------------------------------------------------------------------------

def _frame_points(pose: Pose, canvas: int, xs: Sequence[float], ys: Sequence[float]):
    """Canvas points -> frame points for a part placed with ``pose``."""
    c = canvas / 2
    t = math.radians(pose.angle)
    cos, sin = math.cos(t), math.sin(t)
    ox, oy = _W / 2 + pose.dx, _H / 2 + pose.dy
    u, v = np.asarray(xs, float) - c, np.asarray(ys, float) - c
    return cos * u - sin * v + ox, sin * u + cos * v + oy


def _frame_box(pose: Pose, canvas: int, box: Box, pad: int = 2) -> tuple[int, int, int, int]:
    """Frame bounding box (x, y, w, h) of a canvas box, clipped to the image."""
    xs, ys = _frame_points(pose, canvas, [box.x0, box.x1, box.x1, box.x0],
                           [box.y0, box.y0, box.y1, box.y1])
    return _clip_box(xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad)


def _clip_box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    x1, y1 = min(_W, math.ceil(x1)), min(_H, math.ceil(y1))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _warp_into(frame: np.ndarray, value: np.ndarray, alpha: np.ndarray, crop: Box,
               pose: Pose, canvas: int) -> None:
    """Lays a part (premultiplied value, coverage) over ``frame`` at ``pose``.

    One bilinear affine warp done by PIL in C, on an 8-bit image (value in red, coverage in
    green) cropped to the part: the warp is the costliest step of a render, its cost grows
    with the area, and 8 bits are all the final JPEG keeps anyway. Not "LA": PIL would treat
    the second band as alpha and premultiply the already premultiplied value once more.
    """
    x, y, w, h = _frame_box(pose, canvas, crop, pad=1)
    if w == 0 or h == 0:
        return
    c = canvas / 2
    t = math.radians(pose.angle)
    cos, sin = math.cos(t), math.sin(t)
    ox, oy = _W / 2 + pose.dx - x, _H / 2 + pose.dy - y
    coeffs = (cos, sin, c - cos * ox - sin * oy - crop.x0,
              -sin, cos, c + sin * ox - cos * oy - crop.y0)
    rows, cols = slice(int(crop.y0), int(crop.y1)), slice(int(crop.x0), int(crop.x1))
    layers = np.zeros((rows.stop - rows.start, cols.stop - cols.start, 3), np.uint8)
    layers[..., 0] = np.clip(value[rows, cols] + 0.5, 0, 255)
    layers[..., 1] = alpha[rows, cols] * 255 + 0.5
    warped = np.asarray(Image.fromarray(layers).transform(
        (w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR))
    cover = warped[..., 1] * np.float32(1 / 255)
    window = frame[y:y + h, x:x + w]
    window *= 1 - cover
    window += warped[..., 0]


# --- defects --------------------------------------------------------------------------------------

@dataclass
class _Defect:
    """What a defect function may change, and where it reports the damage."""

    product: Product
    part: Part
    pose: Pose
    rng: np.random.Generator
    severity: float
    show_part: bool = True
    canvas_box: Box | None = None                    # damage on the part's canvas
    after: Callable[[np.ndarray], tuple[int, int, int, int]] | None = None  # frame-level damage

    def between(self, low: float, high: float) -> float:
        """A value that grows with severity, with a little randomness."""
        s = float(np.clip(self.severity + self.rng.normal(0, 0.05), 0, 1))
        return low + (high - low) * s


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _defect_rotated(d: _Defect) -> None:
    d.pose.angle = _sign(d.rng) * d.between(4.0, 24.0)
    d.canvas_box = d.part.template.extent


def _defect_shifted(d: _Defect) -> None:
    distance = d.between(10.0, 52.0)
    direction = d.rng.uniform(0, 2 * math.pi)
    d.pose.dx += distance * math.cos(direction)
    d.pose.dy += distance * math.sin(direction) * 0.8
    d.pose.angle += d.rng.normal(0, 3.0)   # a part off its seat also tends to tilt
    d.canvas_box = d.part.template.extent


def _pick_lead(d: _Defect) -> tuple[Box, int]:
    boxes = d.part.template.lead_boxes
    return boxes[int(d.rng.integers(len(boxes)))]


def _erase(d: _Defect, box: Box) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    d.part.edit("leads")[y0:y1, x0:x1] = 0
    d.part.edit("alpha")[y0:y1, x0:x1] = d.part.body[y0:y1, x0:x1] > 0


def _defect_missing_lead(d: _Defect) -> None:
    box, side = _pick_lead(d)
    # Subtle: only the outer part of the lead broke off.
    keep = 0.0 if d.severity >= 0.35 else 0.5 - d.severity
    stump = keep * (box.y1 - box.y0)
    # The outer end is away from the body: y1 for a lead below it, y0 for one above.
    gone = (Box(box.x0, box.y0 + stump, box.x1, box.y1) if side > 0
            else Box(box.x0, box.y0, box.x1, box.y1 - stump))
    gone = Box(*(round(v) for v in gone))
    _erase(d, gone)
    d.canvas_box = gone


def _paint_polygon(d: _Defect, points: list[tuple[float, float]], level: float = 0.9) -> None:
    d.part.leads = draw_layer(d.part.edit("leads"), lambda g: g.polygon(points, fill=level))
    d.part.alpha = draw_layer(d.part.edit("alpha"), lambda g: g.polygon(points, fill=1.0))


def _defect_bent_lead(d: _Defect) -> None:
    box, side = _pick_lead(d)
    _erase(d, box)
    sway = _sign(d.rng) * d.between(5.0, 26.0)
    length = (box.y1 - box.y0) * d.rng.uniform(0.75, 1.0)
    root = box.y0 if side > 0 else box.y1
    tip = root + side * length
    pts = [(box.x0, root), (box.x1, root), (box.x1 + sway, tip), (box.x0 + sway, tip)]
    _paint_polygon(d, pts, level=d.rng.uniform(0.8, 1.05))
    xs = [x for x, _ in pts]
    # The box covers where the lead should be as well as where it went.
    d.canvas_box = Box(min(xs + [box.x0]), min(root, tip, box.y0), max(xs + [box.x1]),
                        max(root, tip, box.y1))


def _defect_extra_lead(d: _Defect) -> None:
    t, p = d.part.template, d.product
    scale = d.between(0.45, 1.0)
    w, length = p.lead_w * scale, p.lead_len * scale
    body = t.body_box
    if d.rng.random() < 0.5:   # a stray lead on the left or right side of the body
        side = _sign(d.rng)
        x_edge = body.x1 if side > 0 else body.x0
        y = d.rng.uniform(body.y0 + w, body.y1 - w)
        x0, x1 = sorted((x_edge, x_edge + side * length))
        box = Box(x0, y - w / 2, x1, y + w / 2)
    else:                      # a second lead beside the existing top or bottom one
        lead, side = _pick_lead(d)
        x = lead.x1 + 4 if d.rng.random() < 0.5 else lead.x0 - 4 - w
        root = body.y0 if side < 0 else body.y1
        y0, y1 = sorted((root, root + side * length))
        box = Box(x, y0, x + w, y1)
    _paint_polygon(d, [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)])
    d.canvas_box = box


def _defect_chipped_corner(d: _Defect) -> None:
    b = d.part.template.body_box
    a = d.between(9.0, 36.0)
    legs = (a, a * d.rng.uniform(0.5, 1.1))
    sx, sy = _sign(d.rng), _sign(d.rng)
    cx = b.x1 if sx > 0 else b.x0
    cy = b.y1 if sy > 0 else b.y0
    p1, p2 = (cx - sx * legs[0], cy), (cx, cy - sy * legs[1])
    tri = [(cx, cy), p1, p2]
    d.part.alpha = draw_layer(d.part.edit("alpha"), lambda g: g.polygon(tri, fill=0.0))
    d.part.body = draw_layer(d.part.edit("body"), lambda g: g.polygon(tri, fill=0.0))
    # The broken face catches the light: a bright sliver along the fracture.
    bright = d.between(90.0, 200.0)
    width = 2 if d.severity < 0.35 else 4
    d.part.extra = draw_layer(d.part.edit("extra"),
                         lambda g: g.line([p1, p2], fill=bright, width=width))
    xs, ys = [x for x, _ in tri], [y for _, y in tri]
    d.canvas_box = Box(min(xs) - width, min(ys) - width, max(xs) + width, max(ys) + width)


def _defect_crack(d: _Defect) -> None:
    b = d.part.template.body_box
    # Steeper than the stripe band's horizontal lines, so a crack never passes for a stripe.
    angle = math.radians(d.rng.uniform(30, 150))
    cx, cy = d.rng.uniform(b.x0 + 10, b.x1 - 10), d.rng.uniform(b.y0 + 8, b.y1 - 8)
    half = d.between(0.25, 0.6) * math.hypot(b.x1 - b.x0, b.y1 - b.y0)
    t = np.linspace(-half, half, 9)
    wobble = d.rng.normal(0, 1.8, t.size)
    xs = cx + t * math.cos(angle) - wobble * math.sin(angle)
    ys = cy + t * math.sin(angle) + wobble * math.cos(angle)
    pts = list(zip(xs.tolist(), ys.tolist(), strict=True))
    dark = d.rng.random() < 0.2
    # A dark crack on the dark body shows less, so it is drawn a pixel wider.
    width = (1 if d.severity < 0.35 else 2) + dark
    level = d.between(60.0, 160.0) * (-0.6 if dark else 1.0)
    d.part.extra = draw_layer(d.part.edit("extra"), lambda g: g.line(pts, fill=level, width=width))
    d.part.extra *= d.part.body > 0
    rows, cols = np.nonzero(d.part.extra)
    d.canvas_box = Box(cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def _defect_missing_marking(d: _Defect) -> None:
    g = d.part.glyph_box()
    glyphs = d.part.glyphs.copy()
    if d.severity < 0.3:       # subtle: only part of the marking is missing
        glyphs[:, : glyphs.shape[1] // 2] = 0
    else:
        glyphs[:] = 0
    d.part.glyphs = glyphs
    d.canvas_box = g


def _defect_smeared_marking(d: _Defect) -> None:
    length = int(d.between(4, 22))
    step = _sign(d.rng)
    drift = d.rng.uniform(-0.15, 0.15)     # rows per column of drag
    g = d.part.glyphs
    gh, gw = g.shape
    pad = length + 2
    smear = np.zeros((gh + 2 * pad, gw + 2 * pad), np.float32)
    for k in range(length + 1):            # the ink dragged sideways while still wet
        y, x = pad + round(drift * k), pad + step * k
        smear[y:y + gh, x:x + gw] += g
    smear *= 1.3 / (length + 1) ** 0.6
    smear[pad:pad + gh, pad:pad + gw] += 0.35 * g
    d.part.glyphs = np.minimum(smear, 1.1)
    d.canvas_box = d.part.glyph_box()


def _defect_overexposed(d: _Defect) -> None:
    lv = d.part.levels
    lv["body"] = d.between(150.0, 235.0)
    lv["stripe"] *= 0.3
    lv["mark"] *= 0.3
    d.canvas_box = d.part.template.body_box


def _defect_empty_pocket(d: _Defect) -> None:
    d.show_part = False
    d.canvas_box = d.part.template.extent


def _defect_particle(d: _Defect) -> None:
    on_body = d.rng.random() < 0.6
    if on_body:
        b = d.part.template.body_box
        xs, ys = _frame_points(d.pose, d.product.canvas, [d.rng.uniform(b.x0 + 4, b.x1 - 4)],
                               [d.rng.uniform(b.y0 + 4, b.y1 - 4)])
        x, y = float(xs[0]), float(ys[0])
    else:
        x, y = d.rng.uniform(40, _W - 40), d.rng.uniform(40, _H - 40)
    radius = d.between(2.5, 13.0)
    blobs = [(x + d.rng.normal(0, radius / 2), y + d.rng.normal(0, radius / 2),
              radius * d.rng.uniform(0.5, 1.0), radius * d.rng.uniform(0.5, 1.0))
             for _ in range(int(d.rng.integers(1, 4)))]
    # Dark dirt only shows against the body; on the dark pocket floor it is bright debris.
    bright = not on_body or d.rng.random() < 0.6
    level = d.rng.uniform(170, 250) if bright else d.rng.uniform(0, 8)

    def paint(frame: np.ndarray) -> tuple[int, int, int, int]:
        def blots(g: ImageDraw.ImageDraw) -> None:
            for bx, by, rx, ry in blobs:
                g.ellipse((bx - rx, by - ry, bx + rx, by + ry), fill=1.0)

        mask = draw_layer(np.zeros_like(frame), blots)
        frame += (level - frame) * mask
        rows, cols = np.nonzero(mask)
        if rows.size == 0:     # a blob too small to cover a pixel centre
            return _clip_box(x - radius, y - radius, x + radius, y + radius)
        return _clip_box(cols.min() - 2, rows.min() - 2, cols.max() + 3, rows.max() + 3)

    d.after = paint


def _defect_two_parts(d: _Defect) -> None:
    second = Pose(d.pose.dx, d.pose.dy, d.rng.uniform(-20, 20))
    p = d.product
    if d.rng.random() < 0.5:
        second.dx += _sign(d.rng) * d.rng.uniform(0.55, 0.9) * p.body_w
    else:
        second.dy += _sign(d.rng) * d.rng.uniform(0.6, 1.0) * (p.body_h + p.lead_len)
    part = d.part

    def paint(frame: np.ndarray) -> tuple[int, int, int, int]:
        _warp_into(frame, *part.compose(), second, p.canvas)
        return _frame_box(second, p.canvas, part.template.extent)

    d.after = paint


_DEFECTS: dict[str, Callable[[_Defect], None]] = {
    "rotated": _defect_rotated, "shifted": _defect_shifted,
    "missing_lead": _defect_missing_lead, "bent_lead": _defect_bent_lead,
    "extra_lead": _defect_extra_lead, "chipped_corner": _defect_chipped_corner,
    "crack": _defect_crack, "particle": _defect_particle,
    "missing_marking": _defect_missing_marking, "smeared_marking": _defect_smeared_marking,
    "empty_pocket": _defect_empty_pocket, "overexposed": _defect_overexposed,
    "two_parts": _defect_two_parts,
}
assert set(_DEFECTS) == set(DEFECT_TYPES)


# --- rendering ---------------------------------------------------------------------------------

def _blur(img: np.ndarray, w: float) -> np.ndarray:
    """Separable [w, 1-2w, w] blur: the slight softness of the real optics."""
    out = img * (1 - 2 * w)
    out[:, 1:] += w * img[:, :-1]
    out[:, :-1] += w * img[:, 1:]
    out[:, 0] += w * img[:, 0]
    out[:, -1] += w * img[:, -1]
    res = out * (1 - 2 * w)
    res[1:] += w * out[:-1]
    res[:-1] += w * out[1:]
    res[0] += w * out[0]
    res[-1] += w * out[-1]
    return res


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance noise from two uniform bytes per pixel (a triangular
    distribution): looks like Gaussian sensor noise and costs a fraction of normal draws."""
    raw = np.frombuffer(rng.bytes(2 * shape[0] * shape[1]), np.uint16).reshape(shape)
    noise = (raw & 0xFF).astype(np.float32)
    noise += raw >> 8
    noise -= 255.0
    noise *= np.float32(1 / 104.5)
    return noise


@cache
def _field() -> tuple[np.ndarray, np.ndarray]:
    """Column and row coordinates, -1 at one edge of the frame to 1 at the other."""
    return (np.linspace(-1, 1, _W, dtype=np.float32)[None, :],
            np.linspace(-1, 1, _H, dtype=np.float32)[:, None])


def _illumination(look: Look) -> np.ndarray:
    """Uneven lighting: a ring light's fall-off towards the corners, tilted across the field."""
    xs, ys = _field()
    light = 1 - look.vignette / 2 * (xs * xs + ys * ys)
    light += look.tilt[0] * xs + look.tilt[1] * ys
    return light


def _finish(frame: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Lighting, exposure, optics blur and sensor noise, then 8-bit quantisation."""
    if look.vignette or look.tilt != (0.0, 0.0):
        # Before the noise: shot noise follows the light that actually reaches the sensor.
        frame *= _illumination(look)
    frame = _blur(frame, look.blur)
    frame *= look.gain
    frame += look.offset
    np.maximum(frame, 0, out=frame)
    noise = _unit_noise(rng, frame.shape)
    noise *= look.noise + look.shot_noise * np.sqrt(frame)
    frame += noise
    frame += rng.standard_normal((_H, 1), dtype=np.float32) * look.row_noise
    frame += 0.5
    return np.clip(frame, 0, 255).astype(np.uint8)


def _product(product: str | Product) -> Product:
    if isinstance(product, Product):
        return product
    try:
        return PRODUCTS[product]
    except KeyError:
        raise ValueError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}") from None


def render_part(rng: np.random.Generator, product: str | Product = "sod123",
                defect: str | None = None, severity: float = 0.7, *,
                lighting: Lighting = NEXPERIA_LIGHTING
                ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Renders one inspection image.

    The defect-free look (pose, exposure, marking, noise) is drawn from ``rng`` before anything
    about the defect, so the same generator state with ``defect=None`` gives the good
    counterpart of a defective image, identical outside the defect's box.

    Args:
        rng: the image's own random generator.
        product: a name from :data:`PRODUCTS` or a :class:`Product`.
        defect: one of :data:`DEFECT_TYPES`, or None for a good part.
        severity: 0 (barely visible) .. 1 (obvious); ignored for good parts.
        lighting: the camera set-up the look is drawn from.

    Returns:
        The image as a (267, 275) uint8 array, and the defect's bounding box (x, y, w, h) in
        pixels (None for a good part).

    Raises:
        ValueError: unknown product or defect type, or severity outside 0..1.
    """
    p = _product(product)
    if defect is not None and defect not in _DEFECTS:
        raise ValueError(f"unknown defect type {defect!r}; known: {', '.join(DEFECT_TYPES)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be within 0..1, got {severity}")
    look = draw_look(rng, p, lighting)
    noise_rng, defect_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    part = Part.from_template(p, look)
    d = _Defect(p, part, replace(look.pose), defect_rng, severity)
    if defect is not None:
        _DEFECTS[defect](d)
    frame = scene(p, look)
    if d.show_part:
        _warp_into(frame, *part.compose(), d.pose, p.canvas)
    bbox = None
    if d.after is not None:
        bbox = d.after(frame)
    elif d.canvas_box is not None:
        bbox = _frame_box(d.pose, p.canvas, d.canvas_box)
    return _finish(frame, look, noise_rng), bbox


def pick_product(rng: np.random.Generator) -> Product:
    """A product drawn by the :attr:`Product.weight` of :data:`PRODUCTS` (the mixed style)."""
    products = list(PRODUCTS.values())
    weights = np.array([p.weight for p in products])
    return products[int(rng.choice(len(products), p=weights / weights.sum()))]
