"""The ranked list's "Heatmaps" option: each visible thumbnail with its heatmap over it.

Off by default. When on, the thumbnails of rows whose map is known (in memory, or in the
run's disk cache) are drawn with the map blended over them; the maps of visible rows not
cached yet are computed on a worker in one batch once scrolling stops, and stored in the
run's cache (so ``diesight explain``, the export and the next session reuse them).
Painting only ever reads memory: the disk and the worker are asked once per scroll stop.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QCheckBox, QTableView

from app.heatmap_source import HeatmapSource, overlay_pixmap
from app.state import AppState

SCROLL_STOP_MS = 250   # no scrolling for this long = the rows on screen are wanted
PIXMAP_MEMORY = 512


class RankedHeatmaps(QObject):
    """The check box, the maps' source and the overlaid thumbnails of ``table``'s rows.

    Attributes:
        check_box: "Heatmaps", off by default.
        source: the current run's maps (computed ones are stored in the run's cache).
    """

    def __init__(self, state: AppState, table: QTableView, side: int,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.table = table
        self.side = side
        self.source = HeatmapSource(state, self, store=True)
        self._pixmaps: dict[tuple, QPixmap] = {}
        self.check_box = QCheckBox("Heatmaps", objectName="rankedHeatmaps")
        self.check_box.setToolTip("Draw the run's heatmap over the thumbnails on screen "
                                  "(maps not cached yet are computed when scrolling stops)")
        self.check_box.toggled.connect(self._on_toggle)
        self._scroll_stop = QTimer(self, singleShot=True, interval=SCROLL_STOP_MS)
        self._scroll_stop.timeout.connect(self.request_visible)
        table.verticalScrollBar().valueChanged.connect(self._on_rows_moved)
        table.model().modelReset.connect(self._on_rows_moved)
        self.source.ready.connect(lambda _ids: self.table.viewport().update())
        state.current_run_changed.connect(self._pixmaps.clear)
        state.heatmap_method_changed.connect(self.request_visible)

    @property
    def enabled(self) -> bool:
        return self.check_box.isChecked()

    def pixmap(self, image_id: int) -> QPixmap | None:
        """The overlaid thumbnail of ``image_id``, None when off or its map is not known."""
        key = self.source.key()
        if not self.enabled or key is None:
            return None
        cached = self._pixmaps.get((*key, image_id))
        if cached is not None:
            return cached
        heat = self.source.in_memory(image_id)
        if heat is None:
            return None
        if len(self._pixmaps) >= PIXMAP_MEMORY:
            self._pixmaps.clear()
        pixmap = overlay_pixmap(self.state.dataset.images[image_id], heat, self.side)
        self._pixmaps[(*key, image_id)] = pixmap
        return pixmap

    def visible_ids(self) -> list[int]:
        """Image ids of the rows on screen."""
        model, table = self.table.model(), self.table
        if model.rowCount() == 0 or self.state.dataset is None:
            return []
        first = max(table.rowAt(0), 0)
        last = table.rowAt(table.viewport().height() - 1)
        last = model.rowCount() - 1 if last < 0 else last
        positions = [model.position_at(row) for row in range(first, last + 1)]
        return [int(self.state.dataset.image_ids[p]) for p in positions]

    def request_visible(self) -> None:
        """Read the visible rows' maps from the cache and compute the rest (one batch)."""
        if not self.enabled:
            return
        ids = self.visible_ids()
        if ids:
            self.source.request(ids)  # reads the disk cache first, computes only the rest
        self.table.viewport().update()

    def _on_rows_moved(self, *_args) -> None:
        if self.enabled:
            self._scroll_stop.start()

    def _on_toggle(self, _checked: bool) -> None:
        self.request_visible()
        self.table.viewport().update()
