"""The pyqtgraph pieces the activation scatter draws with, and its colour classes.

* :func:`categorical_coloring` / :func:`score_coloring` turn per-point values into a few
  shared brushes (one per colour class) and a drawing priority per point.
* :class:`FastScatter` sets 100,000 points and their brushes with numpy instead of
  pyqtgraph's per-point Python loop (0.3 s -> a few ms).
* :class:`SelectionViewBox` reports left clicks and selection drags instead of panning.
* :class:`ScatterLegend` lists the colour classes under the plot (over it, it hid points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel

from app.palette import LABEL_HEX
from core.ranking import VALIDATION_SPLIT, split_label

OTHER_HEX = "#5d6673"
MISSING_HEX = "#6b7380"
SCORE_BINS = 64
SCORE_COLORMAP = "viridis"


@dataclass(frozen=True)
class Category:
    """One colour class of a categorical colouring.

    Attributes:
        value: the per-point value it stands for (1, 'train', True, ...).
        name: legend text.
        hex: colour.
        z: drawing rank; higher draws on top, so rare, important classes stay visible.
    """

    value: object
    name: str
    hex: str
    z: int


CATEGORIES: dict[str, tuple[Category, ...]] = {
    "label": (Category(1, "bad", LABEL_HEX[1], 2), Category(0, "good", LABEL_HEX[0], 1),
              Category(-1, "unlabelled", LABEL_HEX[-1], 0)),
    "prediction": (Category(1, "predicted bad", LABEL_HEX[1], 2),
                   Category(0, "predicted good", LABEL_HEX[0], 1),
                   Category(-1, "not scored", MISSING_HEX, 0)),
    "flagged": (Category(True, "flagged", "#f5a623", 1),
                Category(False, "not flagged", "#7d8794", 0)),
    # Named as every view names splits (core.ranking.SPLIT_NAMES): the 'val' folder and the
    # images a run held out of 'train' are different sets.
    "split": (Category("train", split_label("train").lower(), "#5b8def", 0),
              Category("val", split_label("val").lower(), "#e15759", 1),
              Category(VALIDATION_SPLIT, split_label(VALIDATION_SPLIT).lower(), "#f28e2b", 2),
              Category("test", split_label("test").lower(), "#59a14f", 1),
              Category("unlabelled", split_label("unlabelled").lower(), LABEL_HEX[-1], 0),
              # Every new lot (split 'lot <name>', core.lots) as one class, drawn on top:
              # where a new lot lands among the training images shows drift at a glance.
              Category("lot", "new lots", "#b07aa1", 3)),
}


@dataclass
class Coloring:
    """Per-point colour classes ready for the scatter item.

    Attributes:
        mode: one of :data:`COLOR_MODES`.
        classes: int (n,) index into ``brushes``.
        brushes: one shared QBrush per class.
        names: legend text per class.
        priority: int16 (n,), points drawn in ascending order (highest on top); small
            integers, so numpy's stable sort is a radix sort (3 ms per 100,000 points).
        levels: (low, high) of the colour bar for 'score', else None.
    """

    mode: str
    classes: np.ndarray
    brushes: list[QBrush]
    names: list[str]
    priority: np.ndarray
    levels: tuple[float, float] | None = None

    def counts(self) -> np.ndarray:
        return np.bincount(self.classes, minlength=len(self.brushes))


class BrushBook:
    """Hands out the same QBrush object for the same colour, so the symbol atlas stays small."""

    def __init__(self) -> None:
        self._brushes: dict[tuple[str, int], QBrush] = {}

    def get(self, colour: str | QColor, alpha: int = 255) -> QBrush:
        qcolour = QColor(colour)
        key = (qcolour.name(), alpha)
        brush = self._brushes.get(key)
        if brush is None:
            qcolour.setAlpha(alpha)
            brush = self._brushes[key] = QBrush(qcolour)
        return brush


def categorical_coloring(mode: str, values: np.ndarray, book: BrushBook) -> Coloring:
    """Colour classes for 'label', 'prediction', 'flagged' or 'split' values."""
    values = np.asarray(values)
    categories = CATEGORIES[mode]
    if mode == "flagged":
        values = values.astype(bool)
    classes = np.full(len(values), len(categories), dtype=np.int64)  # "other" until matched
    ranks = np.zeros(len(categories) + 1, dtype=np.int16)
    for index, category in enumerate(categories):
        classes[values == category.value] = index
        ranks[index] = category.z
    ranks[-1] = -1
    # Background classes (low rank) are drawn more transparent so dense clusters show depth.
    brushes = [book.get(c.hex, 235 if c.z > 0 else 170) for c in categories]
    brushes.append(book.get(OTHER_HEX, 170))
    names = [c.name for c in categories] + ["other"]
    return Coloring(mode, classes, brushes, names, ranks[classes])


def score_coloring(values: np.ndarray, book: BrushBook, *, bins: int = SCORE_BINS,
                   colormap: str = SCORE_COLORMAP) -> Coloring:
    """Scores binned into ``bins`` colours of a colour map; NaN (not scored) is grey.

    Scores of probabilities use the fixed range 0..1, so two runs' maps compare by colour;
    other values use their own min..max.
    """
    scores = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(scores)
    low, high = 0.0, 1.0
    if finite.any():
        smin, smax = float(scores[finite].min()), float(scores[finite].max())
        if smin < 0.0 or smax > 1.0:
            low, high = smin, smax if smax > smin else smin + 1.0
    scaled = np.clip((np.nan_to_num(scores, nan=low) - low) / (high - low), 0.0, 1.0)
    classes = np.minimum((scaled * bins).astype(np.int64), bins - 1)
    classes[~finite] = bins
    brushes = [book.get(c, 225) for c in _colormap_colours(colormap, bins)]
    brushes.append(book.get(MISSING_HEX, 150))
    names = [f"{low + (high - low) * i / bins:.2f}" for i in range(bins)] + ["not scored"]
    priority = np.where(finite, classes, -1).astype(np.int16)  # high scores on top
    return Coloring("score", classes, brushes, names, priority, levels=(low, high))


@cache
def _colormap_colours(name: str, bins: int) -> tuple[QColor, ...]:
    """The colours at the centres of ``bins`` equal bins of a pyqtgraph colour map."""
    cmap = pg.colormap.get(name)
    return tuple(cmap.map((np.arange(bins) + 0.5) / bins, mode="qcolor"))


class FastScatter(pg.ScatterPlotItem):
    """A ScatterPlotItem whose points and per-point brushes are set with numpy.

    pyqtgraph's ``setData``/``setBrush`` look every point's style up in its symbol atlas in a
    Python loop (about 0.3 s per 100,000 points). With a small palette of shared brushes the
    atlas holds one symbol per brush, so the rectangles can be looked up per *brush* and
    spread to the points with an index array. Falls back to the public API if pyqtgraph's
    internals ever change shape.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fast = (hasattr(self, "fragmentAtlas") and "sourceRect" in self.data.dtype.names
                     and self.opts.get("pxMode") and self.opts.get("useCache"))

    def set_points(self, x: np.ndarray, y: np.ndarray, classes: np.ndarray,
                   brushes: Sequence[QBrush]) -> None:
        """Replace all points: positions plus a brush class per point."""
        if not self.fast:
            palette = _object_array(brushes)
            self.setData(x=x, y=y, brush=palette[classes])
            return
        if len(x) != len(self.data):
            # A new record array only when the count changes: numpy fills its object fields
            # one element at a time (about 70 ms per 100,000 points). Recolouring and
            # reordering reuse it, since every per-point field that differs is rewritten.
            data = np.empty(len(x), dtype=self.data.dtype)  # object fields start as None
            data["size"] = -1  # pyqtgraph's "use the item's default"
            data["visible"] = True
            data["sourceRect"] = 0
            self.data = data
        self.data["x"], self.data["y"] = x, y
        self._assign_brushes(classes, brushes)
        self._geometry_changed()

    def move_points(self, x: np.ndarray, y: np.ndarray) -> None:
        """New positions for the same points (an animation frame); brushes are kept."""
        if len(x) != len(self.data):
            raise ValueError(f"{len(x)} positions for {len(self.data)} points")
        self.data["x"], self.data["y"] = x, y
        self._geometry_changed()

    def set_classes(self, classes: np.ndarray, brushes: Sequence[QBrush]) -> None:
        """New brush per point, same positions."""
        if not self.fast:
            self.setBrush(_object_array(brushes)[classes])
            return
        self._assign_brushes(classes, brushes)
        self.invalidate()

    def _assign_brushes(self, classes: np.ndarray, brushes: Sequence[QBrush]) -> None:
        self.data["brush"] = _object_array(brushes)[classes]
        # The same (symbol, size, pen, brush) key pyqtgraph's own style lookup would build, so
        # a later slow-path rebuild (e.g. a screen with another pixel ratio) finds the same.
        styles = [(self.opts["symbol"], self.opts["size"], self.opts["pen"], b) for b in brushes]
        rects = np.array(self.fragmentAtlas[styles], dtype=self.data["sourceRect"].dtype)
        target = self.data["sourceRect"]
        for name in rects.dtype.names:  # field by field: 2x faster than whole records
            target[name] = rects[name][classes]

    def _geometry_changed(self) -> None:
        self.prepareGeometryChange()
        self.informViewBoundsChanged()
        self.bounds = [None, None]
        if self.fast:
            self._updateMaxSpotSizes()
        self.invalidate()
        self.sigPlotChanged.emit(self)

    # Clicks and hovers are answered by the view box through a KD-tree; pyqtgraph's own
    # handlers would build a Python object per point on every click.
    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        ev.ignore()

    def hoverEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        return


def _object_array(items: Sequence) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


class SelectionViewBox(pg.ViewBox):
    """A ViewBox that reports left clicks and, outside pointer mode, left drags as selections.

    Signals:
        left_clicked(QPointF view position, modifiers)
        selection_drag(str phase 'start'|'move'|'finish', QPointF view position, modifiers)
    """

    left_clicked = Signal(object, object)
    selection_drag = Signal(str, object, object)

    def __init__(self) -> None:
        super().__init__()
        self.selection_mode = "pointer"

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.left_clicked.emit(self.mapToView(ev.pos()), ev.modifiers())
            return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt naming
        if self.selection_mode == "pointer" or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            self.selection_drag.emit("start", self.mapToView(ev.buttonDownPos()), ev.modifiers())
        self.selection_drag.emit("finish" if ev.isFinish() else "move",
                                 self.mapToView(ev.pos()), ev.modifiers())


class ScatterLegend(QLabel):
    """The colour classes and their counts, in a line under the plot, never over points.

    One word-wrapping label: at a narrow width the entries flow onto a second line rather
    than being cut off or widening the window.
    """

    def __init__(self) -> None:
        super().__init__(objectName="scatterLegend")
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setContentsMargins(6, 0, 6, 2)
        self._texts: list[str] = []

    def set_entries(self, entries: Sequence[tuple[QBrush, str]]) -> None:
        """Show (brush, text) entries; none hides the legend."""
        self._texts = [text for _brush, text in entries]
        html = []
        for brush, text in entries:
            colour = QColor(brush.color())
            colour.setAlpha(255)
            safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(" ", "&nbsp;")
            html.append(f"<span style='color:{colour.name()}; font-size:13pt'>●</span>"
                        f"&nbsp;{safe}")
        self.setText("&nbsp;&nbsp;&nbsp; ".join(html))
        self.setVisible(bool(entries))

    def texts(self) -> list[str]:
        """The entries' texts, in order."""
        return list(self._texts)
