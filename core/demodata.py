"""Realistic synthetic inspection images, with ground truth, in the public Kaggle "Nexperia" layout.

DieSight needs data to demo, test and benchmark on without shipping the real Kaggle set. This
module draws semiconductor parts lying in carrier-tape pockets the way the Nexperia camera sees
them (267 rows x 275 columns, 8-bit grayscale JPEG): a mostly dark frame, bright bracket-shaped
pocket walls left and right, bright tape edges near the top and bottom, a dark package body in
the centre with faint (often upside-down) marking and a band of fine bright stripes, and bright
metallic leads above and below. Every image gets its own exposure, blur, noise and a few pixels
of jitter, and about ``bad_fraction`` of them one of 13 planted defects, from obvious (empty
pocket, two parts) to subtle (a small particle, a slightly rotated part), recorded with a
severity and a bounding box.

That is the default "mixed" demo style. :mod:`core.demostyles` defines others (another fab's
product, pocket, lighting, noise and defect mix) from the same renderer, through the optional
:class:`Product` fields and :class:`Lighting`; ``generate_demo_data(..., style=NAME)`` draws one.

Written layout::

    OUT/train/good_0/<32 hex>.jpg
    OUT/train/bad_1/<32 hex>.jpg
    OUT/test/all_tests/<32 hex>.jpg      (unlabelled on disk, like Kaggle)
    OUT/ground_truth.csv                 (one row per image, see GROUND_TRUTH_COLUMNS)

The output depends only on ``seed``: the label/split plan comes from ``SeedSequence(seed)`` and
everything about image ``i`` (file name included) from ``SeedSequence(seed, spawn_key=(i,))``, so
any worker count writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.atomic import atomic_write
from core.progress import CancelCheck, Cancelled, ProgressFn, Throttle, check_cancel, report

if TYPE_CHECKING:
    from core.demostyles import DemoStyle

IMAGE_SHAPE = (267, 275)
"""(rows, columns) of every generated image, as in the Kaggle set."""

GROUND_TRUTH_NAME = "ground_truth.csv"
GROUND_TRUTH_COLUMNS = ("id", "label", "defect_type", "severity", "split",
                        "bbox_x", "bbox_y", "bbox_w", "bbox_h")
FOLDERS = {("train", 0): "train/good_0", ("train", 1): "train/bad_1",
           ("test", 0): "test/all_tests", ("test", 1): "test/all_tests"}
NO_DEFECT = "none"

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

class _Box(NamedTuple):
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
    body_box: _Box
    lead_boxes: tuple[tuple[_Box, int], ...]   # (box, side): side -1 above the body, +1 below
    extent: _Box            # body and leads together
    footprint: _Box         # the covered pixels, for cropping the warp
    text_centre: tuple[float, float]


def _draw(layer: np.ndarray, draw: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    """Runs PIL drawing calls on a float layer (PIL's "F" mode) and returns the new layer."""
    im = Image.fromarray(np.ascontiguousarray(layer, dtype=np.float32))
    draw(ImageDraw.Draw(im))
    return np.array(im)


def _lead_boxes(p: Product, body: _Box) -> list[tuple[_Box, int]]:
    cx = (body.x0 + body.x1) / 2
    top = [(cx, -1)]
    bottom = [(cx, 1)] if p.bottom_leads == 1 else [(body.x0 + p.body_w * 0.22, 1),
                                                    (body.x1 - p.body_w * 0.22, 1)]
    boxes = []
    for x, side in top + bottom:
        y_edge = body.y0 if side < 0 else body.y1
        y0, y1 = sorted((y_edge, y_edge + side * p.lead_len))
        boxes.append((_Box(round(x - p.lead_w / 2), round(y0), round(x + p.lead_w / 2), round(y1)),
                      side))
    return boxes


def _paint_lead(leads: np.ndarray, box: _Box, side: int, pieces: int) -> None:
    """Metallic lead: brighter along its middle; a gull-wing bend shows as a dark gap."""
    x0, y0, x1, y1 = (int(v) for v in box)
    across = np.sin(np.linspace(0.15, math.pi - 0.15, x1 - x0, dtype=np.float32))
    shade = np.tile(0.72 + 0.28 * across, (y1 - y0, 1))
    if pieces == 2:
        gap = (y1 - y0) // 2 + (0 if side > 0 else -1)
        shade[gap - 1:gap + 2] *= 0.22
    leads[y0:y1, x0:x1] = shade


def _body_shading(p: Product, body: _Box, size: int) -> np.ndarray:
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


def _stripe_band(p: Product, body: _Box, size: int) -> np.ndarray:
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
    body = _Box(round(c - p.body_w / 2), round(c - p.body_h / 2),
                round(c - p.body_w / 2) + p.body_w, round(c - p.body_h / 2) + p.body_h)
    leads = np.zeros((size, size), np.float32)
    boxes = _lead_boxes(p, body)
    for box, side in boxes:
        _paint_lead(leads, box, side, p.lead_pieces)
    shading = _body_shading(p, body, size)
    alpha = ((shading > 0) | (leads > 0)).astype(np.float32)
    reach = p.body_h / 2 + p.lead_len
    extent = _Box(body.x0, c - reach, body.x1, c + reach)
    text_y = body.y0 + p.body_h * (0.3 if p.body_h < 80 else 0.36)
    return _PartTemplate(shading, _stripe_band(p, body, size), leads, alpha, body,
                         tuple(boxes), extent, _footprint(alpha), (c, text_y))


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
        outline = _draw(np.zeros(size, np.float32),
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
    floor = _draw(np.zeros(size, np.float32),
                  lambda d: d.rounded_rectangle(floor_box, radius=10, outline=1.0, width=2))
    well = _draw(np.zeros(size, np.float32),
                 lambda d: d.rounded_rectangle(floor_box, radius=10, fill=1.0))
    backdrop = np.full(size, 0.15, np.float32)
    backdrop[int(cy - p.tape_y) - 1:int(cy + p.tape_y) + 2] = 1.0
    return _SceneTemplate(_bracket_walls(p, size, cx, cy), _tape_edges(p, size, cy), floor, well,
                          backdrop)


# --- the look of one image ------------------------------------------------------------------------

@dataclass
class _Pose:
    """Where the part lands: offset of its centre from the frame centre, and rotation."""

    dx: float
    dy: float
    angle: float   # degrees


@dataclass
class _Look:
    """Everything random about a defect-free image."""

    pose: _Pose
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


def _draw_look(rng: np.random.Generator, p: Product,
               lighting: Lighting = NEXPERIA_LIGHTING) -> _Look:
    # A few pixels of jitter and under 2 degrees of rotation: normal seating in the pocket.
    dx, dy = np.clip(rng.normal(0, 1.5, 2), -4, 4)
    pose = _Pose(float(dx), float(dy), float(np.clip(rng.normal(0, 0.6), -1.8, 1.8)))
    u = rng.uniform
    lt = lighting
    levels = {name: u(*span) for name, span in lt.levels}
    look = _Look(
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
class _Part:
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
    def from_template(cls, p: Product, look: _Look) -> _Part:
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

    def glyph_box(self) -> _Box:
        cx, cy = self.template.text_centre
        h, w = self.glyphs.shape
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        return _Box(x0, y0, x0 + w, y0 + h)

    def compose(self) -> tuple[np.ndarray, np.ndarray, _Box]:
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
        covered = _footprint(self.alpha) if "alpha" in self._owned else self.template.footprint
        return value, self.alpha, covered


# --- geometry -------------------------------------------------------------------------------------

def _frame_points(pose: _Pose, canvas: int, xs: Sequence[float], ys: Sequence[float]):
    """Canvas points -> frame points for a part placed with ``pose``."""
    c = canvas / 2
    t = math.radians(pose.angle)
    cos, sin = math.cos(t), math.sin(t)
    ox, oy = _W / 2 + pose.dx, _H / 2 + pose.dy
    u, v = np.asarray(xs, float) - c, np.asarray(ys, float) - c
    return cos * u - sin * v + ox, sin * u + cos * v + oy


def _frame_box(pose: _Pose, canvas: int, box: _Box, pad: int = 2) -> tuple[int, int, int, int]:
    """Frame bounding box (x, y, w, h) of a canvas box, clipped to the image."""
    xs, ys = _frame_points(pose, canvas, [box.x0, box.x1, box.x1, box.x0],
                           [box.y0, box.y0, box.y1, box.y1])
    return _clip_box(xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad)


def _clip_box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    x1, y1 = min(_W, math.ceil(x1)), min(_H, math.ceil(y1))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _warp_into(frame: np.ndarray, value: np.ndarray, alpha: np.ndarray, crop: _Box,
               pose: _Pose, canvas: int) -> None:
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


def _footprint(alpha: np.ndarray) -> _Box:
    """The canvas box holding every covered pixel, plus a pixel for the bilinear filter."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return _Box(0, 0, 0, 0)
    n = alpha.shape[0]
    return _Box(max(0, cols[0] - 1), max(0, rows[0] - 1), min(n, cols[-1] + 2),
                min(n, rows[-1] + 2))


# --- defects --------------------------------------------------------------------------------------

@dataclass
class _Defect:
    """What a defect function may change, and where it reports the damage."""

    product: Product
    part: _Part
    pose: _Pose
    rng: np.random.Generator
    severity: float
    show_part: bool = True
    canvas_box: _Box | None = None                    # damage on the part's canvas
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


def _pick_lead(d: _Defect) -> tuple[_Box, int]:
    boxes = d.part.template.lead_boxes
    return boxes[int(d.rng.integers(len(boxes)))]


def _erase(d: _Defect, box: _Box) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    d.part.edit("leads")[y0:y1, x0:x1] = 0
    d.part.edit("alpha")[y0:y1, x0:x1] = d.part.body[y0:y1, x0:x1] > 0


def _defect_missing_lead(d: _Defect) -> None:
    box, side = _pick_lead(d)
    # Subtle: only the outer part of the lead broke off.
    keep = 0.0 if d.severity >= 0.35 else 0.5 - d.severity
    stump = keep * (box.y1 - box.y0)
    # The outer end is away from the body: y1 for a lead below it, y0 for one above.
    gone = (_Box(box.x0, box.y0 + stump, box.x1, box.y1) if side > 0
            else _Box(box.x0, box.y0, box.x1, box.y1 - stump))
    gone = _Box(*(round(v) for v in gone))
    _erase(d, gone)
    d.canvas_box = gone


def _paint_polygon(d: _Defect, points: list[tuple[float, float]], level: float = 0.9) -> None:
    d.part.leads = _draw(d.part.edit("leads"), lambda g: g.polygon(points, fill=level))
    d.part.alpha = _draw(d.part.edit("alpha"), lambda g: g.polygon(points, fill=1.0))


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
    d.canvas_box = _Box(min(xs + [box.x0]), min(root, tip, box.y0), max(xs + [box.x1]),
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
        box = _Box(x0, y - w / 2, x1, y + w / 2)
    else:                      # a second lead beside the existing top or bottom one
        lead, side = _pick_lead(d)
        x = lead.x1 + 4 if d.rng.random() < 0.5 else lead.x0 - 4 - w
        root = body.y0 if side < 0 else body.y1
        y0, y1 = sorted((root, root + side * length))
        box = _Box(x, y0, x + w, y1)
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
    d.part.alpha = _draw(d.part.edit("alpha"), lambda g: g.polygon(tri, fill=0.0))
    d.part.body = _draw(d.part.edit("body"), lambda g: g.polygon(tri, fill=0.0))
    # The broken face catches the light: a bright sliver along the fracture.
    bright = d.between(90.0, 200.0)
    width = 2 if d.severity < 0.35 else 4
    d.part.extra = _draw(d.part.edit("extra"),
                         lambda g: g.line([p1, p2], fill=bright, width=width))
    xs, ys = [x for x, _ in tri], [y for _, y in tri]
    d.canvas_box = _Box(min(xs) - width, min(ys) - width, max(xs) + width, max(ys) + width)


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
    d.part.extra = _draw(d.part.edit("extra"), lambda g: g.line(pts, fill=level, width=width))
    d.part.extra *= d.part.body > 0
    rows, cols = np.nonzero(d.part.extra)
    d.canvas_box = _Box(cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


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

        mask = _draw(np.zeros_like(frame), blots)
        frame += (level - frame) * mask
        rows, cols = np.nonzero(mask)
        if rows.size == 0:     # a blob too small to cover a pixel centre
            return _clip_box(x - radius, y - radius, x + radius, y + radius)
        return _clip_box(cols.min() - 2, rows.min() - 2, cols.max() + 3, rows.max() + 3)

    d.after = paint


def _defect_two_parts(d: _Defect) -> None:
    second = _Pose(d.pose.dx, d.pose.dy, d.rng.uniform(-20, 20))
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


# --- rendering ------------------------------------------------------------------------------------

def _scene(p: Product, look: _Look) -> np.ndarray:
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


def _illumination(look: _Look) -> np.ndarray:
    """Uneven lighting: a ring light's fall-off towards the corners, tilted across the field."""
    xs, ys = _field()
    light = 1 - look.vignette / 2 * (xs * xs + ys * ys)
    light += look.tilt[0] * xs + look.tilt[1] * ys
    return light


def _finish(frame: np.ndarray, look: _Look, rng: np.random.Generator) -> np.ndarray:
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
    look = _draw_look(rng, p, lighting)
    noise_rng, defect_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    part = _Part.from_template(p, look)
    d = _Defect(p, part, replace(look.pose), defect_rng, severity)
    if defect is not None:
        _DEFECTS[defect](d)
    frame = _scene(p, look)
    if d.show_part:
        _warp_into(frame, *part.compose(), d.pose, p.canvas)
    bbox = None
    if d.after is not None:
        bbox = d.after(frame)
    elif d.canvas_box is not None:
        bbox = _frame_box(d.pose, p.canvas, d.canvas_box)
    return _finish(frame, look, noise_rng), bbox


# --- the data set ---------------------------------------------------------------------------------

class _Job(NamedTuple):
    index: int
    label: int
    split: str
    defect: str | None
    severity: float


class _Row(NamedTuple):
    index: int
    id: str
    label: int
    defect: str
    severity: float
    split: str
    bbox: tuple[int, int, int, int] | None


@dataclass
class DemoSummary:
    """What :func:`generate_demo_data` wrote.

    Attributes:
        out: the data set's root folder.
        ground_truth: path of the ground-truth CSV.
        counts: ``{split: {"good": n, "bad": n}}`` for "train" and "test".
        defects: number of bad images per defect type of the style.
        seconds: wall time of the whole run.
        style: name of the demo style drawn (see :mod:`core.demostyles`).
    """

    out: Path
    ground_truth: Path
    counts: dict[str, dict[str, int]]
    defects: dict[str, int]
    seconds: float
    style: str = "mixed"

    @property
    def images(self) -> int:
        return sum(n for split in self.counts.values() for n in split.values())

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _style(name: str) -> DemoStyle:
    # Imported on use: core.demostyles builds its styles from this module's renderer.
    from core.demostyles import get_style
    return get_style(name)


def _plan(n: int, bad_fraction: float, test_fraction: float, seed: int,
          style: DemoStyle) -> list[_Job]:
    """Labels, splits, defect types and severities for all images (from the seed alone)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n_bad = round(n * bad_fraction)
    order = rng.permutation(n)
    bad = np.zeros(n, bool)
    bad[order[:n_bad]] = True
    test = np.zeros(n, bool)
    for members in (np.flatnonzero(bad), np.flatnonzero(~bad)):   # stratified test split
        test[rng.permutation(members)[:round(len(members) * test_fraction)]] = True
    types = style.defect_types
    weights = np.array([style.defect_weights[t] for t in types], float)
    kinds = rng.choice(len(types), size=n, p=weights / weights.sum())
    subtle = rng.random(n) < style.subtle_fraction
    severity = np.where(subtle, rng.uniform(0.12, 0.35, n), rng.uniform(0.35, 1.0, n))
    return [_Job(i, int(bad[i]), "test" if test[i] else "train",
                 types[kinds[i]] if bad[i] else None,
                 round(float(severity[i]), 3) if bad[i] else 0.0)
            for i in range(n)]


def pick_product(rng: np.random.Generator) -> Product:
    """A product drawn by the :attr:`Product.weight` of :data:`PRODUCTS` (the mixed style)."""
    products = list(PRODUCTS.values())
    weights = np.array([p.weight for p in products])
    return products[int(rng.choice(len(products), p=weights / weights.sum()))]


def _write_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    """Encodes in memory, writes a hidden temp file and renames it into place, so a killed run
    never leaves a half-written JPEG. No fsync per image: that would cost more than the render
    and only matters for power loss, which a demo set can simply regenerate after."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _make_image(out: Path, seed: int, style: DemoStyle, job: _Job) -> _Row:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(job.index,)))
    name = rng.bytes(16).hex()
    pixels, bbox = style.render(rng, job.defect, job.severity)
    _write_jpeg(out / FOLDERS[job.split, job.label] / f"{name}.jpg", pixels, style.jpeg_quality)
    return _Row(job.index, name, job.label, job.defect or NO_DEFECT, job.severity, job.split, bbox)


def _render_chunk(out: str, seed: int, style: str, jobs: list[_Job]) -> list[_Row]:
    """Worker entry point: renders and writes a run of images (the style travels by name,
    since a style's render function need not pickle)."""
    drawn = _style(style)
    return [_make_image(Path(out), seed, drawn, job) for job in jobs]


def _chunks_in_process(out: Path, seed: int, style: str, chunks: list[list[_Job]],
                       cancel: CancelCheck | None) -> Iterator[list[_Row]]:
    for chunk in chunks:
        check_cancel(cancel)
        yield _render_chunk(str(out), seed, style, chunk)


def _chunks_in_pool(out: Path, seed: int, style: str, chunks: list[list[_Job]], workers: int,
                    cancel: CancelCheck | None) -> Iterator[list[_Row]]:
    """Runs chunks on a process pool, a few at a time so that a cancel takes effect soon.

    On cancel the chunks already handed to workers still finish (their files are complete and
    get ground-truth rows); then :class:`Cancelled` is raised.
    """
    # "spawn": the GUI calls this from a thread, and forking a threaded Qt process is unsafe.
    context = multiprocessing.get_context("spawn")
    todo = deque(chunks)
    cancelled = False
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        running = deque(pool.submit(_render_chunk, str(out), seed, style, todo.popleft())
                        for _ in range(min(len(todo), 2 * workers)))
        while running:
            yield running.popleft().result()
            cancelled = cancelled or (cancel is not None and cancel())
            if todo and not cancelled:
                running.append(pool.submit(_render_chunk, str(out), seed, style,
                                           todo.popleft()))
    if cancelled:
        raise Cancelled()


def _default_workers(n: int) -> int:
    from core.device import cpu_count

    return max(1, min(cpu_count(), n // 150))   # a small set is done before a pool would even start


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; demo data is written to a new or empty folder")
    for folder in set(FOLDERS.values()):
        (out / folder).mkdir(parents=True, exist_ok=True)


def _write_ground_truth(path: Path, rows: list[_Row]) -> None:
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(GROUND_TRUTH_COLUMNS)
        for r in sorted(rows):
            box = [str(v) for v in r.bbox] if r.bbox is not None else ["", "", "", ""]
            writer.writerow([r.id, r.label, r.defect, f"{r.severity:.3f}", r.split, *box])


def _validate(n: int, bad_fraction: float, test_fraction: float, seed: int,
              workers: int | None, style: str) -> DemoStyle:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction must be within 0..1, got {bad_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be within 0..1 (1 excluded), got {test_fraction}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return _style(style)


def _summarise(out: Path, rows: list[_Row], seconds: float, style: DemoStyle) -> DemoSummary:
    counts = {split: {"good": 0, "bad": 0} for split in ("train", "test")}
    defects = dict.fromkeys(style.defect_types, 0)
    for r in rows:
        counts[r.split]["bad" if r.label else "good"] += 1
        if r.label:
            defects[r.defect] += 1
    return DemoSummary(out, out / GROUND_TRUTH_NAME, counts, defects, seconds, style.name)


def generate_demo_data(out: str | os.PathLike, n: int = 3000, bad_fraction: float = 0.1,
                       seed: int = 0, *, test_fraction: float = 0.2, workers: int | None = None,
                       progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
                       style: str = "mixed") -> DemoSummary:
    """Writes a labelled synthetic image set in the Kaggle Nexperia layout.

    Args:
        out: a new or empty folder.
        n: number of images.
        bad_fraction: share of defective images (exactly ``round(n * bad_fraction)``).
        seed: the output is a function of the seed alone (not of ``workers``).
        test_fraction: share of images (of each class) put into ``test/all_tests``.
        workers: processes rendering in parallel; None picks one per CPU for large sets.
        progress: receives ``Progress("demo", done, n, ...)`` reports.
        cancel: checked between batches of images.
        style: the demo style ("fab") to draw, a name from :data:`core.demostyles.STYLES`;
            it decides the look, the defect types and their mix, and the JPEG quality.

    Returns:
        Counts per split and class, counts per defect type, and the time taken.

    Raises:
        ValueError: a parameter is out of range, or the style is unknown.
        FileExistsError: ``out`` holds files already.
        Cancelled: ``cancel`` returned True. The images written so far are complete and
            ``ground_truth.csv`` lists exactly them, so the folder stays consistent.
    """
    drawn = _validate(n, bad_fraction, test_fraction, seed, workers, style)
    start = time.monotonic()
    out = Path(out)
    _prepare(out)
    jobs = _plan(n, bad_fraction, test_fraction, seed, drawn)
    workers = workers or _default_workers(n)
    size = max(4, min(48, math.ceil(n / (4 * workers))))
    chunks = [jobs[i:i + size] for i in range(0, n, size)]
    batches = (_chunks_in_process(out, seed, drawn.name, chunks, cancel) if workers == 1
               else _chunks_in_pool(out, seed, drawn.name, chunks, workers, cancel))
    rows: list[_Row] = []
    throttle = Throttle()
    try:
        for batch in batches:
            rows.extend(batch)
            if throttle.ready(final=len(rows) == n):
                rate = len(rows) / max(1e-9, time.monotonic() - start)
                report(progress, "demo", len(rows), n, f"{rate:.0f} images/s", images_per_s=rate)
    finally:
        # Also on cancel or a worker failure: the ground truth lists exactly the finished files.
        _write_ground_truth(out / GROUND_TRUTH_NAME, rows)
    return _summarise(out, rows, time.monotonic() - start, drawn)
