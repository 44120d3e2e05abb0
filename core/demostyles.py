"""Demo styles: the different "fabs" that ``diesight demo-data --style NAME`` can draw.

A recipe tuned on one synthetic fab learns that fab's lighting, carrier and product mix as much
as its defects. Each style here is another camera station with its own products, pocket,
illumination, noise, JPEG quality and defect mix, so that a verdict can be checked on images it
was not tuned on. Every style writes the same Kaggle layout and ``ground_truth.csv`` columns
(see :mod:`core.demodata`); only the pictures and the defect statistics differ.

A style is a :class:`DemoStyle`; :data:`STYLES` holds them by name, "mixed" (the original
look) first and the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from core import demo_vertical
from core.demo_render import DEFECT_WEIGHTS, SUBTLE_FRACTION, pick_product, render_part
from core.demo_scene import Lighting, Product

BBox = tuple[int, int, int, int]
Renderer = Callable[[np.random.Generator, "str | None", float], "tuple[np.ndarray, BBox | None]"]


@dataclass(frozen=True)
class DemoStyle:
    """One synthetic fab.

    Attributes:
        name: the ``--style`` value.
        description: one line for ``--help`` and the app.
        defect_weights: relative frequency of each defect type among the bad images; its keys
            are the only defect types the style draws.
        subtle_fraction: share of bad images drawn with a low severity (0.12-0.35).
        jpeg_quality: quality the images are saved with.
        render: ``render(rng, defect, severity) -> (uint8 (267, 275) image, bbox or None)``;
            picks the product and the look from ``rng`` itself.
    """

    name: str
    description: str
    defect_weights: Mapping[str, float]
    subtle_fraction: float
    jpeg_quality: int
    render: Renderer

    @property
    def defect_types(self) -> tuple[str, ...]:
        return tuple(self.defect_weights)

    def summary(self) -> str:
        """The description with the numbers that set the style apart."""
        return (f"{self.description}; {len(self.defect_weights)} defect types, "
                f"{self.subtle_fraction:.0%} subtle, JPEG quality {self.jpeg_quality}")


STYLES: dict[str, DemoStyle] = {}
DEFAULT_STYLE = "mixed"


def register(style: DemoStyle) -> DemoStyle:
    """Adds a style to :data:`STYLES` (names are unique)."""
    if style.name in STYLES:
        raise ValueError(f"demo style {style.name!r} is registered twice")
    STYLES[style.name] = style
    return style


def style_from_module(module: ModuleType) -> DemoStyle:
    """A style written as a module: ``NAME``, ``DESCRIPTION``, ``DEFECT_WEIGHTS``,
    ``SUBTLE_FRACTION``, ``JPEG_QUALITY`` and ``render_part(rng, defect, severity)``."""
    return DemoStyle(module.NAME, module.DESCRIPTION, dict(module.DEFECT_WEIGHTS),
                     float(module.SUBTLE_FRACTION), int(module.JPEG_QUALITY), module.render_part)


def get_style(name: str) -> DemoStyle:
    """The registered style called ``name``.

    Raises:
        ValueError: no such style; the message names the known ones.
    """
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown demo style {name!r}; known styles: "
                         f"{', '.join(STYLES)}") from None


# --- mixed: the original Nexperia-like station ---------------------------------------------------

def _render_mixed(rng: np.random.Generator, defect: str | None, severity: float):
    return render_part(rng, pick_product(rng), defect, severity)


# --- single: another fab, one product -------------------------------------------------------------

# A SOT-323-sized part (smaller than anything in the mixed style) with three narrow leads, its
# code laser-marked as dots and mostly right way up, in a closed, rounder and narrower embossed
# pocket.
SINGLE_PRODUCT = Product(
    "sot323", 96, 56, 14, 30, 2, 2,
    ("K4t", "A2p", "Z7W", "M3t", "W1p", "D5t"), 32,
    112, 28, 108, (86, 76), 1.0,
    closed_pocket=True, stripe_lines=3, mark_dots=3, upside_down=0.15)

# A diffuse dome light: a bright tape, walls and leads that glint less, a milky veil (high
# offset) that flattens contrast, a ring-light fall-off to the corners and a lighting tilt, and
# a cheaper sensor (more noise, softer optics).
SINGLE_LIGHTING = Lighting(
    levels=(("bg", (34, 56)), ("wall", (70, 120)), ("edge", (55, 100)), ("floor", (12, 28)),
            ("well", (2, 12)), ("body", (58, 80)), ("stripe", (30, 60)), ("mark", (60, 100)),
            ("lead", (135, 190))),
    gain=(0.8, 1.3), offset=(10, 26), blur=(0.16, 0.3), noise=(4.5, 8.0),
    shot_noise=(0.3, 0.6), row_noise=(1.0, 3.5), vignette=(0.25, 0.5), tilt=(0.04, 0.14))

# Lead and contamination problems dominate on this line; there are no extra leads, smeared
# marks or overexposure, and whole-part failures are rarer.
SINGLE_WEIGHTS = {
    "missing_lead": 12, "bent_lead": 14, "particle": 16, "crack": 11, "chipped_corner": 10,
    "rotated": 9, "shifted": 7, "missing_marking": 8, "two_parts": 3, "empty_pocket": 3,
}


def _render_single(rng: np.random.Generator, defect: str | None, severity: float):
    return render_part(rng, SINGLE_PRODUCT, defect, severity, lighting=SINGLE_LIGHTING)


# --- the registry ---------------------------------------------------------------------------------

register(DemoStyle(
    "mixed", "four product families (SOD-123, SOT-23, SOD-323, SMA) in bracket pockets, "
    "dark and contrasty", DEFECT_WEIGHTS, SUBTLE_FRACTION, 90, _render_mixed))
register(DemoStyle(
    "single", "one SOT-323 part in a closed pocket, bright low-contrast dome light with "
    "vignetting, noisier and softer",
    SINGLE_WEIGHTS, 0.28, 75, _render_single))
register(style_from_module(demo_vertical))
