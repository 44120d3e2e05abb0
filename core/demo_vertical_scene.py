"""Carrier, parts and camera of the "vertical" demo style (see :mod:`core.demo_vertical`).

The paper tape and its pocket, the three product families drawn upright in it, and the
camera (optics, lighting, sensor noise); the good look of an image is drawn here, the
defects and :func:`core.demo_vertical.render_part` live in :mod:`core.demo_vertical`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage  # installed with scikit-learn, which DieSight requires

IMAGE_SHAPE = (267, 275)
_H, _W = IMAGE_SHAPE
BBox = tuple[int, int, int, int]

_TEX_PAD = 48            # the paper texture is larger than the frame: each image shows a slice
BLUR_REACH = 2          # the optics kernel has 5 taps: a change spreads 2 px
_SHADOW = 0.3            # darkening of the pocket floor right next to a part


# --- products ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Family:
    """One product's geometry (px, part coordinates: u across, v along, v < 0 at the top)."""

    name: str
    weight: float
    half_w: float            # body half width
    half_len: float          # body half length, terminals excluded
    term_half_w: float       # terminal half width
    term_len: float          # how far a terminal reaches beyond the body end
    pocket: tuple[float, float, float]    # pocket half width, half height, corner radius
    body: tuple[float, float]             # brightness ranges drawn per part
    band: tuple[float, float]
    term: tuple[float, float]
    codes: tuple[str, ...] = ()

    @property
    def reach(self) -> tuple[float, float]:
        """Half extents of the whole part (across, along)."""
        return max(self.half_w, self.term_half_w), self.half_len + self.term_len


_MELF = _Family("minimelf", 0.4, 28, 60, 30, 20, (40, 90, 12), (46, 78), (14, 30), (195, 235))
_SOD = _Family("sod123f", 0.35, 34, 52, 20, 20, (45, 83, 8), (30, 48), (115, 155), (185, 228),
               ("5A", "1B", "7J", "S4", "2F", "ZB"))
_TANT = _Family("tantalum", 0.25, 33, 62, 26, 9, (44, 81, 10), (125, 160), (62, 90),
                (190, 230), ("107", "475", "226", "106", "335"))
_FAMILIES = (_MELF, _SOD, _TANT)


@dataclass(frozen=True)
class Part:
    """One part as drawn: pose, brightness and whatever a defect changed about it."""

    family: _Family
    x: float                 # centre, frame px
    y: float
    angle: float             # degrees
    body: float
    band: float
    term: float
    code: str = ""
    flip: bool = False                        # polarity marks at the wrong (bottom) end
    band_strength: float = 1.0
    cap: tuple[float, float] = (1.0, 1.0)     # share of the (top, bottom) terminal present
    dull: tuple[float, float] = (1.0, 1.0)    # brightness factor of the (top, bottom) terminal
    bulge: tuple[float, float, float, int] | None = None   # v centre, half span, px, side
    marks: tuple[Callable, ...] = ()          # defect drawings in part coordinates


@dataclass
class Paint:
    """A part drawn over a crop of the frame, before it is laid over the carrier."""

    value: np.ndarray        # brightness where the part covers
    alpha: np.ndarray        # coverage 0..1
    sdf: np.ndarray          # signed distance to the outline (px, < 0 inside): the shadow
    body: np.ndarray         # coverage of the body proper, where surface defects go


@dataclass(frozen=True)
class Look:
    """Everything about a good image, drawn from its generator before any defect."""

    part: Part
    pocket_x: float
    pocket_y: float
    tex: tuple[int, int]
    paper: float
    floor: float
    glare: tuple[float, float, float]        # amplitude, position, width
    gain: float
    offset: float
    tilt: tuple[float, float]
    vignette: float
    blur: float
    shot: float
    read: float
    fpn: float


# --- small geometry helpers -------------------------------------------------------------------

def _box_sdf(u, v, hw, hh, r: float) -> np.ndarray:
    """Signed distance to a rounded box centred on the origin (hw may be an array)."""
    qx = np.abs(u) - (hw - r)
    qy = np.abs(v) - (hh - r)
    out = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    out += np.minimum(np.maximum(qx, qy), 0)
    out -= r
    return out


def _span_sdf(u, v, hw: float, v0: float, v1: float, r: float) -> np.ndarray:
    """Rounded box from v0 to v1 along the part."""
    half = (v1 - v0) / 2
    return _box_sdf(u, v - (v0 + v1) / 2, hw, half, min(r, half))


def sdf_coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the inside of a signed distance field."""
    return np.clip(0.5 - sdf, 0, 1)


def _segment_dist(u, v, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / max(du * du + dv * dv, 1e-6), 0, 1)
    return np.hypot(u - a[0] - t * du, v - a[1] - t * dv)


def polyline_distance(u, v, points: list[tuple[float, float]]) -> np.ndarray:
    dist = _segment_dist(u, v, points[0], points[1])
    for a, b in zip(points[1:-1], points[2:], strict=True):
        np.minimum(dist, _segment_dist(u, v, a, b), out=dist)
    return dist


# --- cached textures --------------------------------------------------------------------------

@cache
def _paper_texture() -> np.ndarray:
    """Unit-variance paper: fine fibres along the feed (horizontal) over a soft mottle."""
    rng = np.random.default_rng(7)
    shape = (_H + 2 * _TEX_PAD, _W + 2 * _TEX_PAD)
    fibres = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.6, 3.5))
    mottle = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 9.0)
    tex = 0.7 * fibres / fibres.std() + 0.7 * mottle / mottle.std()
    return (tex / tex.std()).astype(np.float32)


@cache
def _grain() -> np.ndarray:
    """Unit-variance 64 x 64 tile of moulding-compound grain, sampled in part coordinates."""
    rng = np.random.default_rng(11)
    tile = ndimage.gaussian_filter(rng.standard_normal((64, 64)), 0.9, mode="wrap")
    return (tile / tile.std()).astype(np.float32)


@cache
def _column_pattern() -> np.ndarray:
    """The sensor's column fixed-pattern noise: the same in every image of this camera."""
    rng = np.random.default_rng(23)
    cols = rng.normal(0, 1.0, _W)
    cols[rng.choice(_W, 4, replace=False)] += rng.choice([-4.0, 4.0], 4)
    return cols.astype(np.float32)


@cache
def pixel_axes() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: columns as a row vector, rows as a column vector."""
    return (np.arange(_W, dtype=np.float32)[None, :], np.arange(_H, dtype=np.float32)[:, None])


@cache
def _glyph(code: str, px: int) -> np.ndarray:
    """The code as a 0..1 bitmap, about ``px`` tall."""
    try:
        font = ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):    # Pillow without FreeType: the bitmap font
        font = ImageFont.load_default()
    x0, y0, x1, y1 = font.getbbox(code)
    im = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2))
    ImageDraw.Draw(im).text((1 - x0, 1 - y0), code, fill=255, font=font)
    return np.asarray(im, np.float32) / 255.0


# --- the carrier ------------------------------------------------------------------------------

def _row_band(centre: float, half: float) -> tuple[slice, np.ndarray]:
    """Rows of a horizontal stripe and their anti-aliased coverage."""
    r0, r1 = max(0, math.floor(centre - half - 1)), min(_H, math.ceil(centre + half + 2))
    rows = np.arange(r0, r1, dtype=np.float32)[:, None]
    return slice(r0, r1), np.clip(half + 0.5 - np.abs(rows - centre), 0, 1)


def _cover_tape(frame: np.ndarray, look: Look) -> None:
    """Heat-seal tracks (darker, knurled) and the film's edges (thin, bright)."""
    xs, ys = pixel_axes()
    for side in (-1, 1):
        rows, w = _row_band(look.pocket_y + side * 101, 2.5)
        knurl = 0.55 + 0.45 * np.cos((xs + ys[rows]) * (2 * math.pi / 6))   # diagonal knurl
        frame[rows] -= 20 * w * knurl
        rows, w = _row_band(look.pocket_y + side * 113, 0.7)
        frame[rows] += 16 * w


def _sprocket_holes(frame: np.ndarray, look: Look) -> None:
    """Two punched holes at the top edge (pitch 4 mm, 2 mm either side of the pocket)."""
    radius, cy = 30.0, look.pocket_y - 150
    r1 = min(_H, math.ceil(cy + radius + 4))
    if r1 <= 0:
        return
    for cx in (look.pocket_x - 80, look.pocket_x + 80):
        c0, c1 = max(0, math.floor(cx - radius - 4)), min(_W, math.ceil(cx + radius + 4))
        xs, ys = pixel_axes()
        d = np.hypot(xs[:, c0:c1] - cx, ys[:r1] - cy)
        hole = np.clip(radius + 0.5 - d, 0, 1)
        fray = np.clip(1 - np.abs(d - radius - 1.5) / 1.5, 0, 1)   # torn fibres catch light
        win = frame[:r1, c0:c1]
        below = 20 + 0.4 * (win - look.paper)      # the dark feeder track, dimly lit
        win += 14 * fray
        win += (below - win) * hole


def _pocket(frame: np.ndarray, look: Look) -> None:
    """The punched pocket: darker, smooth bottom tape inside a thin dark cut edge."""
    hw, hh, r = look.part.family.pocket
    px, py = look.pocket_x, look.pocket_y
    r0, r1 = max(0, math.floor(py - hh - 4)), min(_H, math.ceil(py + hh + 5))
    c0, c1 = max(0, math.floor(px - hw - 4)), min(_W, math.ceil(px + hw + 5))
    xs, ys = pixel_axes()
    tx, ty = look.tex
    tex = _paper_texture()[r0 + 2 * _TEX_PAD - ty:r1 + 2 * _TEX_PAD - ty, c0 + tx:c1 + tx]
    sdf = _box_sdf(xs[:, c0:c1] - px, ys[r0:r1] - py, hw, hh, r)
    sdf += 0.5 * tex                                # a punched edge is ragged
    win = frame[r0:r1, c0:c1]
    floor = look.floor + 2.5 * tex
    win += (floor - win) * sdf_coverage(sdf)
    win -= 45 * np.clip(1 - np.abs(sdf + 1.0) / 1.6, 0, 1)   # the wall, seen edge-on


def _glare(frame: np.ndarray, look: Look) -> None:
    """A broad diagonal sheen where the cover film reflects the light (often absent)."""
    amp, pos, width = look.glare
    if amp <= 0:
        return
    xs, ys = pixel_axes()
    t = (xs * 0.5 + ys * 0.87 - pos) * (1 / width)
    frame += amp * np.exp(-t * t)


def draw_carrier(look: Look) -> np.ndarray:
    tx, ty = look.tex
    frame = _paper_texture()[ty:ty + _H, tx:tx + _W] * np.float32(9.0)
    frame += look.paper
    _cover_tape(frame, look)
    _sprocket_holes(frame, look)
    _pocket(frame, look)
    _glare(frame, look)
    return frame


# --- drawing a part ---------------------------------------------------------------------------

def part_window(part: Part, margin: float) -> tuple[int, int, int, int] | None:
    """Frame rows and columns (r0, r1, c0, c1) that the rotated part can reach."""
    across, along = part.family.reach
    t = math.radians(part.angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    ex, ey = c * across + s * along + margin, s * across + c * along + margin
    r0, r1 = max(0, math.floor(part.y - ey)), min(_H, math.ceil(part.y + ey) + 1)
    c0, c1 = max(0, math.floor(part.x - ex)), min(_W, math.ceil(part.x + ex) + 1)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _part_coords(part: Part, r0: int, r1: int, c0: int, c1: int):
    t = math.radians(part.angle)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    xs, ys = pixel_axes()
    dx, dy = xs[:, c0:c1] - np.float32(part.x), ys[r0:r1] - np.float32(part.y)
    return c * dx + s * dy, c * dy - s * dx


def _bulged(part: Part, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Across-coordinate warped so that one flank swells out (the bulged-body defect)."""
    if part.bulge is None:
        return u
    centre, span, px, side = part.bulge
    t = np.clip((v - centre) / span, -1, 1)
    swell = px * np.cos(t * (math.pi / 2)) ** 2 * (u * side > 0)
    return u * (part.family.half_w / (part.family.half_w + swell))


def _grain_at(u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Grain that moves with the part, ``scale`` tile cells per pixel (an integer lookup:
    the optics blur the steps away)."""
    rows = (v * np.float32(scale) + 512).astype(np.int32)
    cols = (u * np.float32(scale) + 512).astype(np.int32)
    return _grain()[rows & 63, cols & 63]


def _marking_coords(part: Part, u: np.ndarray, v: np.ndarray):
    """Coordinates of the printed marks: turned 180 degrees on a reversed part."""
    return (-u, -v) if part.flip else (u, v)


def _band_cov(part: Part, mv: np.ndarray, inset: float, width: float) -> np.ndarray:
    """Coverage of the polarity band, ``inset`` px from the top end of the body."""
    centre = -(part.family.half_len - inset)
    return np.clip(width / 2 + 0.5 - np.abs(mv - centre), 0, 1) * part.band_strength


def _print_code(part: Part, mu, mv, value: np.ndarray, level: float, centre: float,
                px: int) -> None:
    """Lays the product code (text reading across the part) into ``value``."""
    g = _glyph(part.code, px)
    gy, gx = mv - centre + g.shape[0] / 2, mu + g.shape[1] / 2
    inside = (gx > -1) & (gx < g.shape[1]) & (gy > -1) & (gy < g.shape[0])
    if not inside.any():
        return
    ink = np.zeros_like(value)
    ink[inside] = ndimage.map_coordinates(g, [gy[inside], gx[inside]], order=1, cval=0.0)
    value += (level - value) * ink


def _terminal_span(part: Part, end: int, overlap: float) -> tuple[float, float] | None:
    """Along-extent of the top (end 0) or bottom (end 1) terminal; None if it is missing."""
    f = part.family
    length = (f.term_len + overlap) * part.cap[end]
    if length < 0.5:
        return None
    inner = f.half_len - overlap
    v0, v1 = inner, inner + length
    return (-v1, -v0) if end == 0 else (v0, v1)


def _paint_melf(part: Part, u: np.ndarray, v: np.ndarray) -> Paint:
    """Glass cylinder between two metal caps; the coaxial light leaves a stripe on each."""
    f = part.family
    n = np.clip(u * (1 / f.term_half_w), -1, 1)
    facing = np.sqrt(1 - n * n)                       # how squarely the surface faces the lens
    stripe = np.exp(-((n + 0.3) * (1 / 0.09)) ** 2)
    glass_sdf = _box_sdf(u, v, f.half_w, f.half_len, 10)
    value = part.body * (0.35 + 0.65 * facing) + 150 * stripe
    value += 35 * np.exp(-((n - 0.5) * (1 / 0.12)) ** 2)
    # the two metal slugs inside, seen through the glass, with the die in the gap between
    slugs = np.clip(0.65 * f.half_w - np.abs(u), 0, 1) * np.clip(np.abs(v) - 4, 0, 1)
    value += 16 * facing * slugs
    mu, mv = _marking_coords(part, u, v)
    band = _band_cov(part, mv, 14, 12)
    value += (part.band * (0.5 + 0.5 * facing) + 60 * stripe - value) * band
    sdf, caps = glass_sdf.copy(), np.zeros_like(u)
    for end in (0, 1):
        span = _terminal_span(part, end, 6)
        if span is None:
            continue
        cap_sdf = _span_sdf(u, v, f.term_half_w, *span, 4)
        dull = part.dull[end]
        metal = part.term * dull * (0.3 + 0.7 * facing ** 2) + 140 * dull ** 2 * stripe
        metal *= 0.55 + 0.45 * np.clip(-cap_sdf * (1 / 3), 0, 1)   # rounded rim looks away
        c = sdf_coverage(cap_sdf)
        value += (metal - value) * c
        np.minimum(sdf, cap_sdf, out=sdf)
        np.maximum(caps, c, out=caps)
    return Paint(value, sdf_coverage(sdf), sdf, sdf_coverage(glass_sdf) * (1 - caps))


@dataclass(frozen=True)
class _Moulded:
    """How a moulded body (SOD-123F, tantalum) looks: what differs between the two."""

    grain: float             # relative grain of the compound
    grain_scale: float       # grain cells per pixel (coarser filler: smaller)
    bevel: float             # brightness the chamfered edge adds (coax: dark on a light body)
    band_inset: float
    band_width: float
    code_offset: float       # negative: dark print on a light body
    code_centre: float
    code_px: int
    term_overlap: float


_MOULDED = {
    "sod123f": _Moulded(0.12, 0.8, 45, 12, 8, 48, 8, 15, 6),
    "tantalum": _Moulded(0.04, 0.45, -40, 11, 14, -62, 10, 13, 3),
}


def _paint_moulded(part: Part, u: np.ndarray, v: np.ndarray) -> Paint:
    """A moulded block over flat metal terminals, with polarity bar and code on top."""
    f, m = part.family, _MOULDED[part.family.name]
    body_sdf = _box_sdf(u, v, f.half_w, f.half_len, 4)
    value = part.body * (1 + m.grain * _grain_at(u, v, m.grain_scale))
    value += m.bevel * np.clip(1 + body_sdf * (1 / 2.5), 0, 1)
    mu, mv = _marking_coords(part, u, v)
    value += (part.band - value) * _band_cov(part, mv, m.band_inset, m.band_width)
    _print_code(part, mu, mv, value, part.body + m.code_offset, m.code_centre, m.code_px)
    sdf = body_sdf.copy()
    lead = np.zeros_like(u)
    for end in (0, 1):
        span = _terminal_span(part, end, m.term_overlap)
        if span is None:
            continue
        lead_sdf = _span_sdf(u, v, f.term_half_w, *span, 2)
        bend = np.clip((np.abs(v) - f.half_len) * (1 / 7), 0, 1)   # bent down near the body
        metal = part.term * part.dull[end] * (0.5 + 0.5 * bend)
        metal *= 1 - 0.25 * np.clip(1 + lead_sdf * (1 / 1.5), 0, 1)   # stamped edge
        lead += metal * sdf_coverage(lead_sdf)
        np.minimum(sdf, lead_sdf, out=sdf)
    b = sdf_coverage(body_sdf)
    value = lead + (value - lead) * b
    return Paint(value, sdf_coverage(sdf), sdf, b)


_PAINTERS = {"minimelf": _paint_melf, "sod123f": _paint_moulded, "tantalum": _paint_moulded}


def _lay_part(frame: np.ndarray, part: Part) -> None:
    """Draws ``part`` with its defect marks and contact shadow over ``frame``."""
    win = part_window(part, margin=14)
    if win is None:
        return
    r0, r1, c0, c1 = win
    u, v = _part_coords(part, r0, r1, c0, c1)
    p = _PAINTERS[part.family.name](part, _bulged(part, u, v), v)
    for mark in part.marks:
        mark(u, v, p)
    crop = frame[r0:r1, c0:c1]
    crop *= 1 - _SHADOW * np.clip(1 - p.sdf * (1 / 4), 0, 1)
    crop += (p.value - crop) * p.alpha


def compose(carrier: np.ndarray, parts: list[Part],
             overlays: list[Callable[[np.ndarray], None]]) -> np.ndarray:
    frame = carrier.copy()
    for part in parts:
        _lay_part(frame, part)
    for overlay in overlays:
        overlay(frame)
    return frame


# --- the camera -------------------------------------------------------------------------------

def _optics(frame: np.ndarray, sigma: float) -> np.ndarray:
    """A 5-tap Gaussian blur, separable; its short reach keeps defects local."""
    k = np.exp(-np.arange(-2, 3) ** 2 / (2 * sigma * sigma))
    k = (k / k.sum()).astype(np.float32)
    out = ndimage.correlate1d(frame, k, axis=0, mode="nearest")
    return ndimage.correlate1d(out, k, axis=1, mode="nearest")


def _illumination(look: Look) -> np.ndarray:
    """Exposure times a lighting tilt and a fall-off towards the corners (separable)."""
    xs, ys = pixel_axes()
    xn, yn = xs * (2 / _W) - 1, ys * (2 / _H) - 1
    return (look.gain * (1 + look.tilt[0] * xn - look.vignette * xn * xn)
            * (1 + look.tilt[1] * yn - look.vignette * yn * yn))


def apply_sensor(frame: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Blur, exposure, shot + read noise, column pattern, 8-bit quantisation."""
    frame = _optics(frame, look.blur)
    frame *= _illumination(look)
    frame += look.offset
    np.maximum(frame, 0, out=frame)
    sigma = frame * np.float32(look.shot)          # shot noise: variance grows with signal
    sigma += look.read * look.read
    np.sqrt(sigma, out=sigma)
    sigma *= _unit_noise(rng)
    frame += sigma
    frame += _column_pattern() * np.float32(look.fpn)
    frame += 0.5
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)


def _unit_noise(rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance noise from two random bytes per pixel (their sum is
    triangular, close enough to Gaussian for a sensor) at a quarter of the cost of normals."""
    raw = np.frombuffer(rng.bytes(2 * _H * _W), np.uint8).reshape(2, _H, _W)
    noise = raw[0].astype(np.float32)
    noise += raw[1]
    noise -= 255.0
    noise *= np.float32(1 / 104.5)
    return noise


# --- the good look ----------------------------------------------------------------------------

def _draw_part(rng: np.random.Generator, f: _Family, px: float, py: float) -> Part:
    """A good part: anywhere in its pocket's play, within +-2 degrees, its lot's brightness."""
    across, along = f.reach
    play_x, play_y = f.pocket[0] - across - 3, f.pocket[1] - along - 3
    x = px + rng.uniform(-play_x, play_x)
    y = py + rng.uniform(-play_y, play_y)
    angle = float(np.clip(rng.normal(0, 0.8), -2, 2))
    body, band, term = (rng.uniform(*r) for r in (f.body, f.band, f.term))
    code = f.codes[rng.integers(len(f.codes))] if f.codes else ""
    return Part(f, x, y, angle, body, band, term, code)


def draw_look(rng: np.random.Generator) -> Look:
    weights = np.array([f.weight for f in _FAMILIES])
    f = _FAMILIES[rng.choice(len(_FAMILIES), p=weights / weights.sum())]
    px, py = _W / 2 + rng.uniform(-4, 4), 150 + rng.uniform(-5, 5)   # tape registration
    part = _draw_part(rng, f, px, py)
    tex = (int(rng.integers(0, 2 * _TEX_PAD)), int(rng.integers(0, 2 * _TEX_PAD)))
    paper = rng.uniform(135, 165)
    floor = paper - rng.uniform(40, 60)
    glare = (rng.uniform(4, 16) * (rng.random() < 0.4), rng.uniform(0, 360), rng.uniform(35, 80))
    return Look(part, px, py, tex, paper, floor, glare,
                 gain=rng.uniform(0.78, 1.22), offset=rng.uniform(-8, 8),
                 tilt=(rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
                 vignette=rng.uniform(0.04, 0.16), blur=rng.uniform(0.55, 1.1),
                 shot=rng.uniform(0.15, 0.4), read=rng.uniform(1.0, 2.5),
                 fpn=rng.uniform(0.8, 1.5))
