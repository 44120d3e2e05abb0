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

The carrier, the parts and the camera are in :mod:`core.demo_vertical_scene`; this module
holds the style's constants, the defects and :func:`render_part`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from core.demo_vertical_scene import (
    BLUR_REACH,
    IMAGE_SHAPE,
    BBox,
    Look,
    Paint,
    Part,
    apply_sensor,
    compose,
    draw_carrier,
    draw_look,
    part_window,
    pixel_axes,
    polyline_distance,
    sdf_coverage,
)

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

_H, _W = IMAGE_SHAPE


# --- defects ----------------------------------------------------------------------------------

@dataclass
class _Defect:
    """What a defect may change: the parts in the pocket and marks over the whole frame."""

    rng: np.random.Generator
    severity: float
    look: Look
    parts: list[Part]
    overlays: list[Callable[[np.ndarray], None]] = field(default_factory=list)

    @property
    def part(self) -> Part:
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
    def mark(u: np.ndarray, v: np.ndarray, p: Paint) -> None:
        c = np.clip(width / 2 + 0.5 - polyline_distance(u, v, points), 0, 1)
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

    def mark(u: np.ndarray, v: np.ndarray, p: Paint) -> None:
        x, y = (u - cu) * cos + (v - cv) * sin, (v - cv) * cos - (u - cu) * sin
        dist = (np.hypot(x * (1 / a), y * (1 / b)) - 1) * b
        hole = sdf_coverage(dist) * p.body
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

    def mark(u: np.ndarray, v: np.ndarray, p: Paint) -> None:
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

    def mark(u: np.ndarray, v: np.ndarray, p: Paint) -> None:
        du, dv = u - cu, v - cv
        dist = np.hypot(du, dv)
        c = sdf_coverage(dist - r)
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
        ax, ay = pixel_axes()
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
        ax, ay = pixel_axes()
        cov = np.clip(1.0 - polyline_distance(ax[:, c0:c1], ay[r0:r1], points), 0, 1)
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


def _changed_box(good: np.ndarray, bad: np.ndarray, part: Part) -> BBox:
    """Box around every pixel the defect changed, widened by the blur's reach."""
    diff = good != bad
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:    # no defect above leaves the frame unchanged; to be safe: the part
        r0, r1, c0, c1 = part_window(part, 0) or (0, _H, 0, _W)
        return c0, r0, c1 - c0, r1 - r0
    x0, y0 = max(0, cols[0] - BLUR_REACH), max(0, rows[0] - BLUR_REACH)
    x1, y1 = min(_W, cols[-1] + 1 + BLUR_REACH), min(_H, rows[-1] + 1 + BLUR_REACH)
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
    look = draw_look(rng)
    noise_rng, defect_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    carrier = draw_carrier(look)
    good = compose(carrier, [look.part], [])
    if defect is None:
        return apply_sensor(good, look, noise_rng), None
    d = _Defect(defect_rng, float(severity), look, [look.part])
    _DEFECTS[defect](d)
    bad = compose(carrier, d.parts, d.overlays)
    return apply_sensor(bad, look, noise_rng), _changed_box(good, bad, look.part)
