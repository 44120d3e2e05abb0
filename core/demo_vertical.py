"""The "vertical" demo style: polarised two-terminal parts standing upright in paper tape.

A second synthetic fab, so that a recipe tuned on :mod:`core.demodata`'s Nexperia-like station
can be checked on images it was not tuned on. Everything that station has in common with its
own training data differs here:

* **Carrier.** Punched *paper* tape, fed left to right: a mid-gray, fibrous surface (fibres run
  along the feed) with one rounded-rectangle pocket, upright, in the middle; its punched edge
  reads as a thin dark line. Two sprocket holes cut into the top edge, the transparent cover
  tape's heat-seal tracks (knurled) run above and below the pocket, its edges as faint bright
  lines, and now and then a broad soft glare band where the film catches the light.
* **Illumination.** Coaxial light: flat surfaces facing the camera are bright, slopes dark. The
  parts are dark silhouettes on the mid-gray tape, their metal ends bright with a specular
  stripe that often clips, bevels and pocket walls show as thin lines, and a part casts only a
  faint contact shadow.
* **Products** (long axis vertical, polarity mark towards the sprocket holes on a good part):
  a MiniMELF glass diode (dark glass cylinder with a reflection stripe, metal end caps, black
  cathode ring), a SOD-123F flat moulded diode (black epoxy with a bright bevel, flat leads,
  a light cathode bar and a two-character laser code) and a moulded tantalum capacitor (light
  body, dark anode bar and printed value code, thin end terminations).
* **Camera.** Poisson-like shot noise plus read noise, a column fixed-pattern noise that is the
  same in every image (one sensor), a slightly soft Gaussian optic, a lighting tilt and
  fall-off, and JPEG quality 80 on writing. Exposure drifts +-20 % from image to image, more
  than any defect moves the mean brightness.

Sixteen defect kinds, from obvious (empty pocket, a part lying across the pocket) to subtle
(a short end cap, a faint stain, a part that just touches the pocket wall); a third of bad
images are meant to be drawn at a low severity.

Conventions are those of :mod:`core.demodata` (no code is shared): 267 rows x 275 columns,
uint8 grayscale; :func:`render_part` draws the defect-free look from the image's generator
before anything about the defect, so a good part and a bad one drawn from the same generator
state are identical outside the defect's box. The box is found by drawing both and comparing,
so it encloses every changed pixel (widened by the blur's reach).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage  # installed with scikit-learn, which DieSight requires

NAME = "vertical"
DESCRIPTION = ("upright MiniMELF, SOD-123F and tantalum parts in punched paper tape under "
               "coaxial light: dark bodies, bright metal ends, polarity bands, mid-gray tape")
JPEG_QUALITY = 80
SUBTLE_FRACTION = 0.3

# Relative frequencies among bad images: handling damage and dirt are common on a taping
# line, whole-part failures (empty, doubled, lying across) rare.
DEFECT_WEIGHTS: dict[str, float] = {
    "particle": 10, "cracked_body": 9, "chipped_edge": 9, "scratch": 8, "tilted": 8,
    "stain": 7, "shifted": 7, "missing_cap": 7, "reversed": 7, "missing_band": 6,
    "solder_blob": 6, "dull_cap": 5, "bulged_body": 5, "two_parts": 3, "lying_across": 3,
    "empty_pocket": 3,
}
DEFECT_TYPES = tuple(DEFECT_WEIGHTS)

IMAGE_SHAPE = (267, 275)
_H, _W = IMAGE_SHAPE
BBox = tuple[int, int, int, int]

_TEX_PAD = 48            # the paper texture is larger than the frame: each image shows a slice
_BLUR_REACH = 2          # the optics kernel has 5 taps: a change spreads 2 px
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
class _Part:
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
class _Paint:
    """A part drawn over a crop of the frame, before it is laid over the carrier."""

    value: np.ndarray        # brightness where the part covers
    alpha: np.ndarray        # coverage 0..1
    sdf: np.ndarray          # signed distance to the outline (px, < 0 inside): the shadow
    body: np.ndarray         # coverage of the body proper, where surface defects go


@dataclass(frozen=True)
class _Look:
    """Everything about a good image, drawn from its generator before any defect."""

    part: _Part
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


def _cov(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the inside of a signed distance field."""
    return np.clip(0.5 - sdf, 0, 1)


def _segment_dist(u, v, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / max(du * du + dv * dv, 1e-6), 0, 1)
    return np.hypot(u - a[0] - t * du, v - a[1] - t * dv)


def _polyline_dist(u, v, points: list[tuple[float, float]]) -> np.ndarray:
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
def _axes() -> tuple[np.ndarray, np.ndarray]:
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


def _cover_tape(frame: np.ndarray, look: _Look) -> None:
    """Heat-seal tracks (darker, knurled) and the film's edges (thin, bright)."""
    xs, ys = _axes()
    for side in (-1, 1):
        rows, w = _row_band(look.pocket_y + side * 101, 2.5)
        knurl = 0.55 + 0.45 * np.cos((xs + ys[rows]) * (2 * math.pi / 6))   # diagonal knurl
        frame[rows] -= 20 * w * knurl
        rows, w = _row_band(look.pocket_y + side * 113, 0.7)
        frame[rows] += 16 * w


def _sprocket_holes(frame: np.ndarray, look: _Look) -> None:
    """Two punched holes at the top edge (pitch 4 mm, 2 mm either side of the pocket)."""
    radius, cy = 30.0, look.pocket_y - 150
    r1 = min(_H, math.ceil(cy + radius + 4))
    if r1 <= 0:
        return
    for cx in (look.pocket_x - 80, look.pocket_x + 80):
        c0, c1 = max(0, math.floor(cx - radius - 4)), min(_W, math.ceil(cx + radius + 4))
        xs, ys = _axes()
        d = np.hypot(xs[:, c0:c1] - cx, ys[:r1] - cy)
        hole = np.clip(radius + 0.5 - d, 0, 1)
        fray = np.clip(1 - np.abs(d - radius - 1.5) / 1.5, 0, 1)   # torn fibres catch light
        win = frame[:r1, c0:c1]
        below = 20 + 0.4 * (win - look.paper)      # the dark feeder track, dimly lit
        win += 14 * fray
        win += (below - win) * hole


def _pocket(frame: np.ndarray, look: _Look) -> None:
    """The punched pocket: darker, smooth bottom tape inside a thin dark cut edge."""
    hw, hh, r = look.part.family.pocket
    px, py = look.pocket_x, look.pocket_y
    r0, r1 = max(0, math.floor(py - hh - 4)), min(_H, math.ceil(py + hh + 5))
    c0, c1 = max(0, math.floor(px - hw - 4)), min(_W, math.ceil(px + hw + 5))
    xs, ys = _axes()
    tx, ty = look.tex
    tex = _paper_texture()[r0 + 2 * _TEX_PAD - ty:r1 + 2 * _TEX_PAD - ty, c0 + tx:c1 + tx]
    sdf = _box_sdf(xs[:, c0:c1] - px, ys[r0:r1] - py, hw, hh, r)
    sdf += 0.5 * tex                                # a punched edge is ragged
    win = frame[r0:r1, c0:c1]
    floor = look.floor + 2.5 * tex
    win += (floor - win) * _cov(sdf)
    win -= 45 * np.clip(1 - np.abs(sdf + 1.0) / 1.6, 0, 1)   # the wall, seen edge-on


def _glare(frame: np.ndarray, look: _Look) -> None:
    """A broad diagonal sheen where the cover film reflects the light (often absent)."""
    amp, pos, width = look.glare
    if amp <= 0:
        return
    xs, ys = _axes()
    t = (xs * 0.5 + ys * 0.87 - pos) * (1 / width)
    frame += amp * np.exp(-t * t)


def _carrier(look: _Look) -> np.ndarray:
    tx, ty = look.tex
    frame = _paper_texture()[ty:ty + _H, tx:tx + _W] * np.float32(9.0)
    frame += look.paper
    _cover_tape(frame, look)
    _sprocket_holes(frame, look)
    _pocket(frame, look)
    _glare(frame, look)
    return frame


# --- drawing a part ---------------------------------------------------------------------------

def _window(part: _Part, margin: float) -> tuple[int, int, int, int] | None:
    """Frame rows and columns (r0, r1, c0, c1) that the rotated part can reach."""
    across, along = part.family.reach
    t = math.radians(part.angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    ex, ey = c * across + s * along + margin, s * across + c * along + margin
    r0, r1 = max(0, math.floor(part.y - ey)), min(_H, math.ceil(part.y + ey) + 1)
    c0, c1 = max(0, math.floor(part.x - ex)), min(_W, math.ceil(part.x + ex) + 1)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _part_coords(part: _Part, r0: int, r1: int, c0: int, c1: int):
    t = math.radians(part.angle)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    xs, ys = _axes()
    dx, dy = xs[:, c0:c1] - np.float32(part.x), ys[r0:r1] - np.float32(part.y)
    return c * dx + s * dy, c * dy - s * dx


def _bulged(part: _Part, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def _marking_coords(part: _Part, u: np.ndarray, v: np.ndarray):
    """Coordinates of the printed marks: turned 180 degrees on a reversed part."""
    return (-u, -v) if part.flip else (u, v)


def _band_cov(part: _Part, mv: np.ndarray, inset: float, width: float) -> np.ndarray:
    """Coverage of the polarity band, ``inset`` px from the top end of the body."""
    centre = -(part.family.half_len - inset)
    return np.clip(width / 2 + 0.5 - np.abs(mv - centre), 0, 1) * part.band_strength


def _print_code(part: _Part, mu, mv, value: np.ndarray, level: float, centre: float,
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


def _terminal_span(part: _Part, end: int, overlap: float) -> tuple[float, float] | None:
    """Along-extent of the top (end 0) or bottom (end 1) terminal; None if it is missing."""
    f = part.family
    length = (f.term_len + overlap) * part.cap[end]
    if length < 0.5:
        return None
    inner = f.half_len - overlap
    v0, v1 = inner, inner + length
    return (-v1, -v0) if end == 0 else (v0, v1)


def _paint_melf(part: _Part, u: np.ndarray, v: np.ndarray) -> _Paint:
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
        c = _cov(cap_sdf)
        value += (metal - value) * c
        np.minimum(sdf, cap_sdf, out=sdf)
        np.maximum(caps, c, out=caps)
    return _Paint(value, _cov(sdf), sdf, _cov(glass_sdf) * (1 - caps))


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


def _paint_moulded(part: _Part, u: np.ndarray, v: np.ndarray) -> _Paint:
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
        lead += metal * _cov(lead_sdf)
        np.minimum(sdf, lead_sdf, out=sdf)
    b = _cov(body_sdf)
    value = lead + (value - lead) * b
    return _Paint(value, _cov(sdf), sdf, b)


_PAINTERS = {"minimelf": _paint_melf, "sod123f": _paint_moulded, "tantalum": _paint_moulded}


def _lay_part(frame: np.ndarray, part: _Part) -> None:
    """Draws ``part`` with its defect marks and contact shadow over ``frame``."""
    win = _window(part, margin=14)
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


def _compose(carrier: np.ndarray, parts: list[_Part],
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


def _illumination(look: _Look) -> np.ndarray:
    """Exposure times a lighting tilt and a fall-off towards the corners (separable)."""
    xs, ys = _axes()
    xn, yn = xs * (2 / _W) - 1, ys * (2 / _H) - 1
    return (look.gain * (1 + look.tilt[0] * xn - look.vignette * xn * xn)
            * (1 + look.tilt[1] * yn - look.vignette * yn * yn))


def _sensor(frame: np.ndarray, look: _Look, rng: np.random.Generator) -> np.ndarray:
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

def _draw_part(rng: np.random.Generator, f: _Family, px: float, py: float) -> _Part:
    """A good part: anywhere in its pocket's play, within +-2 degrees, its lot's brightness."""
    across, along = f.reach
    play_x, play_y = f.pocket[0] - across - 3, f.pocket[1] - along - 3
    x = px + rng.uniform(-play_x, play_x)
    y = py + rng.uniform(-play_y, play_y)
    angle = float(np.clip(rng.normal(0, 0.8), -2, 2))
    body, band, term = (rng.uniform(*r) for r in (f.body, f.band, f.term))
    code = f.codes[rng.integers(len(f.codes))] if f.codes else ""
    return _Part(f, x, y, angle, body, band, term, code)


def _draw_look(rng: np.random.Generator) -> _Look:
    weights = np.array([f.weight for f in _FAMILIES])
    f = _FAMILIES[rng.choice(len(_FAMILIES), p=weights / weights.sum())]
    px, py = _W / 2 + rng.uniform(-4, 4), 150 + rng.uniform(-5, 5)   # tape registration
    part = _draw_part(rng, f, px, py)
    tex = (int(rng.integers(0, 2 * _TEX_PAD)), int(rng.integers(0, 2 * _TEX_PAD)))
    paper = rng.uniform(135, 165)
    floor = paper - rng.uniform(40, 60)
    glare = (rng.uniform(4, 16) * (rng.random() < 0.4), rng.uniform(0, 360), rng.uniform(35, 80))
    return _Look(part, px, py, tex, paper, floor, glare,
                 gain=rng.uniform(0.78, 1.22), offset=rng.uniform(-8, 8),
                 tilt=(rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
                 vignette=rng.uniform(0.04, 0.16), blur=rng.uniform(0.55, 1.1),
                 shot=rng.uniform(0.15, 0.4), read=rng.uniform(1.0, 2.5),
                 fpn=rng.uniform(0.8, 1.5))


# --- defects ----------------------------------------------------------------------------------

@dataclass
class _Defect:
    """What a defect may change: the parts in the pocket and marks over the whole frame."""

    rng: np.random.Generator
    severity: float
    look: _Look
    parts: list[_Part]
    overlays: list[Callable[[np.ndarray], None]] = field(default_factory=list)

    @property
    def part(self) -> _Part:
        return self.parts[0]

    def change(self, **changes) -> None:
        self.parts[0] = replace(self.parts[0], **changes)

    def mark(self, mark: Callable) -> None:
        self.change(marks=self.part.marks + (mark,))

    def between(self, low: float, high: float) -> float:
        """``low`` at severity 0 .. ``high`` at 1, with a little scatter."""
        s = float(np.clip(self.severity + self.rng.normal(0, 0.04), 0, 1))
        return low + (high - low) * s

    def sign(self) -> int:
        return 1 if self.rng.random() < 0.5 else -1

    def body_point(self, inset: float) -> tuple[float, float]:
        """A random point on the body proper, ``inset`` px from its outline."""
        f = self.part.family
        return (self.rng.uniform(-1, 1) * (f.half_w - inset),
                self.rng.uniform(-1, 1) * (f.half_len - inset - 6))   # clear of terminals

    def light_body(self) -> bool:
        return self.part.family.body[0] > 100


def _missing_cap(d: _Defect) -> None:
    """A terminal short (low severity) or gone, the bare body end showing."""
    cap = list(d.part.cap)
    cap[d.rng.integers(2)] = max(0.0, 0.85 - 1.1 * d.severity)
    d.change(cap=tuple(cap))


def _dull_cap(d: _Defect) -> None:
    """An oxidised or contaminated terminal: grayer, the specular stripe gone."""
    dull = list(d.part.dull)
    dull[d.rng.integers(2)] = 1 - d.between(0.12, 0.55)
    d.change(dull=tuple(dull))


def _line_mark(points: list[tuple[float, float]], width: float, level: float,
               strength: float) -> Callable:
    def mark(u: np.ndarray, v: np.ndarray, p: _Paint) -> None:
        c = np.clip(width / 2 + 0.5 - _polyline_dist(u, v, points), 0, 1)
        c *= p.body * strength
        p.value += (level - p.value) * c
    return mark


def _cracked_body(d: _Defect) -> None:
    """A jagged crack from one flank inwards (right across at high severity)."""
    f, side = d.part.family, d.sign()
    u, v = side * (f.half_w + 1), d.rng.uniform(-0.6, 0.6) * f.half_len
    step = 2 * f.half_w * d.between(0.3, 1.0) / 5
    points = [(u, v)]
    for _ in range(5):
        u, v = u - side * step, v + d.rng.normal(0, 0.6 * step)
        points.append((u, v))
    level = 55.0 if d.light_body() else 175.0    # fractures scatter: light on dark bodies
    d.mark(_line_mark(points, d.between(0.8, 1.6), level, d.between(0.4, 1.0)))


def _scratch(d: _Defect) -> None:
    """A thin straight scratch at any angle, faint at low severity."""
    cu, cv = d.body_point(6)
    length, t = d.between(12, 55), d.rng.uniform(0, math.pi)
    du, dv = math.cos(t) * length / 2, math.sin(t) * length / 2
    bend = d.rng.normal(0, 1.5)
    points = [(cu - du, cv - dv), (cu + bend, cv - bend), (cu + du, cv + dv)]
    level = 60.0 if d.light_body() else 170.0
    d.mark(_line_mark(points, d.between(0.8, 1.4), level, d.between(0.4, 1.0)))


def _chipped_edge(d: _Defect) -> None:
    """A bite out of the body's flank or corner, with a light fracture rim."""
    f, rng = d.part.family, d.rng
    cu = d.sign() * f.half_w
    cv = d.sign() * f.half_len if rng.random() < 0.3 else rng.uniform(-0.7, 0.7) * f.half_len
    a = d.between(3, 12)
    b, turn = a * rng.uniform(0.5, 0.9), rng.uniform(0, math.pi)
    cos, sin = math.cos(turn), math.sin(turn)

    def mark(u: np.ndarray, v: np.ndarray, p: _Paint) -> None:
        x, y = (u - cu) * cos + (v - cv) * sin, (v - cv) * cos - (u - cu) * sin
        dist = (np.hypot(x * (1 / a), y * (1 / b)) - 1) * b
        hole = _cov(dist) * p.body
        rim = np.clip(1 - np.abs(dist - 1) * (1 / 1.5), 0, 1) * p.body
        p.value += (150 - p.value) * (0.5 * rim)
        p.alpha *= 1 - hole
    d.mark(mark)


def _stain(d: _Defect) -> None:
    """A soft blotch: flux haze on a dark body, a brown stain on a light one."""
    cu, cv = d.body_point(4)
    r = d.between(6, 18)
    aspect = d.rng.uniform(0.6, 1.0)
    amp = d.between(10, 45) * (-1 if d.light_body() else 1)

    def mark(u: np.ndarray, v: np.ndarray, p: _Paint) -> None:
        q = 1 - ((u - cu) ** 2 + ((v - cv) / aspect) ** 2) * (1 / (r * r))
        p.value += amp * np.clip(q, 0, 1) ** 2 * p.body
    d.mark(mark)


def _solder_blob(d: _Defect) -> None:
    """A ball of solder on a terminal's flank, sticking out past the outline."""
    f = d.part.family
    r = d.between(2.5, 8.5)
    cu = d.sign() * f.term_half_w * d.rng.uniform(0.7, 1.05)
    cv = d.sign() * (f.half_len + f.term_len * d.rng.uniform(0.0, 0.7))
    level = d.part.term * 0.5

    def mark(u: np.ndarray, v: np.ndarray, p: _Paint) -> None:
        du, dv = u - cu, v - cv
        dist = np.hypot(du, dv)
        c = _cov(dist - r)
        dome = np.sqrt(np.clip(1 - (dist * (1 / r)) ** 2, 0, 1))
        glint = np.exp(-((du + 0.3 * r) ** 2 + (dv + 0.3 * r) ** 2) / (0.3 * r) ** 2)
        p.value += (level * (0.4 + 0.6 * dome) + 200 * glint - p.value) * c
        np.maximum(p.alpha, c, out=p.alpha)
        np.minimum(p.sdf, dist - r, out=p.sdf)
    d.mark(mark)


def _bulged_body(d: _Defect) -> None:
    f = d.part.family
    d.change(bulge=(d.rng.uniform(-0.35, 0.35) * f.half_len, d.rng.uniform(0.2, 0.35) * f.half_len,
                    d.between(1.5, 8.0), d.sign()))


def _particle(d: _Defect) -> None:
    """Dust in the pocket or on the part: a dark speck or a light paper fibre."""
    hw, hh, _ = d.part.family.pocket
    x = d.look.pocket_x + d.rng.uniform(-1, 1) * (hw - 5)
    y = d.look.pocket_y + d.rng.uniform(-1, 1) * (hh - 5)
    if d.rng.random() < 0.55:
        r = d.between(1.2, 4.5)
        blobs = [(x, y, r)] + [(x + d.rng.normal(0, r * 0.6), y + d.rng.normal(0, r * 0.6),
                                r * d.rng.uniform(0.4, 0.8)) for _ in range(2)]
        d.overlays.append(_speck(blobs, 22.0, d.between(0.55, 1.0)))
    else:
        t, length = d.rng.uniform(0, math.pi), d.between(8, 35)
        points = [(x, y)]
        for _ in range(4):
            t += d.rng.normal(0, 0.5)
            x, y = x + math.cos(t) * length / 4, y + math.sin(t) * length / 4
            points.append((x, y))
        d.overlays.append(_fibre(points, 195.0, d.between(0.35, 0.9)))


def _overlay_window(xs: list[float], ys: list[float], pad: float):
    r0, r1 = max(0, math.floor(min(ys) - pad)), min(_H, math.ceil(max(ys) + pad))
    c0, c1 = max(0, math.floor(min(xs) - pad)), min(_W, math.ceil(max(xs) + pad))
    return r0, r1, c0, c1


def _speck(blobs: list[tuple[float, float, float]], level: float, opacity: float) -> Callable:
    def paint(frame: np.ndarray) -> None:
        r0, r1, c0, c1 = _overlay_window([b[0] for b in blobs], [b[1] for b in blobs],
                                         max(b[2] for b in blobs) + 2)
        ax, ay = _axes()
        xs, ys = ax[:, c0:c1], ay[r0:r1]
        cov = np.zeros((r1 - r0, c1 - c0), np.float32)
        for bx, by, br in blobs:
            np.maximum(cov, np.clip(br + 0.5 - np.hypot(xs - bx, ys - by), 0, 1), out=cov)
        win = frame[r0:r1, c0:c1]
        win += (level - win) * (cov * opacity)
    return paint


def _fibre(points: list[tuple[float, float]], level: float, opacity: float) -> Callable:
    def paint(frame: np.ndarray) -> None:
        r0, r1, c0, c1 = _overlay_window([p[0] for p in points], [p[1] for p in points], 3)
        ax, ay = _axes()
        cov = np.clip(1.0 - _polyline_dist(ax[:, c0:c1], ay[r0:r1], points), 0, 1)
        win = frame[r0:r1, c0:c1]
        win += (level - win) * (cov * opacity)
    return paint


def _missing_band(d: _Defect) -> None:
    """Polarity band faint (low severity) or not printed at all."""
    d.change(band_strength=max(0.0, 0.5 - 0.6 * d.severity))


def _reversed(d: _Defect) -> None:
    """Turned end for end in the pocket: the polarity band sits at the bottom."""
    d.change(flip=True)


def _tilted(d: _Defect) -> None:
    d.change(angle=d.part.angle + d.sign() * d.between(4, 18))


def _shifted(d: _Defect) -> None:
    """Pushed against (at high severity: up onto) the pocket wall."""
    f = d.part.family
    across, along = f.reach
    if d.rng.random() < 0.7:
        x = d.look.pocket_x + d.sign() * (f.pocket[0] - across + d.between(1, 16))
        d.change(x=x)
    else:
        y = d.look.pocket_y + d.sign() * (f.pocket[1] - along + d.between(1, 16))
        d.change(y=y)


def _empty_pocket(d: _Defect) -> None:
    d.parts.clear()


def _two_parts(d: _Defect) -> None:
    """A second part of the same lot lying on top of the first."""
    second = replace(d.part, x=d.look.pocket_x + d.rng.uniform(-25, 25),
                     y=d.look.pocket_y + d.sign() * d.rng.uniform(25, 70),
                     angle=d.rng.uniform(-35, 35), marks=())
    d.parts.append(second)


def _lying_across(d: _Defect) -> None:
    """Fallen over across the pocket, resting on the tape on both sides."""
    d.change(angle=d.sign() * d.rng.uniform(60, 90), x=d.look.pocket_x + d.rng.uniform(-12, 12),
             y=d.look.pocket_y + d.rng.uniform(-40, 40))


_DEFECTS: dict[str, Callable[[_Defect], None]] = {
    "particle": _particle, "cracked_body": _cracked_body, "chipped_edge": _chipped_edge,
    "scratch": _scratch, "tilted": _tilted, "stain": _stain, "shifted": _shifted,
    "missing_cap": _missing_cap, "reversed": _reversed, "missing_band": _missing_band,
    "solder_blob": _solder_blob, "dull_cap": _dull_cap, "bulged_body": _bulged_body,
    "two_parts": _two_parts, "lying_across": _lying_across, "empty_pocket": _empty_pocket,
}
assert set(_DEFECTS) == set(DEFECT_WEIGHTS)


def _changed_box(good: np.ndarray, bad: np.ndarray, part: _Part) -> BBox:
    """Box around every pixel the defect changed, widened by the blur's reach."""
    diff = good != bad
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:    # no defect above leaves the frame unchanged; to be safe: the part
        r0, r1, c0, c1 = _window(part, 0) or (0, _H, 0, _W)
        return c0, r0, c1 - c0, r1 - r0
    x0, y0 = max(0, cols[0] - _BLUR_REACH), max(0, rows[0] - _BLUR_REACH)
    x1, y1 = min(_W, cols[-1] + 1 + _BLUR_REACH), min(_H, rows[-1] + 1 + _BLUR_REACH)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


# --- entry point ------------------------------------------------------------------------------

def render_part(rng: np.random.Generator, defect: str | None = None, severity: float = 0.7
                ) -> tuple[np.ndarray, BBox | None]:
    """Renders one inspection image of this fab.

    Args:
        rng: the image's own random generator.
        defect: one of :data:`DEFECT_TYPES`, or None for a good part.
        severity: 0 (barely visible) .. 1 (obvious); ignored for good parts.

    Returns:
        The (267, 275) uint8 image and the defect's bounding box (x, y, w, h) in pixels, clipped
        to the frame (None for a good part).

    Raises:
        ValueError: unknown defect kind, or severity outside 0..1.
    """
    if defect is not None and defect not in _DEFECTS:
        raise ValueError(f"unknown defect kind {defect!r}; known: {', '.join(DEFECT_TYPES)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be within 0..1, got {severity}")
    look = _draw_look(rng)
    noise_rng, defect_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    carrier = _carrier(look)
    good = _compose(carrier, [look.part], [])
    if defect is None:
        return _sensor(good, look, noise_rng), None
    d = _Defect(defect_rng, float(severity), look, [look.part])
    _DEFECTS[defect](d)
    bad = _compose(carrier, d.parts, d.overlays)
    return _sensor(bad, look, noise_rng), _changed_box(good, bad, look.part)
