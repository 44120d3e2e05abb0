"""The image viewer dock: the current image large, with zoom, pan and a pixel readout.

A pyqtgraph ``ImageItem`` in a ``ViewBox`` with locked aspect: the wheel zooms around the
cursor, a left drag pans, *Fit* shows the whole image again. Levels are fixed to 0..255 so
what the user sees is the cached grey value, not an auto-stretched one (a faint defect must
look faint). Above the image: file name, label (as it stands after the user's relabels),
sizes, and the current run's score with the call at the shared threshold and the flag.
Below it: previous/next through the list the user is browsing (the ranked list's order
when the Ranked tab published one, :attr:`AppState.browse_order`, else the thumbnail
grid's filtered order), Flag/Unflag and Label good/bad buttons (saved at once through
:class:`AppState`), the heatmap row (:mod:`app.heatmap_layer`: H toggles where the run
sees the defect, with opacity and colour scale), then the zoom controls, the pixel under
the cursor (with the heatmap's value when shown) and :attr:`ImageViewer.actions_layout`
for later buttons.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app.elide import CompactToolButton, ElidedLabel
from app.heatmap_layer import HeatmapLayer
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
        score_label: the current run's score, the call at the threshold and the flag.
        previous_button, next_button, browse_label: stepping through the current list
            (also ``,`` / ``.`` anywhere in the window, PageUp / PageDown in the viewer).
        flag_button, good_button, bad_button: flag and label the shown image.
    """

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._array: np.ndarray | None = None
        # A 32-character Kaggle id must not force the dock wider: cut with "…", the
        # tooltip has the whole path.
        self.name_label = ElidedLabel("No image selected", objectName="viewerName",
                                      mode=Qt.TextElideMode.ElideMiddle)
        self.label_chip = QLabel(objectName="labelChip")
        self.info_label = QLabel(objectName="viewerInfo")
        self.score_label = QLabel(objectName="viewerScore")
        self._fallback_order: Callable[[], np.ndarray] | None = None
        self._build_review_row()
        self.pixel_label = QLabel(objectName="pixelReadout")
        self._build_view()
        # The overlay lives in the same view box, so it zooms and pans with the image.
        self.heatmap = HeatmapLayer(state, self.view_box, self)
        self.heatmap.install_shortcut(self)
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
        state.annotations_changed.connect(self._on_annotations_change)
        state.current_run_changed.connect(self._refresh_review)
        state.current_run_changed.connect(self._refresh_info)
        state.threshold_changed.connect(self._refresh_review)
        state.browse_order_changed.connect(self._refresh_browse)
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
        # With text it shows only its icon when the dock is narrow (a 1366-pixel screen).
        button = CompactToolButton() if text else QToolButton()
        button.setIcon(icon(icon_name))
        button.setToolTip(tip)
        if text:
            button.setText(text)
        button.clicked.connect(slot)
        return button

    def _build_review_row(self) -> None:
        self.previous_button = self._tool_button("previous", "", "Previous image in the list "
                                                 "(, or PageUp)", lambda: self.step(-1))
        self.next_button = self._tool_button("next", "", "Next image in the list (. or PageDown)",
                                             lambda: self.step(1))
        self.previous_button.setShortcut(",")
        self.next_button.setShortcut(".")
        for key, delta in ((QKeySequence.StandardKey.MoveToPreviousPage, -1),
                           (QKeySequence.StandardKey.MoveToNextPage, 1)):
            # Only while the viewer has focus: elsewhere PageUp/PageDown scroll lists.
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda d=delta: self.step(d))
        self.browse_label = QLabel(objectName="browseLabel")
        self.browse_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.browse_label.setMinimumWidth(self.browse_label.fontMetrics()
                                          .horizontalAdvance("9,999 of 9,999"))
        self.flag_button = self._tool_button("flag", "Flag", "Flag this image (saved at once)",
                                             self._on_flag_click)
        self.good_button = self._tool_button("label-good", "Good", "Label this image good "
                                             "(saved at once)", lambda: self._set_label(0))
        self.bad_button = self._tool_button("label-bad", "Bad", "Label this image bad "
                                            "(saved at once)", lambda: self._set_label(1))
        for button in (self.flag_button, self.good_button, self.bad_button):
            button.setCheckable(True)  # checked shows the image's state; a click sets it
        self.review_layout = QHBoxLayout()
        self.review_layout.setSpacing(4)
        for widget in (self.previous_button, self.browse_label, self.next_button):
            self.review_layout.addWidget(widget)
        self.review_layout.addStretch(1)
        for widget in (self.flag_button, self.good_button, self.bad_button):
            self.review_layout.addWidget(widget)

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
        footer.addWidget(self.heatmap.status_label, 1)
        footer.addWidget(self.pixel_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.info_label)
        layout.addWidget(self.score_label)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(self.review_layout)
        layout.addLayout(self._heatmap_row())
        layout.addLayout(footer)

    def _heatmap_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setSpacing(6)
        for widget in self.heatmap.controls():
            if widget is not self.heatmap.status_label:  # in the footer, where there is room
                row.addWidget(widget)
        row.addStretch(1)
        return row

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

    def set_fallback_order(self, order: Callable[[], np.ndarray] | None, changed=None) -> None:
        """The list previous/next follows when no view published :attr:`AppState.browse_order`.

        Args:
            order: returns positions in list order (the main window passes the thumbnail
                grid's filtered rows).
            changed: a signal emitted when that order changes (to refresh "12 of 245").
        """
        self._fallback_order = order
        if changed is not None:
            changed.connect(self._refresh_browse)
        self._refresh_browse()

    def browse_list(self) -> np.ndarray:
        """The positions previous/next steps through, in order.

        The published browse order (the list on screen, whether or not it holds the
        current image), else the fallback order if it holds it, else every image in
        dataset order.
        """
        dataset = self.state.dataset
        if dataset is None:
            return np.zeros(0, dtype=np.int64)
        current = self.state.current_image
        fallback = self._fallback_order() if self._fallback_order is not None else None
        if self.state.browse_order is not None:  # the list on screen, even if it lacks
            return np.asarray(self.state.browse_order, dtype=np.int64)  # the current image
        if fallback is not None and len(fallback) and (current < 0 or (fallback == current).any()):
            return np.asarray(fallback, dtype=np.int64)
        return np.arange(len(dataset.image_ids), dtype=np.int64)

    def step(self, delta: int) -> None:
        """Show the image ``delta`` rows further in :meth:`browse_list` (stops at the ends)."""
        order = self.browse_list()
        if len(order) == 0:
            return
        index = self._index_in(order)
        if index is None:
            target = 0 if delta > 0 else len(order) - 1
        else:
            target = index + delta
            if not 0 <= target < len(order):
                return
        self.state.set_current_image(int(order[target]))

    def _index_in(self, order: np.ndarray) -> int | None:
        hits = np.flatnonzero(order == self.state.current_image)
        return int(hits[0]) if len(hits) and self.state.current_image >= 0 else None

    # -- handlers ------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        self._show_none()

    def _on_annotations_change(self, positions) -> None:
        if self.state.current_image in np.asarray(positions).tolist():
            self._refresh_review()

    def _on_flag_click(self) -> None:
        if self.state.current_image >= 0:
            self.state.toggle_flag(self.state.current_image)
        self._refresh_review()  # a click toggles the check; the state decides it

    def _set_label(self, label: int) -> None:
        if self.state.current_image >= 0:
            self.state.set_label([self.state.current_image], label)
        self._refresh_review()

    def _refresh_review(self, *_args) -> None:
        """Label chip, score line and the review buttons for the current image."""
        position = self.state.current_image
        has_image = self.state.dataset is not None and position >= 0
        for button in (self.flag_button, self.good_button, self.bad_button):
            button.setEnabled(has_image)
        if not has_image:
            for button in (self.flag_button, self.good_button, self.bad_button):
                button.setChecked(False)
            self.score_label.setText("")
            self._refresh_browse()
            return
        label = int(self.state.labels[position])
        self._show_label_chip(label)
        flagged = bool(self.state.flagged[position])
        self.flag_button.setChecked(flagged)
        self.flag_button.setText("Unflag" if flagged else "Flag")
        self.flag_button.setToolTip("Remove the flag (saved at once)" if flagged
                                    else "Flag this image (saved at once)")
        self.good_button.setChecked(label == 0)
        self.bad_button.setChecked(label == 1)
        self.score_label.setText(self._score_text(position, flagged))
        self._refresh_browse()

    def _score_text(self, position: int, flagged: bool) -> str:
        state = self.state
        parts = []
        if state.current_run is None:
            parts.append("no run selected")
        elif state.scores is None or np.isnan(state.scores[position]):
            parts.append(f"not scored by run {state.current_run.id}")
        else:
            score = float(state.scores[position])
            call = "bad" if score >= state.threshold else "good"
            parts.append(f"score {score:.4f}  →  {call} at {state.threshold:.3f}")
        parts.append("flagged" if flagged else "not flagged")
        return "   ·   ".join(parts)

    def _refresh_browse(self, *_args) -> None:
        order = self.browse_list()
        index = self._index_in(order) if len(order) else None
        has_list = len(order) > 0
        self.previous_button.setEnabled(has_list and (index is None or index > 0))
        self.next_button.setEnabled(has_list and (index is None or index < len(order) - 1))
        if not has_list:
            self.browse_label.setText("")
        elif index is None:
            self.browse_label.setText(f"– of {len(order):,}")
        else:
            self.browse_label.setText(f"{index + 1:,} of {len(order):,}")

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
        self._refresh_review()

    def _show_info(self, dataset: Dataset, position: int, image_id: int) -> None:
        self.name_label.setText(dataset.names[position])
        self.name_label.setToolTip(str(dataset.root / dataset.relpaths[position]))
        h, w = self._array.shape
        self._size_text = f"{w} × {h} px"
        original = original_size(dataset, image_id)
        if original is not None and original != (h, w):
            self._size_text += f"   ·   original {original[1]} × {original[0]} px"
        elif original is not None:
            self._size_text += " (original size)"
        self._refresh_info()
        self.pixel_label.setText("")
        self._refresh_review()

    def _refresh_info(self, *_args) -> None:
        """Split (held out by the current run?) and size of the image shown."""
        position = self.state.current_image
        if self._array is None or position < 0 or self.state.dataset is None:
            return
        self.info_label.setText(f"{self.state.split_text(position)}   ·   {self._size_text}")

    def _show_label_chip(self, label_code: int) -> None:
        label = label_name(label_code)
        self.label_chip.setText(label.upper())
        self.label_chip.setProperty("label", label)
        self.label_chip.style().unpolish(self.label_chip)  # re-apply the [label=...] rule
        self.label_chip.style().polish(self.label_chip)
        self.label_chip.show()

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
            heat = self.heatmap.value_at(x, y)
            extra = "" if heat is None else f"   heat {heat:.2f}"
            self.pixel_label.setText(f"x {x}   y {y}   value {int(self._array[y, x])}{extra}")
        else:
            self.pixel_label.setText("")
