"""The activation map's hover preview: the hovered point's image and its heatmap.

A small panel in the top corner of the map away from the pointer (so it hides neither the
point nor its label) shows the image the pointer rests on and, beside it, the same image
with the current run's heatmap over it: at once when the map is cached, otherwise after a
worker computed it (one at a time; the newest hovered point wins, so sweeping over a cloud
queues nothing).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QWidget

from app.heatmap_source import HeatmapSource, overlay_pixmap
from app.state import AppState

PREVIEW_SIDE = 112  # px per picture
MARGIN = 8


class HoverPreview(QFrame):
    """Floats over ``host`` (the scatter's plot); :meth:`show_image` / :meth:`hide`.

    Attributes:
        image_label, heat_label: the two pictures (the second says why it is empty).
        image_id: the image shown, None when hidden.
    """

    def __init__(self, state: AppState, host: QWidget) -> None:
        super().__init__(host, objectName="hoverPreview")
        self.state = state
        self.host = host
        self.image_id: int | None = None
        self.source = HeatmapSource(state, self)
        self.source.ready.connect(self._on_maps_ready)
        self.source.failed.connect(lambda _e: self.heat_label.setText("no heatmap"))
        state.heatmap_method_changed.connect(self._on_heatmap_method_change)
        self.image_label = QLabel(objectName="hoverPreviewImage")
        self.heat_label = QLabel(objectName="hoverPreviewHeat")
        for label in (self.image_label, self.heat_label):
            label.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)
        layout.addWidget(self.image_label, 0, 0)
        layout.addWidget(self.heat_label, 0, 1)
        self.setStyleSheet("QFrame#hoverPreview { background: #20252c; border: 1px solid "
                           "#3a424d; border-radius: 4px; } QLabel { color: #c9d1db; "
                           "font-size: 8pt; }")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    def show_image(self, image_id: int | None) -> None:
        """Preview ``image_id`` (None hides the panel)."""
        dataset = self.state.dataset
        if image_id is None or dataset is None:
            self.image_id = None
            self.hide()
            return
        if image_id == self.image_id and self.isVisible():
            return
        self.image_id = int(image_id)
        self.image_label.setPixmap(overlay_pixmap(dataset.images[self.image_id], None,
                                                  PREVIEW_SIDE))
        self._show_heat()
        self.adjustSize()
        pointer = self.host.mapFromGlobal(QCursor.pos())
        right = pointer.x() < self.host.width() / 2
        self.move(self.host.width() - self.width() - MARGIN if right else MARGIN, MARGIN)
        self.show()
        self.raise_()

    def _show_heat(self) -> None:
        if self.state.current_run is None or self.state.current_run.checkpoint is None:
            self.heat_label.setText("heatmap needs a trained run")
            return
        heat = self.source.get(self.image_id)
        if heat is None:
            self.heat_label.setText("heatmap: computing…")
            self.source.request([self.image_id])
            return
        self.heat_label.setPixmap(overlay_pixmap(self.state.dataset.images[self.image_id],
                                                 heat, PREVIEW_SIDE))

    @property
    def showing_heatmap(self) -> bool:
        pixmap = self.heat_label.pixmap()
        return self.isVisible() and not pixmap.isNull()

    def _on_heatmap_method_change(self) -> None:
        if self.image_id is not None and self.isVisible():
            self._show_heat()

    def _on_maps_ready(self, image_ids: list) -> None:
        if self.image_id is not None and self.image_id in image_ids:
            self._show_heat()
