"""The carrier pocket, the part and the camera look of the Nexperia-like demo renderer.

Products (package and pocket geometry), their unit-brightness templates (built once per
process), the lighting ranges an image's look is drawn from, and the part's layers that a
defect edits before :mod:`core.demo_render` composes the image. See :mod:`core.demodata`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SHAPE = (267, 275)
"""(rows, columns) of every generated image, as in the Kaggle set."""

_H, _W = IMAGE_SHAPE
_SCENE_PAD = 14          # scene templates are larger than the frame so jitter is a slice


# --- products -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Product:
    """Geometry of one package type and of the carrier pocket it travels in (pixels).

    Attributes:
        name: short id ("sod123", ...).
        body_w, body_h: package body size.
        lead_w, lead_len: size of one lead (across, and out from the body).
        lead_pieces: 2 draws a gull-wing lead as two stacked bright blocks.
        bottom_leads: leads on the lower side (SOT-23 has two); the top always has one.
        codes: marking codes; "\\n" separates two lines.
        text_px: font size of the marking.
        wall_x: half the distance between the pocket walls.
        wall_radius: curvature of the bracket ends of the walls.
        tape_y: half the distance between the tape edges.
        floor: half width and half height of the pocket floor outline.
        weight: share of the images showing this product.
        closed_pocket: walls drawn all the way round (another carrier's embossed pocket)
            instead of brackets cut open at the top and bottom.
        stripe_lines: lines in the band on the lower body; 0 picks 5 or 6 by body height.
        mark_dots: dot pitch of a dot-matrix laser marking; 0 draws solid strokes.
        upside_down: share of parts whose marking reads upside down.
    """

    name: str
    body_w: int
    body_h: int
    lead_w: int
    lead_len: int
    lead_pieces: int
    bottom_leads: int
    codes: tuple[str, ...]
    text_px: int
    wall_x: int
    wall_radius: int
    tape_y: int
    floor: tuple[int, int]
    weight: float
    closed_pocket: bool = False
    stripe_lines: int = 0
    mark_dots: int = 0
    upside_down: float = 0.7

    @property
    def canvas(self) -> int:
        """Side of the square canvas the part is drawn on (room for a lead on any side)."""
        reach = max(self.body_w, self.body_h) / 2 + self.lead_len + 24
        return 2 * math.ceil(reach)


PRODUCTS: dict[str, Product] = {p.name: p for p in (
    Product("sod123", 122, 66, 24, 34, 2, 1,
            ("A7", "A6", "T6", "S2", "Z9", "E3", "A5", "JN", "ZH", "AM", "L5", "VM"), 44,
            127, 13, 110, (100, 88), 0.4),
    Product("sot23", 112, 70, 22, 30, 2, 2,
            ("ZF", "NZ", "V3", "A8", "ZT", "JN", "K7", "Z2"), 44,
            127, 15, 111, (100, 90), 0.3),
    Product("sod323", 136, 80, 34, 24, 1, 1,
            ("CD", "AP", "A9", "T4", "E6"), 48,
            129, 10, 116, (108, 100), 0.17),
    Product("sma", 176, 140, 50, 26, 1, 1,
            ("W86\nB2", "W86\nBD", "W87\nDN", "W86\nBC"), 36,
            132, 5, 124, (120, 120), 0.13),
)}


# --- per-product templates (built once per process) ----------------------------------------------

class Box(NamedTuple):
    """Axis-aligned box on a canvas, corners (x0, y0) inclusive and (x1, y1) exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class _PartTemplate:
    """Unit-brightness layers of one product's part on its canvas; 0 outside the part."""

    body: np.ndarray        # body shading (about 1), lighter rim
    stripes: np.ndarray     # the band of fine lines on the lower body
    leads: np.ndarray       # metallic lead shading
    alpha: np.ndarray       # coverage (body or lead)
    body_box: Box
    lead_boxes: tuple[tuple[Box, int], ...]   # (box, side): side -1 above the body, +1 below
    extent: Box            # body and leads together
    footprint: Box         # the covered pixels, for cropping the warp
    text_centre: tuple[float, float]


def draw_layer(layer: np.ndarray, draw: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    """Runs PIL drawing calls on a float layer (PIL's "F" mode) and returns the new layer."""
    im = Image.fromarray(np.ascontiguousarray(layer, dtype=np.float32))
    draw(ImageDraw.Draw(im))
    return np.array(im)


def _lead_boxes(p: Product, body: Box) -> list[tuple[Box, int]]:
    cx = (body.x0 + body.x1) / 2
    top = [(cx, -1)]
    bottom = [(cx, 1)] if p.bottom_leads == 1 else [(body.x0 + p.body_w * 0.22, 1),
                                                    (body.x1 - p.body_w * 0.22, 1)]
    boxes = []
    for x, side in top + bottom:
        y_edge = body.y0 if side < 0 else body.y1
        y0, y1 = sorted((y_edge, y_edge + side * p.lead_len))
        boxes.append((Box(round(x - p.lead_w / 2), round(y0), round(x + p.lead_w / 2), round(y1)),
                      side))
    return boxes


def _paint_lead(leads: np.ndarray, box: Box, side: int, pieces: int) -> None:
    """Metallic lead: brighter along its middle; a gull-wing bend shows as a dark gap."""
    x0, y0, x1, y1 = (int(v) for v in box)
    across = np.sin(np.linspace(0.15, math.pi - 0.15, x1 - x0, dtype=np.float32))
    shade = np.tile(0.72 + 0.28 * across, (y1 - y0, 1))
    if pieces == 2:
        gap = (y1 - y0) // 2 + (0 if side > 0 else -1)
        shade[gap - 1:gap + 2] *= 0.22
    leads[y0:y1, x0:x1] = shade


def _body_shading(p: Product, body: Box, size: int) -> np.ndarray:
    layer = np.zeros((size, size), np.float32)
    x0, y0, x1, y1 = (int(v) for v in body)
    ramp = np.linspace(0.92, 1.08, y1 - y0, dtype=np.float32)[:, None]
    layer[y0:y1, x0:x1] = ramp
    rim = 2
    layer[y0:y0 + rim, x0:x1] = 1.45
    layer[y1 - rim:y1, x0:x1] = 1.3
    layer[y0:y1, x0:x0 + rim] = 1.35
    layer[y0:y1, x1 - rim:x1] = 1.35
    return layer


def _stripe_band(p: Product, body: Box, size: int) -> np.ndarray:
    layer = np.zeros((size, size), np.float32)
    x0, y0, x1, y1 = (int(v) for v in body)
    inset = max(4, p.body_w // 16)
    height = y1 - y0
    spacing = 3 if height < 80 else 4
    first = y0 + int(height * (0.56 if height < 80 else 0.64))
    for k in range(p.stripe_lines or (5 if height < 80 else 6)):
        layer[first + k * spacing, x0 + inset:x1 - inset] = 1.0
    return layer


@cache
def _part_template(p: Product) -> _PartTemplate:
    size = p.canvas
    c = size / 2
    body = Box(round(c - p.body_w / 2), round(c - p.body_h / 2),
                round(c - p.body_w / 2) + p.body_w, round(c - p.body_h / 2) + p.body_h)
    leads = np.zeros((size, size), np.float32)
    boxes = _lead_boxes(p, body)
    for box, side in boxes:
        _paint_lead(leads, box, side, p.lead_pieces)
    shading = _body_shading(p, body, size)
    alpha = ((shading > 0) | (leads > 0)).astype(np.float32)
    reach = p.body_h / 2 + p.lead_len
    extent = Box(body.x0, c - reach, body.x1, c + reach)
    text_y = body.y0 + p.body_h * (0.3 if p.body_h < 80 else 0.36)
    return _PartTemplate(shading, _stripe_band(p, body, size), leads, alpha, body,
                         tuple(boxes), extent, footprint(alpha), (c, text_y))


@cache
def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):
        # Pillow without FreeType: its small bitmap font, scaled up in _marking.
        return ImageFont.load_default()


@lru_cache(maxsize=512)
def _marking(code: str, px: int) -> np.ndarray:
    """The marking code as a 0..1 bitmap (lines centred, one above the other)."""
    lines = []
    for text in code.split("\n"):
        font = _font(px)
        x0, y0, x1, y1 = font.getbbox(text)
        im = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2))
        ImageDraw.Draw(im).text((1 - x0, 1 - y0), text, fill=255, font=font)
        if im.height < px // 2:    # bitmap fallback font: bring it to the requested size
            scale = px * 0.7 / im.height
            im = im.resize((round(im.width * scale), round(im.height * scale)))
        lines.append(np.asarray(im, np.float32) / 255.0)
    width = max(a.shape[1] for a in lines)
    gap = px // 4
    out = np.zeros((sum(a.shape[0] for a in lines) + gap * (len(lines) - 1), width), np.float32)
    y = 0
    for a in lines:
        x = (width - a.shape[1]) // 2
        out[y:y + a.shape[0], x:x + a.shape[1]] = a
        y += a.shape[0] + gap
    return out


@lru_cache(maxsize=16)
def _dot_grid(shape: tuple[int, int], pitch: int) -> np.ndarray:
    """2x2-pixel dots every ``pitch`` pixels: multiplied into a marking, solid strokes become
    the dotted strokes of a dot-matrix laser marker."""
    grid = np.zeros(shape, np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            grid[dy::pitch, dx::pitch] = 1.0
    return grid


@dataclass
class _SceneTemplate:
    """Unit-brightness layers of the carrier tape and pocket, padded for jitter."""

    walls: np.ndarray
    edges: np.ndarray
    floor: np.ndarray
    well: np.ndarray
    backdrop: np.ndarray     # 1 between the tape edges, nearly black beyond them


def _bracket_walls(p: Product, size: tuple[int, int], cx: float, cy: float) -> np.ndarray:
    """Bright bracket-shaped pocket walls: a rounded outline with the top and bottom cut away."""
    half_h = p.tape_y - 12
    layer = np.zeros(size, np.float32)
    for inset, level, width in ((0, 1.0, 4), (8, 0.4, 2)):   # the wall and its inner rim
        box = (cx - p.wall_x + inset, cy - half_h + inset, cx + p.wall_x - inset,
               cy + half_h - inset)
        outline = draw_layer(np.zeros(size, np.float32),
                        lambda d, b=box, v=level, t=width:
                        d.rounded_rectangle(b, radius=p.wall_radius, outline=v, width=t))
        layer = np.maximum(layer, outline)
    if p.closed_pocket:
        return layer * _wall_speckle(p, size)
    stub = p.wall_radius + 4
    cut = slice(int(cx - p.wall_x + stub), int(cx + p.wall_x - stub))
    for y in (cy - half_h, cy + half_h):
        layer[int(y) - 9:int(y) + 10, cut] = 0
    return layer * _wall_speckle(p, size)


def _wall_speckle(p: Product, size: tuple[int, int]) -> np.ndarray:
    # Moulded plastic glints unevenly; a fixed speckle per product keeps it cheap.
    speckle = np.random.default_rng(sum(map(ord, p.name))).uniform(0.55, 1.25, size)
    return speckle.astype(np.float32)


def _tape_edges(p: Product, size: tuple[int, int], cy: float) -> np.ndarray:
    layer = np.zeros(size, np.float32)
    for side in (-1, 1):
        y = int(cy + side * p.tape_y)
        layer[y - 1:y + 2] = 1.0
        layer[y - side * 6:y - side * 6 + 1] = 0.45
    return layer


@cache
def _scene_template(p: Product) -> _SceneTemplate:
    size = (_H + 2 * _SCENE_PAD, _W + 2 * _SCENE_PAD)
    cx, cy = size[1] / 2, size[0] / 2
    fx, fy = p.floor
    floor_box = (cx - fx, cy - fy, cx + fx, cy + fy)
    floor = draw_layer(np.zeros(size, np.float32),
                  lambda d: d.rounded_rectangle(floor_box, radius=10, outline=1.0, width=2))
    well = draw_layer(np.zeros(size, np.float32),
                 lambda d: d.rounded_rectangle(floor_box, radius=10, fill=1.0))
    backdrop = np.full(size, 0.15, np.float32)
    backdrop[int(cy - p.tape_y) - 1:int(cy + p.tape_y) + 2] = 1.0
    return _SceneTemplate(_bracket_walls(p, size, cx, cy), _tape_edges(p, size, cy), floor, well,
                          backdrop)


# --- the look of one image ------------------------------------------------------------------------

@dataclass
class Pose:
    """Where the part lands: offset of its centre from the frame centre, and rotation."""

    dx: float
    dy: float
    angle: float   # degrees


@dataclass
class Look:
    """Everything random about a defect-free image."""

    pose: Pose
    scene_dx: int
    scene_dy: int
    code: str
    upside_down: bool
    levels: dict[str, float]
    gain: float
    offset: float
    blur: float
    noise: float
    shot_noise: float
    row_noise: float
    vignette: float = 0.0                       # brightness lost towards the corners
    tilt: tuple[float, float] = (0.0, 0.0)      # lighting gradient across x and y


Range = tuple[float, float]


@dataclass(frozen=True)
class Lighting:
    """The ranges one camera set-up draws an image's look from (grey levels before gain).

    The defaults are the Nexperia-like station of the "mixed" demo style. ``vignette`` and
    ``tilt`` are drawn only when their range is non-zero, so a set-up without them draws the
    same random numbers as before they existed.
    """

    levels: tuple[tuple[str, Range], ...] = (
        ("bg", (12, 30)), ("wall", (110, 200)), ("edge", (90, 180)), ("floor", (10, 30)),
        ("well", (0, 9)), ("body", (34, 58)), ("stripe", (55, 105)), ("mark", (50, 95)),
        ("lead", (175, 240)))
    gain: Range = (0.68, 1.5)
    offset: Range = (-6, 10)
    blur: Range = (0.06, 0.2)
    noise: Range = (2.0, 5.0)
    shot_noise: Range = (0.15, 0.4)
    row_noise: Range = (0.5, 2.5)
    vignette: Range = (0.0, 0.0)
    tilt: Range = (0.0, 0.0)


NEXPERIA_LIGHTING = Lighting()


def draw_look(rng: np.random.Generator, p: Product,
               lighting: Lighting = NEXPERIA_LIGHTING) -> Look:
    # A few pixels of jitter and under 2 degrees of rotation: normal seating in the pocket.
    dx, dy = np.clip(rng.normal(0, 1.5, 2), -4, 4)
    pose = Pose(float(dx), float(dy), float(np.clip(rng.normal(0, 0.6), -1.8, 1.8)))
    u = rng.uniform
    lt = lighting
    levels = {name: u(*span) for name, span in lt.levels}
    look = Look(
        pose=pose, scene_dx=int(rng.integers(-5, 6)), scene_dy=int(rng.integers(-10, 11)),
        code=p.codes[int(rng.integers(len(p.codes)))],
        upside_down=bool(rng.random() < p.upside_down), levels=levels,
        # Exposure varies as much for good as for bad parts, so mean brightness says little.
        gain=float(np.exp(u(np.log(lt.gain[0]), np.log(lt.gain[1])))), offset=u(*lt.offset),
        blur=u(*lt.blur), noise=u(*lt.noise), shot_noise=u(*lt.shot_noise),
        row_noise=u(*lt.row_noise))
    if lt.vignette[1] > 0:
        look.vignette = u(*lt.vignette)
    if lt.tilt[1] > 0:
        strength, direction = u(*lt.tilt), u(0, 2 * math.pi)
        look.tilt = (strength * math.cos(direction), strength * math.sin(direction))
    return look


@dataclass
class Part:
    """One part's layers on its canvas; copied from the template only when a defect edits them."""

    template: _PartTemplate
    body: np.ndarray
    stripes: np.ndarray
    leads: np.ndarray
    alpha: np.ndarray
    glyphs: np.ndarray
    levels: dict[str, float]
    extra: np.ndarray | None = None        # absolute grey levels drawn on top (cracks, fractures)
    _owned: set[str] = field(default_factory=set)

    @classmethod
    def from_template(cls, p: Product, look: Look) -> Part:
        t = _part_template(p)
        glyphs = _marking(look.code, p.text_px)
        if p.mark_dots:
            glyphs = glyphs * _dot_grid(glyphs.shape, p.mark_dots)
        if look.upside_down:
            glyphs = glyphs[::-1, ::-1]
        return cls(t, t.body, t.stripes, t.leads, t.alpha, glyphs, dict(look.levels))

    def edit(self, name: str) -> np.ndarray:
        """The named layer, made private to this part first (templates are shared)."""
        if name == "extra" and self.extra is None:
            self.extra = np.zeros_like(self.alpha)
            self._owned.add(name)
        if name not in self._owned:
            setattr(self, name, getattr(self, name).copy())
            self._owned.add(name)
        return getattr(self, name)

    def glyph_box(self) -> Box:
        cx, cy = self.template.text_centre
        h, w = self.glyphs.shape
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        return Box(x0, y0, x0 + w, y0 + h)

    def compose(self) -> tuple[np.ndarray, np.ndarray, Box]:
        """Premultiplied grey value, coverage, and the box they cover on the canvas."""
        lv = self.levels
        value = lv["body"] * self.body + lv["stripe"] * self.stripes
        g = self.glyph_box()
        value[int(g.y0):int(g.y1), int(g.x0):int(g.x1)] += lv["mark"] * self.glyphs
        value *= self.body > 0                       # marking and stripes stay on the body
        value += lv["lead"] * self.leads
        if self.extra is not None:
            value += self.extra
        value *= self.alpha
        covered = footprint(self.alpha) if "alpha" in self._owned else self.template.footprint
        return value, self.alpha, covered


def footprint(alpha: np.ndarray) -> Box:
    """The canvas box holding every covered pixel, plus a pixel for the bilinear filter."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return Box(0, 0, 0, 0)
    n = alpha.shape[0]
    return Box(max(0, cols[0] - 1), max(0, rows[0] - 1), min(n, cols[-1] + 2),
                min(n, rows[-1] + 2))


def scene(p: Product, look: Look) -> np.ndarray:
    """The empty carrier pocket: a weighted sum of the product's scene layers, shifted."""
    t = _scene_template(p)
    y0, x0 = _SCENE_PAD + look.scene_dy, _SCENE_PAD + look.scene_dx
    win = (slice(y0, y0 + _H), slice(x0, x0 + _W))
    lv = look.levels
    frame = np.multiply(t.backdrop[win], lv["bg"])
    scratch = np.empty_like(frame)
    for layer, level in ((t.walls, lv["wall"]), (t.edges, lv["edge"]), (t.floor, lv["floor"]),
                         (t.well, -lv["well"])):
        frame += np.multiply(layer[win], level, out=scratch)
    return frame
