"""The "Images" tab: a virtualised grid of thumbnails with class and split filters.

30,000 images must scroll smoothly, so nothing is done per image up front:

* :class:`ThumbnailModel` is a list model over an index array of dataset positions (the
  filter result); ``rowCount`` is its length and the view only asks for visible rows.
* A missing thumbnail is *requested* from :class:`ThumbnailLoader`, which downscales the
  cache row on a worker thread (area mean, integer maths) and builds a ``QImage`` there
  (QImage is thread-safe, QPixmap is not). Requests are served newest first and the queue is
  bounded, so rows the user scrolled past are dropped instead of delaying the visible ones.
* Finished thumbnails live in a small LRU cache of pixmaps (a few thousand, ~9 KB each).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QRect,
    QSize,
    Qt,
    QThreadPool,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.elide import ElidedLabel
from app.filter_bar import filter_bar, filter_combo
from app.palette import ACCENT, LABEL_COLOURS, label_name
from app.state import AppState
from core.ranking import ALL_SPLITS, filter_positions, split_choices

if TYPE_CHECKING:
    from core.dataset import Dataset

THUMBNAIL_SIZE = 96  # longest side in pixels
CACHE_SIZE = 4000  # thumbnails kept; a full screen shows a few hundred


POSITION_ROLE = Qt.ItemDataRole.UserRole + 1
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 2
LABEL_ROLE = Qt.ItemDataRole.UserRole + 3
SPLIT_ROLE = Qt.ItemDataRole.UserRole + 4

CLASS_FILTERS = [("all", "All classes"), ("good", "Good"), ("bad", "Bad"),
                 ("unlabelled", "Unlabelled")]


def downscale(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """Shrink a grayscale image by an integer area mean so its longest side is <= ``size``.

    The last ``factor - 1`` rows/columns at most are dropped, which is invisible at thumbnail
    size. Pillow's box reduction does the averaging (~0.1 ms for a 267 x 275 image, ten
    times faster than a numpy reshape-and-sum).
    """
    h, w = image.shape[:2]
    factor = max(1, math.ceil(max(h, w) / size))
    if factor == 1:
        return np.ascontiguousarray(image, dtype=np.uint8)
    hh, ww = h // factor * factor, w // factor * factor
    cropped = np.ascontiguousarray(image[:hh, :ww], dtype=np.uint8)
    return np.asarray(Image.fromarray(cropped).reduce(factor))


def gray_qimage(array: np.ndarray) -> QImage:
    """A QImage owning a copy of a 2-D uint8 array (safe to build on any thread)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape
    return QImage(array.tobytes(), w, h, w, QImage.Format.Format_Grayscale8).copy()


def split_filter_choices(dataset: Dataset | None) -> list[tuple[str, str]]:
    """The split filter's (key, text) values: all, the folder splits, then new lots."""
    return [ALL_SPLITS, *split_choices(dataset)]


class ThumbnailLoader(QObject):
    """Makes thumbnails on a worker thread, most recently requested first.

    Signals:
        ready(int, object): a generation number and a list of ``(image_id, QImage)``;
            results of an older generation (a previous dataset) must be ignored.
    """

    ready = Signal(int, object)

    def __init__(self, size: int = THUMBNAIL_SIZE, max_pending: int = 800, batch: int = 16,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self.max_pending = max_pending
        self.batch = batch
        self._pool = QThreadPool(self)
        # One thread: a thumbnail takes ~0.1 ms, and the GUI thread needs the other core.
        self._pool.setMaxThreadCount(1)
        self._lock = threading.Lock()
        self._pending: deque[int] = deque()
        self._pending_set: set[int] = set()
        self._images: np.ndarray | None = None
        self._generation = 0
        self._draining = False

    @property
    def generation(self) -> int:
        return self._generation

    def set_images(self, images: np.ndarray | None) -> None:
        """Switch to another cache array; pending requests and results in flight are dropped."""
        with self._lock:
            self._images = images
            self._generation += 1
            self._pending.clear()
            self._pending_set.clear()

    def request(self, image_id: int) -> None:
        """Ask for one thumbnail (no-op when it is already queued)."""
        with self._lock:
            if image_id in self._pending_set or self._images is None:
                return
            self._pending.append(image_id)
            self._pending_set.add(image_id)
            while len(self._pending) > self.max_pending:  # scrolled past long ago
                self._pending_set.discard(self._pending.popleft())
            if not self._draining:
                self._draining = True
                self._pool.start(self._drain)

    def wait(self, msecs: int = 5000) -> bool:
        """Block until the queue is empty (tests and shutdown)."""
        return self._pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 2000) -> None:
        """Drop every pending request and wait for the batch in progress."""
        self.set_images(None)
        self.wait(msecs)

    def _take_batch(self) -> tuple[list[int], np.ndarray | None, int]:
        with self._lock:
            ids = []
            while self._pending and len(ids) < self.batch:
                image_id = self._pending.pop()  # newest first: what is on screen now
                self._pending_set.discard(image_id)
                ids.append(image_id)
            if not ids:
                self._draining = False
            return ids, self._images, self._generation

    def _drain(self) -> None:
        while True:
            ids, images, generation = self._take_batch()
            if not ids:
                return
            results = []
            for image_id in ids:
                try:
                    results.append((image_id, gray_qimage(downscale(images[image_id],
                                                                    self.size))))
                except Exception:  # noqa: BLE001 - a bad row must not stop the others
                    results.append((image_id, QImage()))
            try:
                self.ready.emit(generation, results)
            except RuntimeError:  # the loader's widget was deleted: nobody left to tell
                with self._lock:
                    self._images = None
                    self._pending.clear()
                    self._pending_set.clear()
                    self._draining = False
                return


class ThumbnailModel(QAbstractListModel):
    """A list model over some dataset positions; thumbnails come in lazily.

    Roles: display (file name), decoration (QPixmap or None while loading), tooltip,
    and ``POSITION_ROLE``, ``IMAGE_ID_ROLE``, ``LABEL_ROLE``, ``SPLIT_ROLE``.
    """

    def __init__(self, loader: ThumbnailLoader | None = None, cache_size: int = CACHE_SIZE,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.loader = loader or ThumbnailLoader(parent=self)
        self.loader.ready.connect(self._on_thumbnails_ready)
        self.cache_size = cache_size
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._dataset: Dataset | None = None
        self._label_source: Callable[[], np.ndarray] | None = None
        self._names: list[str] = []
        self._positions = np.zeros(0, dtype=np.int64)
        self._row_of_position = np.zeros(0, dtype=np.int64)

    # -- contents ------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset | None:
        return self._dataset

    @property
    def positions(self) -> np.ndarray:
        """Dataset positions shown, in row order."""
        return self._positions

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Show all images of another dataset (the thumbnail cache starts empty)."""
        self.beginResetModel()
        self._dataset = dataset
        self._cache.clear()
        self._names = list(dataset.names) if dataset is not None else []
        self.loader.set_images(dataset.images if dataset is not None else None)
        n = 0 if dataset is None else len(dataset.image_ids)
        self._set_positions(np.arange(n, dtype=np.int64))
        self.endResetModel()

    def set_label_source(self, source: Callable[[], np.ndarray] | None) -> None:
        """Read labels by position from ``source`` (the session's labels as they stand);
        None: the labels as found (``Dataset.labels``)."""
        self._label_source = source

    def label_of(self, position: int) -> int:
        labels = self._label_source() if self._label_source is not None \
            else self._dataset.labels
        return int(labels[position])

    def refresh_positions(self, positions) -> None:
        """Repaint the rows of these positions (their label changed)."""
        for position in np.asarray(positions, dtype=np.int64).tolist():
            row = self.row_of(position)
            if row >= 0:
                index = self.index(row)
                self.dataChanged.emit(index, index)

    def set_positions(self, positions: np.ndarray) -> None:
        """Show only these dataset positions (a filter result), in this order."""
        self.beginResetModel()
        self._set_positions(np.asarray(positions, dtype=np.int64))
        self.endResetModel()

    def _set_positions(self, positions: np.ndarray) -> None:
        self._positions = positions
        n = 0 if self._dataset is None else len(self._dataset.image_ids)
        self._row_of_position = np.full(n, -1, dtype=np.int64)
        self._row_of_position[positions] = np.arange(len(positions))

    def row_of(self, position: int) -> int:
        """The row showing a dataset position, -1 when it is filtered out."""
        if 0 <= position < len(self._row_of_position):
            return int(self._row_of_position[position])
        return -1

    # -- Qt model API --------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._positions)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self._dataset is None:
            return None
        position = int(self._positions[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            return self._names[position]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(int(self._dataset.image_ids[position]))
        if role == LABEL_ROLE:
            return self.label_of(position)
        if role == POSITION_ROLE:
            return position
        if role == IMAGE_ID_ROLE:
            return int(self._dataset.image_ids[position])
        if role == SPLIT_ROLE:
            return str(self._dataset.splits[position])
        if role == Qt.ItemDataRole.ToolTipRole:
            label = label_name(self.label_of(position))
            return (f"{self._dataset.relpaths[position]}\n"
                    f"{label} · {self._dataset.splits[position]}")
        return None

    # -- thumbnails ----------------------------------------------------------------
    def thumbnail(self, image_id: int) -> QPixmap | None:
        """The cached thumbnail, or None after queueing it for the loader."""
        pixmap = self._cache.get(image_id)
        if pixmap is None:
            self.loader.request(image_id)
            return None
        self._cache.move_to_end(image_id)
        return pixmap

    @Slot(int, object)
    def _on_thumbnails_ready(self, generation: int, results: list) -> None:
        if generation != self.loader.generation or self._dataset is None:
            return  # made for a dataset that is gone
        ids = self._dataset.image_ids
        for image_id, image in results:
            self._cache[image_id] = QPixmap.fromImage(image)
            self._cache.move_to_end(image_id)
            position = int(np.searchsorted(ids, image_id))  # ids are ascending
            row = self.row_of(position)
            if row >= 0:
                index = self.index(row)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a thumbnail in a label-coloured frame with its file name below."""

    PADDING = 4
    FRAME = 3
    CAPTION_HEIGHT = 18

    def __init__(self, thumbnail_size: int = THUMBNAIL_SIZE, parent: QObject | None = None):
        super().__init__(parent)
        self.thumbnail_size = thumbnail_size

    def item_size(self) -> QSize:
        side = self.thumbnail_size + 2 * (self.FRAME + self.PADDING)
        return QSize(side + 8, side + self.CAPTION_HEIGHT + self.PADDING)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        return self.item_size()

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        cell = option.rect.adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.setPen(QPen(QColor(ACCENT), 1.5))
            painter.setBrush(QColor("#dce8fc"))
            painter.drawRoundedRect(cell, 6, 6)
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#eef2f7"))
            painter.drawRoundedRect(cell, 6, 6)
        frame = self._frame_rect(cell)
        self._paint_frame(painter, frame, index.data(LABEL_ROLE))
        self._paint_thumbnail(painter, frame, index.data(Qt.ItemDataRole.DecorationRole))
        self._paint_caption(painter, cell, frame, index.data(Qt.ItemDataRole.DisplayRole) or "",
                            selected)
        painter.restore()

    def _frame_rect(self, cell: QRect) -> QRect:
        side = self.thumbnail_size + 2 * self.FRAME
        left = cell.left() + (cell.width() - side) // 2
        return QRect(left, cell.top() + self.PADDING, side, side)

    def _paint_frame(self, painter: QPainter, frame: QRect, label) -> None:
        colour = LABEL_COLOURS.get(label if label is not None else -1, LABEL_COLOURS[-1])
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawRoundedRect(frame, 4, 4)
        inner = frame.adjusted(self.FRAME, self.FRAME, -self.FRAME, -self.FRAME)
        painter.setBrush(QColor("#1d2127"))
        painter.drawRect(inner)

    def _paint_thumbnail(self, painter: QPainter, frame: QRect, pixmap) -> None:
        inner = frame.adjusted(self.FRAME, self.FRAME, -self.FRAME, -self.FRAME)
        if not isinstance(pixmap, QPixmap) or pixmap.isNull():
            return  # still loading: the dark square is the placeholder
        target = pixmap.size().scaled(inner.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = inner.left() + (inner.width() - target.width()) // 2
        y = inner.top() + (inner.height() - target.height()) // 2
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(QRect(x, y, target.width(), target.height()), pixmap)

    def _paint_caption(self, painter: QPainter, cell: QRect, frame: QRect, text: str,
                       selected: bool) -> None:
        rect = QRect(cell.left() + 2, frame.bottom() + 3, cell.width() - 4, self.CAPTION_HEIGHT)
        metrics = painter.fontMetrics()
        painter.setPen(QColor("#163a7a") if selected else QColor("#2b3440"))
        elided = metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, rect.width())
        painter.drawText(rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                         elided)


class _JustifiedListView(QListView):
    """An icon-mode list view that widens its grid cells to fill the row (no ragged gap)."""

    def __init__(self, cell: QSize, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cell = cell
        self.setGridSize(cell)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        # Qt lays the items out in the widest viewport minus the style's scroll bar
        # extent (the bar may appear), so the cells must fit that width, not the current one.
        extent = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self)
        width = min(self.viewport().width(), self.maximumViewportSize().width() - extent) - 2
        columns = max(1, width // self._cell.width())
        grid = QSize(max(self._cell.width(), width // columns), self._cell.height())
        if grid != self.gridSize():
            self.setGridSize(grid)


class ThumbnailGrid(QWidget):
    """Filter combo boxes above a virtualised thumbnail grid; follows :class:`AppState`.

    Selecting a thumbnail makes it the current image; a current image set elsewhere (a
    later tab) is selected and scrolled to here when the filter shows it.
    """

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ThumbnailModel(parent=self)
        self.model.set_label_source(lambda: state.labels)  # one source: the session's
        self.delegate = ThumbnailDelegate(parent=self)
        self.class_filter = filter_combo(CLASS_FILTERS, "classFilter")
        self._split_choices = split_filter_choices(None)
        self.split_filter = filter_combo(self._split_choices, "splitFilter")
        self.count_label = ElidedLabel(objectName="gridCount")
        self.view = self._make_view()
        self._build_layout()
        self.class_filter.currentIndexChanged.connect(self._on_filter_change)
        self.split_filter.currentIndexChanged.connect(self._on_filter_change)
        self.view.selectionModel().currentChanged.connect(self._on_view_current_change)
        state.dataset_changed.connect(self._on_dataset_change)
        state.current_image_changed.connect(self._on_current_image_change)
        state.annotations_changed.connect(self._on_annotations_change)
        self._on_dataset_change()

    # -- construction --------------------------------------------------------------
    def _make_view(self) -> QListView:
        view = _JustifiedListView(self.delegate.item_size())
        view.setObjectName("thumbnailView")
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setMovement(QListView.Movement.Static)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setUniformItemSizes(True)  # one size hint for all 30,000 items
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(2000)
        view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        view.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # rows wrap
        view.verticalScrollBar().setSingleStep(24)
        view.setMouseTracking(True)
        view.setItemDelegate(self.delegate)
        view.setModel(self.model)
        return view

    def _build_layout(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(filter_bar("gridFilterBar", [("Class", self.class_filter),
                                                       ("Split", self.split_filter)],
                                    self.count_label))
        layout.addWidget(self.view, 1)

    # -- public --------------------------------------------------------------------
    def set_filters(self, class_filter: str = "all", split_filter: str = "all") -> None:
        """Select filter values by key (``bad``, ``test``, ...)."""
        self.class_filter.setCurrentIndex(self.class_filter.findData(class_filter))
        self.split_filter.setCurrentIndex(self.split_filter.findData(split_filter))

    def position_at_row(self, row: int) -> int:
        return int(self.model.positions[row])

    def publish_order(self) -> None:
        """Make the grid's rows the list the viewer's previous/next steps through."""
        if self.state.dataset is not None:
            self.state.set_browse_order(self.model.positions)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.publish_order()

    # -- handlers ------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        dataset = self.state.dataset
        self.model.set_dataset(dataset)
        self._set_split_choices(split_filter_choices(dataset))
        self._update_filter_counts()
        self._apply_filters()

    def _on_annotations_change(self, positions) -> None:
        self._update_filter_counts()
        if self.class_filter.currentData() == "all":
            self.model.refresh_positions(positions)
        else:
            self._apply_filters()  # a relabelled image may leave or join the filter

    def _on_filter_change(self) -> None:
        self._apply_filters()

    def _apply_filters(self) -> None:
        dataset = self.state.dataset
        if dataset is None:
            self.model.set_positions(np.zeros(0, dtype=np.int64))
            self.count_label.setText("No dataset open")
            return
        positions = filter_positions(dataset, self.state.labels,
                                     self.class_filter.currentData(),
                                     self.split_filter.currentData())
        self.model.set_positions(positions)
        if self.isVisible():
            self.publish_order()
        total = len(dataset.image_ids)
        shown = len(positions)
        self.count_label.setText(f"{shown:,} images" if shown == total
                                 else f"{shown:,} of {total:,} images")
        self._select_position(self.state.current_image)

    def _set_split_choices(self, choices: list[tuple[str, str]]) -> None:
        """Offer the dataset's splits (lots included), keeping the selection where it exists."""
        if choices == self._split_choices:
            return
        current = self.split_filter.currentData()
        self.split_filter.blockSignals(True)  # the caller applies the filters once
        self.split_filter.clear()
        for key, text in choices:
            self.split_filter.addItem(text, key)
        self.split_filter.setCurrentIndex(max(0, self.split_filter.findData(current)))
        self.split_filter.blockSignals(False)
        self._split_choices = choices

    def _update_filter_counts(self) -> None:
        """Show how many images each filter value keeps now ("Bad (312)")."""
        dataset = self.state.dataset
        counts = {} if dataset is None else self.state.label_counts()
        splits = None if dataset is None else np.asarray(dataset.splits)
        for i, (key, text) in enumerate(CLASS_FILTERS):
            count = counts.get(key)
            self.class_filter.setItemText(i, text if count is None else f"{text} ({count:,})")
        for i, (key, text) in enumerate(self._split_choices):
            if splits is None or key == "all":
                self.split_filter.setItemText(i, text)
            else:
                self.split_filter.setItemText(i, f"{text} ({int(np.sum(splits == key)):,})")

    def _on_view_current_change(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            self.state.set_current_image(self.position_at_row(current.row()))

    def _on_current_image_change(self, position: int) -> None:
        self._select_position(position)

    def _select_position(self, position: int) -> None:
        row = self.model.row_of(position) if position >= 0 else -1
        current = self.view.currentIndex()
        if row < 0:
            if current.isValid():
                self.view.selectionModel().clear()
            return
        if current.isValid() and current.row() == row:
            return
        index = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scrollTo(index)
