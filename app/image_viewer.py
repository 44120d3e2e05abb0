"""The image viewer dock: the current image large, with zoom, pan and a pixel readout.

A pyqtgraph ``ImageItem`` in a ``ViewBox`` with locked aspect: the wheel zooms around the
cursor, a left drag pans, *Fit* shows the whole image again. Levels are fixed to 0..255 so
what the user sees is the cached grey value, not an auto-stretched one (a faint defect must
look faint). Above the image: file name, label and sizes; below: the pixel under the cursor
and :attr:`ImageViewer.actions_layout`, the row later work fills with score, flag and
previous/next controls.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app.icons import icon
from app.palette import label_name
from app.state import AppState

if TYPE_CHECKING:
    from core.dataset import Dataset

log = logging.getLogger(__name__)

VIEW_BACKGROUND = "#2a2f36"  # neutral dark: greys read truer than on white


def original_size(dataset: Dataset, image_id: int) -> tuple[int, int] | None:
    """The image file's own (height, width) as recorded at ingest, None if unknown."""
    try:
        with dataset.workspace.transaction() as con:
            row = con.execute("SELECT orig_height, orig_width FROM images WHERE id = ?",
                              (int(image_id),)).fetchone()
    except Exception:  # noqa: BLE001 - an info line must never break the viewer
        log.exception("could not read the original size of image %s", image_id)
        return None
    return (int(row[0]), int(row[1])) if row else None


class ImageViewer(QWidget):
    """Shows :attr:`AppState.current_image` of :attr:`AppState.dataset`.

    Attributes:
        image_item: the pyqtgraph item holding the shown array (row-major, uint8).
        view_box: its view box (zoom/pan state).
        actions_layout: a row for action buttons (Fit is first); later work appends to it.
    """

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._array: np.ndarray | None = None
        self.name_label = QLabel("No image selected", objectName="viewerName")
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A 32-character Kaggle id must not force the dock wider; the tooltip has it all.
        self.name_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label_chip = QLabel(objectName="labelChip")
        self.info_label = QLabel(objectName="viewerInfo")
        self.pixel_label = QLabel(objectName="pixelReadout")
        self._build_view()
        self.actions_layout = QHBoxLayout()
        self.fit_button = self._tool_button("fit", "Fit", "Fit the image to the window (F)",
                                            self.fit)
        self.zoom_in_button = self._tool_button("zoom-in", "", "Zoom in",
                                                lambda: self.zoom(1 / 1.5))
        self.zoom_out_button = self._tool_button("zoom-out", "", "Zoom out",
                                                 lambda: self.zoom(1.5))
        self.fit_button.setShortcut("F")
        self._build_layout()
        state.dataset_changed.connect(self._on_dataset_change)
        state.current_image_changed.connect(self._on_current_image_change)
        self._on_current_image_change(state.current_image)

    # -- construction --------------------------------------------------------------
    def _build_view(self) -> None:
        self.graphics = pg.GraphicsView(background=VIEW_BACKGROUND)
        self.graphics.setObjectName("imageCanvas")
        self.view_box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_move)
        self.graphics.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.graphics.setMinimumSize(200, 200)

    def _tool_button(self, icon_name: str, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(icon_name))
        button.setToolTip(tip)
        if text:
            button.setText(text)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.clicked.connect(slot)
        return button

    def _build_layout(self) -> None:
        header = QHBoxLayout()
        header.setSpacing(8)
        header.addWidget(self.name_label, 1)
        header.addWidget(self.label_chip)
        footer = self.actions_layout
        footer.setSpacing(4)
        footer.addWidget(self.fit_button)
        footer.addWidget(self.zoom_in_button)
        footer.addWidget(self.zoom_out_button)
        footer.addStretch(1)
        footer.addWidget(self.pixel_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.info_label)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(footer)

    # -- public --------------------------------------------------------------------
    @property
    def shown_array(self) -> np.ndarray | None:
        """The pixel array on screen (a copy of the cache row), None when empty."""
        return self._array

    def fit(self) -> None:
        """Show the whole image, as large as the window allows."""
        if self._array is not None:
            self.view_box.autoRange(padding=0.02)

    def zoom(self, factor: float) -> None:
        """Scale the visible range by ``factor`` around the view centre (<1 zooms in)."""
        if self._array is not None:
            self.view_box.scaleBy((factor, factor))

    # -- handlers ------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        self._show_none()

    def _on_current_image_change(self, position: int) -> None:
        dataset = self.state.dataset
        if dataset is None or position < 0:
            self._show_none()
            return
        image_id = int(dataset.image_ids[position])
        had_image = self._array is not None
        previous_shape = None if self._array is None else self._array.shape
        self._array = np.array(dataset.images[image_id], dtype=np.uint8)  # detach from memmap
        self.image_item.setImage(self._array, levels=(0, 255), autoLevels=False)
        self._show_info(dataset, position, image_id)
        if not had_image or previous_shape != self._array.shape:
            self._limit_view(self._array.shape)
            self.fit()  # keep the user's zoom when stepping through same-sized images

    def _show_none(self) -> None:
        self._array = None
        self.image_item.clear()
        self.name_label.setText("No image selected")
        self.name_label.setToolTip("")
        self.label_chip.hide()
        self.info_label.setText("Select a thumbnail to inspect it here."
                                if self.state.dataset is not None else "No dataset open.")
        self.pixel_label.setText("")

    def _show_info(self, dataset: Dataset, position: int, image_id: int) -> None:
        self.name_label.setText(dataset.names[position])
        self.name_label.setToolTip(str(dataset.root / dataset.relpaths[position]))
        label = label_name(dataset.labels[position])
        self.label_chip.setText(label.upper())
        self.label_chip.setProperty("label", label)
        self.label_chip.style().unpolish(self.label_chip)  # re-apply the [label=...] rule
        self.label_chip.style().polish(self.label_chip)
        self.label_chip.show()
        h, w = self._array.shape
        parts = [f"split {dataset.splits[position]}", f"{w} × {h} px"]
        original = original_size(dataset, image_id)
        if original is not None and original != (h, w):
            parts.append(f"original {original[1]} × {original[0]} px")
        elif original is not None:
            parts[-1] += " (original size)"
        self.info_label.setText("   ·   ".join(parts))
        self.pixel_label.setText("")

    def _limit_view(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        # The image can never be dragged fully out of sight nor zoomed below ~4 pixels.
        self.view_box.setLimits(xMin=-w, xMax=2 * w, yMin=-h, yMax=2 * h,
                                minXRange=4, minYRange=4, maxXRange=3 * w, maxYRange=3 * h)

    def _on_mouse_move(self, scene_pos: QPointF) -> None:
        if self._array is None:
            return
        point = self.view_box.mapSceneToView(scene_pos)
        x, y = math.floor(point.x()), math.floor(point.y())
        h, w = self._array.shape
        if 0 <= x < w and 0 <= y < h:
            self.pixel_label.setText(f"x {x}   y {y}   value {int(self._array[y, x])}")
        else:
            self.pixel_label.setText("")
