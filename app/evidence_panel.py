"""The Evidence dock: the current image's nearest training images and its golden difference.

*Nearest training images*: the 8 labelled images the current run learnt from that lie
closest to the current image in its embedding space (``core.neighbours``), each with its
label and score; a click opens it in the viewer. They are the model's reasons by example:
a "bad" call whose neighbours are all bad chips is a chip.

*Compare with good*: the image | its golden reference (median of its nearest good training
images, aligned with sub-pixel phase correlation, ``core.golden``) | the absolute
difference, in three linked views (zoom or pan one, all follow).

Both are computed on a worker for the current image; only the newest request is computed
(stepping quickly through a list does not queue work per image passed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.image_viewer import VIEW_BACKGROUND
from app.palette import LABEL_HEX, label_name
from app.state import AppState
from app.thumbnail_grid import downscale, gray_qimage
from app.workers import TaskOwner
from core.explain import heat_colours
from core.golden import Golden, golden_for
from core.golden_score import explain_parts, load_reference
from core.neighbours import DEFAULT_K, Neighbour, NeighbourIndex
from core.score_store import aligned_parts

TILE_SIZE = 56
TILE_MIN_WIDTH = 62
TILE_COLUMNS = 4
DIFFERENCE_LEVELS = (0.0, 96.0)  # grey levels; a difference of 96+ is already glaring


@dataclass
class Evidence:
    """What the worker found for one image."""

    key: tuple
    index: NeighbourIndex
    neighbours: list[Neighbour]
    golden: Golden | None
    parts: str | None = None  # what a fused score was made of (core.golden_score)


def _evidence_job(dataset, run, labels, position: int, index, *, progress, cancel):
    """Worker: neighbours and golden of ``position`` (builds the index when needed)."""
    if index is None:
        index = NeighbourIndex(dataset, run.id, labels)
    neighbours = index.nearest(position, DEFAULT_K)
    return index, neighbours, golden_for(index, position), _score_parts(dataset, run, position)


def _score_parts(dataset, run, position: int) -> str | None:
    reference = load_reference(run.checkpoint) if run.checkpoint else None
    parts = aligned_parts(dataset, run.id) if reference else None
    if parts is None or np.isnan(parts.golden[position]):
        return None
    return explain_parts(reference, float(parts.network_logits[position]),
                         float(parts.golden[position]))


class NeighbourTile(QToolButton):
    """One nearest image: its thumbnail, label and score; a click opens it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("neighbourTile")
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.setIconSize(QSize(TILE_SIZE, TILE_SIZE))
        self.setAutoRaise(True)
        # Four to a row must fit the narrow left dock; the text is short enough for 60 px.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(TILE_MIN_WIDTH)
        self.neighbour: Neighbour | None = None

    def show_neighbour(self, dataset, neighbour: Neighbour | None) -> None:
        self.neighbour = neighbour
        if neighbour is None:
            self.setIcon(QIcon())
            self.setText("")
            self.setToolTip("")
            self.setEnabled(False)
            return
        small = downscale(np.asarray(dataset.images[neighbour.image_id]), TILE_SIZE)
        self.setIcon(QIcon(QPixmap.fromImage(gray_qimage(small))))
        name = label_name(neighbour.label)
        score = "–" if np.isnan(neighbour.score) else f"{neighbour.score:.2f}"
        # "B 0.91" / "G 0.02": the whole word does not fit four tiles to a narrow dock.
        self.setText(f"{name[0].upper()} {score}")
        self.setStyleSheet(f"QToolButton {{ color: {LABEL_HEX[neighbour.label]}; "
                           "font-weight: 600; }")
        self.setToolTip(f"{dataset.names[neighbour.position]}\nlabel {name}, score {score}, "
                        f"distance {neighbour.distance:.3g}\nClick to open it")
        self.setEnabled(True)


class EvidencePanel(QWidget):
    """Nearest training images and the golden comparison of :attr:`AppState.current_image`.

    Attributes:
        tiles: the :class:`NeighbourTile` buttons, nearest first.
        image_item, golden_item, difference_item: the three compared pictures.
        status_label: what the panel shows or why it shows nothing.

    Signals:
        updated(): new evidence is on screen (tests wait on it).
    """

    updated = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._index: NeighbourIndex | None = None
        self.tasks = TaskOwner(self)  # the current image's evidence being computed
        self.shown_key: tuple | None = None
        self.status_label = QLabel(objectName="evidenceStatus")
        self.status_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self._build_neighbours())
        layout.addWidget(self._build_compare(), 1)
        layout.addWidget(self.status_label)
        state.current_image_changed.connect(self._on_current_image_change)
        state.current_run_changed.connect(self._on_current_run_change)
        state.dataset_changed.connect(self._on_current_run_change)
        state.annotations_changed.connect(self._on_annotations_change)
        self.refresh()

    # -- construction --------------------------------------------------------------
    def _build_neighbours(self) -> QGroupBox:
        box = QGroupBox("Nearest training images")
        box.setToolTip("The labelled images the run trained on that lie closest to this "
                       "image in the run's embedding space; click one to open it")
        grid = QGridLayout(box)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.setSpacing(2)
        self.tiles = [NeighbourTile() for _ in range(DEFAULT_K)]
        for i, tile in enumerate(self.tiles):
            tile.clicked.connect(lambda _=False, t=tile: self._on_tile_click(t))
            grid.addWidget(tile, i // TILE_COLUMNS, i % TILE_COLUMNS)
        return box

    def _build_compare(self) -> QGroupBox:
        box = QGroupBox("Image | golden, and their difference")
        box.setToolTip("The golden reference is the median of the nearest good training "
                       "images, each aligned to this image (sub-pixel phase correlation); "
                       "the difference is |image - golden|, yellow = 96+ grey levels")
        column = QVBoxLayout(box)
        column.setContentsMargins(4, 4, 4, 4)
        self.compare_view = pg.GraphicsLayoutWidget()
        self.compare_view.setBackground(VIEW_BACKGROUND)
        self.compare_view.setMinimumHeight(160)
        items, boxes = [], []
        # Image and golden side by side, the difference under the image: in a narrow dock
        # two columns give each picture more room than three (the views are linked, so
        # they must keep the same shape).
        for row, col in ((0, 0), (0, 1), (1, 0)):
            view = self.compare_view.addViewBox(row=row, col=col, lockAspect=True,
                                                invertY=True, enableMenu=False)
            item = pg.ImageItem(axisOrder="row-major")
            view.addItem(item)
            if boxes:  # zoom or pan one, all follow
                view.setXLink(boxes[0])
                view.setYLink(boxes[0])
            items.append(item)
            boxes.append(view)
        self.image_item, self.golden_item, self.difference_item = items
        self.difference_item.setLookupTable(heat_colours(np.linspace(0, 1, 256)))
        self.compare_boxes = boxes
        self.compare_view.addLabel(
            f"<span style='color:#c8ced6'>image · golden<br>difference<br>"
            f"(black 0 → yellow {DIFFERENCE_LEVELS[1]:.0f}+<br>grey levels)</span>",
            row=1, col=1)
        column.addWidget(self.compare_view)
        return box

    # -- requests ------------------------------------------------------------------
    def current_key(self) -> tuple | None:
        state = self.state
        if state.dataset is None or state.current_image < 0 or state.current_run is None:
            return None
        return state.current_run.id, state.current_image

    def refresh(self) -> None:
        """Show the current image's evidence, computing it on a worker when needed."""
        key = self.current_key()
        if key is None:
            self._clear(self._reason_empty())
            return
        if key == self.shown_key:
            return
        if self.tasks.busy:
            # The running search builds the run's neighbour index, which the next one
            # reuses: let it finish, then show the image current by then.
            self.tasks.when_idle(self.refresh)
            return
        self.status_label.setText("finding neighbours…")
        state = self.state
        self.tasks.start(_evidence_job, state.dataset, state.current_run, state.labels.copy(),
                         state.current_image, self._index, title="Nearest images",
                         on_done=lambda result: self._on_task_done(key, result),
                         on_failed=self._on_task_fail)

    def _on_task_done(self, key: tuple, result) -> None:
        index, neighbours, golden, parts = result
        if key[0] == (self.state.current_run.id if self.state.current_run else None):
            self._index = index
        if key == self.current_key():
            self._show(Evidence(key, index, neighbours, golden, parts))

    def _on_task_fail(self, error: BaseException) -> None:
        self._clear(f"No nearest images: {error}")

    # -- showing -------------------------------------------------------------------
    def _show(self, evidence: Evidence) -> None:
        dataset = self.state.dataset
        for i, tile in enumerate(self.tiles):
            tile.show_neighbour(dataset, evidence.neighbours[i]
                                if i < len(evidence.neighbours) else None)
        golden = evidence.golden
        if golden is None:
            self._clear_compare()
        else:
            self.image_item.setImage(golden.image, levels=(0, 255), autoLevels=False)
            self.golden_item.setImage(golden.golden, levels=(0, 255), autoLevels=False)
            self.difference_item.setImage(golden.difference, levels=DIFFERENCE_LEVELS,
                                          autoLevels=False)
            if self.shown_key is None or self.compare_boxes[0].viewRange()[0][1] <= 1:
                self.compare_boxes[0].autoRange(padding=0.02)
        self.shown_key = evidence.key
        self.status_label.setText(self._summary(evidence))
        self.updated.emit()

    def _summary(self, evidence: Evidence) -> str:
        if not evidence.neighbours:
            return "This image has no embedding in the current run (score it first)."
        bad = sum(n.label == 1 for n in evidence.neighbours)
        parts = [f"{bad} of {len(evidence.neighbours)} nearest training images are bad"]
        if evidence.golden is not None:
            parts.append(f"golden: median of {len(evidence.golden.positions)} aligned good "
                         "parts")
        if evidence.parts:
            parts.append(evidence.parts)
        return " · ".join(parts)

    def _clear(self, reason: str) -> None:
        self.shown_key = None
        for tile in self.tiles:
            tile.show_neighbour(self.state.dataset, None)
        self._clear_compare()
        self.status_label.setText(reason)

    def _clear_compare(self) -> None:
        for item in (self.image_item, self.golden_item, self.difference_item):
            item.clear()

    def _reason_empty(self) -> str:
        if self.state.dataset is None:
            return "No dataset open."
        if self.state.current_run is None:
            return "Choose a trained, scored run to see the nearest training images."
        return "Select an image."

    # -- handlers ------------------------------------------------------------------
    def _on_tile_click(self, tile: NeighbourTile) -> None:
        if tile.neighbour is not None:
            self.state.set_current_image(tile.neighbour.position)

    def _on_current_image_change(self, _position: int) -> None:
        self.refresh()

    def _on_current_run_change(self) -> None:
        self._index = None
        self.shown_key = None
        self.refresh()

    def _on_annotations_change(self, _positions) -> None:
        # A relabel changes which images are good candidates: rebuild on the next request.
        self._index = None
        self.shown_key = None
        self.refresh()
