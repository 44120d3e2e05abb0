"""The "Ranked" tab: every image of the current run, highest defect score first.

An inspector works down this list: thumbnail, file name, score, label, the model's call at
the shared threshold, and the flag. Space or F flags, G and B label good or bad (saved to
the workspace at once through :class:`AppState`), the arrow keys move, and the selected row
is the current image every other view shows.

Built for 30,000 rows:

* :class:`RankedModel` is a table model over an int64 array of dataset positions (the rows
  shown, in order). Scores, labels, flags and predictions are read from :class:`AppState`'s
  arrays when a cell is painted; nothing is stored per row and the database is never read
  per row.
* Ranking, predictions, filters and their counts are ``core.ranking``'s numpy functions on
  whole arrays (so a filter means exactly what it means in ``diesight export``), then one
  model reset: a few milliseconds at 30,000 rows.
* Thumbnails come from the thumbnail grid's machinery (:class:`ThumbnailModel`: a worker
  thread and an LRU cache); the main window shares the grid's, so a thumbnail made for one
  view is there for the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QRect,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QIcon, QKeyEvent, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.elide import ElidedLabel
from app.filter_bar import filter_bar, filter_combo
from app.icons import icon
from app.palette import LABEL_COLOURS, label_name
from app.ranked_heatmaps import RankedHeatmaps
from app.state import AppState
from app.thumbnail_grid import ThumbnailModel
from core.ranking import (
    ALL_SPLITS,
    FILTER_TITLES,
    filter_counts,
    filter_mask,
    rank_order,
    split_choices,
    split_mask,
)

COLUMNS = ("thumbnail", "rank", "name", "score", "label", "prediction", "flag")
HEADERS = {"thumbnail": "", "rank": "Rank", "name": "File", "score": "Score",
           "label": "Label", "prediction": "Prediction", "flag": "Flag"}
COLUMN = {name: i for i, name in enumerate(COLUMNS)}
KIND_FILTERS = list(FILTER_TITLES.items())  # (kind, title) for the filter combo
ROW_HEIGHT = 54
THUMBNAIL_SIDE = 48
KEY_COMMANDS = {Qt.Key.Key_Space: "flag", Qt.Key.Key_F: "flag", Qt.Key.Key_G: "good",
                Qt.Key.Key_B: "bad", Qt.Key.Key_Home: "first", Qt.Key.Key_End: "last"}
LABEL_OF_COMMAND = {"good": 0, "bad": 1}

POSITION_ROLE = Qt.ItemDataRole.UserRole + 1
LABEL_ROLE = Qt.ItemDataRole.UserRole + 2
FLAGGED_ROLE = Qt.ItemDataRole.UserRole + 3

NO_RUN_MESSAGE = "Train a run or select one in the Training tab."


@dataclass
class ListFilter:
    """What the ranked list shows.

    Attributes:
        kind: one of ``core.ranking.FILTERS`` (all, bad, good, unlabelled, flagged,
            disagreements).
        split: ``all``, a split name, or ``validation`` (the run's held-out images).
        selection: positions picked elsewhere (e.g. a lasso in the activation space), or
            None for no such restriction.
    """

    kind: str = "all"
    split: str = "all"
    selection: np.ndarray | None = None


class RankedModel(QAbstractTableModel):
    """Table model over the current run's ranked images, filtered and sorted with numpy.

    Signals:
        rows_rebuilt: the rows were replaced (filter, sort, new scores); selections made
            before are gone.
    """

    rows_rebuilt = Signal()

    def __init__(self, state: AppState, thumbnails: ThumbnailModel,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.thumbnails = thumbnails
        self.list_filter = ListFilter()
        self._sort_column = COLUMN["score"]
        self._sort_order = Qt.SortOrder.DescendingOrder
        self._ranked = np.zeros(0, dtype=np.int64)   # scored positions by score
        self._rank = np.zeros(0, dtype=np.int64)     # 1-based rank by position, 0 unscored
        self._positions = np.zeros(0, dtype=np.int64)
        self._row_of_position = np.zeros(0, dtype=np.int64)
        self._name_order: np.ndarray | None = None
        self._split_masks: dict[str, np.ndarray] = {}
        # image id -> a thumbnail with its heatmap, or None for the plain one (the view's
        # "Heatmaps" option sets it).
        self.overlay: Callable[[int], QPixmap | None] | None = None
        thumbnails.loader.ready.connect(self._on_thumbnails_ready)

    # -- contents ------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """Dataset positions shown, in row order."""
        return self._positions

    @property
    def scored_count(self) -> int:
        return len(self._ranked)

    def row_of(self, position: int) -> int:
        """The row showing a dataset position, -1 when it is not listed."""
        if 0 <= position < len(self._row_of_position):
            return int(self._row_of_position[position])
        return -1

    def position_at(self, row: int) -> int:
        return int(self._positions[row])

    def reload(self) -> None:
        """Re-rank after the dataset, the run or its scores changed."""
        # Ranked by logit, like core.ranking: confident parts' probabilities may tie.
        dataset, scores = self.state.dataset, self.state.logits
        self._name_order = None
        self._split_masks.clear()
        if dataset is None or scores is None:
            self._ranked = np.zeros(0, dtype=np.int64)
            self._rank = np.zeros(0 if dataset is None else len(dataset.image_ids), np.int64)
        else:
            self._ranked = rank_order(scores, np.asarray(dataset.image_ids))
            self._rank = np.zeros(len(scores), dtype=np.int64)
            self._rank[self._ranked] = np.arange(1, len(self._ranked) + 1)
        self.apply()

    def set_filter(self, list_filter: ListFilter) -> None:
        self.list_filter = list_filter
        self.apply()

    def apply(self) -> None:
        """Recompute the rows from the filter and the sort column (one model reset)."""
        positions = self._filtered(self.list_filter)
        positions = positions[self._sort_permutation(positions)]
        self.beginResetModel()
        self._positions = positions
        self._row_of_position = np.full(len(self._rank), -1, dtype=np.int64)
        self._row_of_position[positions] = np.arange(len(positions))
        self.endResetModel()
        self.rows_rebuilt.emit()

    def count_by_filter(self) -> dict[str, int]:
        """How many scored images each filter kind keeps under the current split/selection."""
        if len(self._ranked) == 0:
            return {kind: 0 for kind, _ in KIND_FILTERS}
        within = np.zeros(len(self._rank), dtype=bool)
        within[self._filtered(ListFilter("all", self.list_filter.split,
                                         self.list_filter.selection))] = True
        state = self.state
        return filter_counts(state.labels, state.predictions(), state.flagged, within)

    def depends_on_annotations(self) -> bool:
        """True when a flag or label change can add, drop or move rows."""
        return (self.list_filter.kind != "all"
                or COLUMNS[self._sort_column] in ("label", "flag"))

    def depends_on_threshold(self) -> bool:
        """True when moving the threshold can add, drop or move rows."""
        return (self.list_filter.kind == "disagreements"
                or COLUMNS[self._sort_column] == "prediction")

    def refresh_positions(self, positions: np.ndarray) -> None:
        """Repaint the rows of these positions (their flag or label changed)."""
        for position in np.asarray(positions, dtype=np.int64).tolist():
            row = self.row_of(position)
            if row >= 0:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def refresh_column(self, name: str) -> None:
        if self.rowCount():
            column = COLUMN[name]
            self.dataChanged.emit(self.index(0, column),
                                  self.index(self.rowCount() - 1, column))

    # -- filtering and sorting -----------------------------------------------------
    def _filtered(self, list_filter: ListFilter) -> np.ndarray:
        """Ranked positions passing the filter, still in score order."""
        if len(self._ranked) == 0:
            return self._ranked
        state = self.state
        keep = filter_mask(list_filter.kind, state.labels, state.predictions(),
                           state.flagged)
        keep &= self._split_mask(list_filter.split)
        if list_filter.selection is not None:
            chosen = np.zeros(len(keep), dtype=bool)
            chosen[list_filter.selection] = True
            keep &= chosen
        return self._ranked[keep[self._ranked]]

    def _split_mask(self, split: str) -> np.ndarray:
        # Cached: the validation split reads the run's file; the others compare 30,000 strings.
        if split not in self._split_masks:
            run = self.state.current_run
            self._split_masks[split] = split_mask(self.state.dataset,
                                                  run.id if run else 0, split)
        return self._split_masks[split]

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a column (Qt calls this when a header is clicked); ties keep the rank."""
        self._sort_column, self._sort_order = column, order
        if len(self._ranked):
            self.apply()

    def _sort_permutation(self, positions: np.ndarray) -> np.ndarray:
        name = COLUMNS[self._sort_column]
        rank = self._rank[positions]
        if name in ("thumbnail", "rank"):
            key = rank
        elif name == "score":
            key = -rank  # the rank is the score order, without float ties to break
        elif name == "name":
            key = self._names_rank()[positions]
        elif name == "label":
            key = self.state.labels[positions].astype(np.int64)
        elif name == "prediction":
            key = self.state.predictions()[positions].astype(np.int64)
        else:
            key = self.state.flagged[positions].astype(np.int64)
        if self._sort_order == Qt.SortOrder.DescendingOrder:
            key = -key
        return np.lexsort((rank, key))

    def _names_rank(self) -> np.ndarray:
        if self._name_order is None:  # once per dataset: sorting 30,000 strings takes ~20 ms
            names = np.asarray(self.state.dataset.names)
            self._name_order = np.empty(len(names), dtype=np.int64)
            self._name_order[np.argsort(names, kind="stable")] = np.arange(len(names))
        return self._name_order

    # -- Qt model API --------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._positions)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[COLUMNS[section]]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(self._alignment(COLUMNS[section]))
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        state = self.state
        if not index.isValid() or state.dataset is None or state.scores is None:
            return None
        position = int(self._positions[index.row()])
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(column, position)
        if role == Qt.ItemDataRole.DecorationRole and column == "thumbnail":
            image_id = int(state.dataset.image_ids[position])
            overlaid = self.overlay(image_id) if self.overlay is not None else None
            return overlaid if overlaid is not None else self.thumbnails.thumbnail(image_id)
        if role == Qt.ItemDataRole.ForegroundRole and column in ("label", "prediction"):
            return LABEL_COLOURS[self._label_value(column, position)]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(self._alignment(column))
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{state.dataset.relpaths[position]}\n"
                    f"{state.split_text(position)} · score "
                    f"{float(state.scores[position]):.6f}")
        if role == POSITION_ROLE:
            return position
        if role == LABEL_ROLE:
            return int(state.labels[position])
        if role == FLAGGED_ROLE:
            return bool(state.flagged[position])
        return None

    def _display(self, column: str, position: int):
        state = self.state
        if column == "rank":
            return f"{int(self._rank[position]):,}"
        if column == "name":
            return state.dataset.names[position]
        if column == "score":
            return f"{float(state.scores[position]):.4f}"
        if column in ("label", "prediction"):
            value = self._label_value(column, position)
            return "—" if value == -1 else label_name(value)
        return None

    def _label_value(self, column: str, position: int) -> int:
        if column == "label":
            return int(self.state.labels[position])
        return int(self.state.predictions()[position])

    @staticmethod
    def _alignment(column: str) -> Qt.AlignmentFlag:
        vcenter = Qt.AlignmentFlag.AlignVCenter
        if column in ("rank", "score"):
            return Qt.AlignmentFlag.AlignRight | vcenter
        if column in ("label", "prediction", "flag", "thumbnail"):
            return Qt.AlignmentFlag.AlignHCenter | vcenter
        return Qt.AlignmentFlag.AlignLeft | vcenter

    # -- thumbnails ----------------------------------------------------------------
    @Slot(int, object)
    def _on_thumbnails_ready(self, generation: int, results: list) -> None:
        # Connected after the ThumbnailModel's own slot, so the cache already holds them.
        dataset = self.state.dataset
        if generation != self.thumbnails.loader.generation or dataset is None:
            return
        ids = np.asarray([image_id for image_id, _ in results], dtype=np.int64)
        positions = np.searchsorted(dataset.image_ids, ids)  # ids are ascending
        for position in positions.tolist():
            row = self.row_of(position)
            if row >= 0:
                index = self.index(row, COLUMN["thumbnail"])
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class RankedDelegate(QStyledItemDelegate):
    """Paints the thumbnail (in a label-coloured frame) and the flag cells."""

    FRAME = 2

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        column = COLUMNS[index.column()]
        if column not in ("thumbnail", "flag"):
            super().paint(painter, option, index)
            return
        # The row background (selection, alternation) comes from the style, no text.
        background = QStyleOptionViewItem(option)
        self.initStyleOption(background, index)
        background.text = ""
        background.icon = QIcon()
        widget = option.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, background, painter, widget)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if column == "thumbnail":
            self._paint_thumbnail(painter, option.rect, index)
        elif index.data(FLAGGED_ROLE):
            side = 18
            rect = QRect(option.rect.center().x() - side // 2,
                         option.rect.center().y() - side // 2, side, side)
            icon("flag").paint(painter, rect)
        painter.restore()

    def _paint_thumbnail(self, painter: QPainter, cell: QRect, index: QModelIndex) -> None:
        side = THUMBNAIL_SIDE + 2 * self.FRAME
        frame = QRect(cell.center().x() - side // 2 + 1, cell.center().y() - side // 2 + 1,
                      side, side)
        label = index.data(LABEL_ROLE)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(LABEL_COLOURS.get(label if label is not None else -1,
                                           LABEL_COLOURS[-1]))
        painter.drawRoundedRect(frame, 3, 3)
        inner = frame.adjusted(self.FRAME, self.FRAME, -self.FRAME, -self.FRAME)
        painter.setBrush(QColor("#1d2127"))
        painter.drawRect(inner)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            target = pixmap.size().scaled(inner.size(), Qt.AspectRatioMode.KeepAspectRatio)
            painter.drawPixmap(QRect(inner.left() + (inner.width() - target.width()) // 2,
                                     inner.top() + (inner.height() - target.height()) // 2,
                                     target.width(), target.height()), pixmap)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        if COLUMNS[index.column()] == "thumbnail":
            return QSize(THUMBNAIL_SIDE + 16, ROW_HEIGHT)
        return super().sizeHint(option, index)


class RankedTable(QTableView):
    """The table; Space/F, G and B become :attr:`key_command` ('flag', 'good', 'bad').

    These keys beat window shortcuts (the viewer's F = Fit) while the table has focus.
    """

    key_command = Signal(str)

    @staticmethod
    def _command(event: QKeyEvent) -> str | None:
        unmodified = event.modifiers() in (Qt.KeyboardModifier.NoModifier,
                                           Qt.KeyboardModifier.KeypadModifier)
        return KEY_COMMANDS.get(Qt.Key(event.key())) if unmodified else None

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and self._command(event):
            event.accept()  # deliver the key here instead of triggering a shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        command = self._command(event)
        if command is None:
            super().keyPressEvent(event)
            return
        event.accept()
        self.key_command.emit(command)


class RankedView(QWidget):
    """Filters above the ranked table; follows :class:`AppState` and drives the current image.

    Args:
        state: the shared state.
        thumbnails: a thumbnail source to share (the grid's model); by default the view
            makes and feeds its own.

    Attributes:
        model: the :class:`RankedModel`.
        table: the :class:`RankedTable`.
        kind_filter, split_filter: the filter combo boxes.
        selection_chip: "Showing N selected images ✕" while a selection filter is on.
    """

    def __init__(self, state: AppState, thumbnails: ThumbnailModel | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._owns_thumbnails = thumbnails is None
        self.thumbnails = thumbnails if thumbnails is not None else ThumbnailModel(parent=self)
        self.model = RankedModel(state, self.thumbnails, self)
        self.kind_filter = filter_combo(KIND_FILTERS, "rankedKindFilter")
        self.split_filter = filter_combo([ALL_SPLITS, *split_choices(None, held_out=True)],
                                         "rankedSplitFilter")
        self.selection_chip = QToolButton(objectName="selectionChip")
        self.selection_chip.setToolTip("Remove the selection filter")
        self.selection_chip.hide()
        self.count_label = ElidedLabel(objectName="rankedCount")
        self.empty_label = QLabel(NO_RUN_MESSAGE, objectName="rankedEmpty")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.table = self._make_table()
        self.heatmaps = RankedHeatmaps(state, self.table, THUMBNAIL_SIDE, self)
        self.model.overlay = self.heatmaps.pixmap
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(self.table)
        self._build_layout()
        self._connect()
        self._on_dataset_change()

    # -- construction --------------------------------------------------------------
    def _make_table(self) -> RankedTable:
        table = RankedTable(objectName="rankedTable")
        table.setModel(self.model)
        table.setItemDelegate(RankedDelegate(table))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        table.setShowGrid(False)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().hide()
        rows = table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform: no per-row sizing
        rows.setDefaultSectionSize(ROW_HEIGHT)
        header = table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for name, width in (("thumbnail", THUMBNAIL_SIDE + 20), ("rank", 70), ("score", 90),
                            ("label", 100), ("prediction", 100), ("flag", 56)):
            table.setColumnWidth(COLUMN[name], width)
        header.setSectionResizeMode(COLUMN["thumbnail"], QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(COLUMN["name"], QHeaderView.ResizeMode.Stretch)
        header.setSortIndicator(COLUMN["score"], Qt.SortOrder.DescendingOrder)
        table.setSortingEnabled(True)
        table.setStyleSheet(
            "QTableView { alternate-background-color: #f7f9fb; "
            "selection-background-color: #dce8fc; selection-color: #163a7a; }")
        return table

    def _build_layout(self) -> None:
        header = filter_bar("rankedFilterBar",
                            [("Show", self.kind_filter), ("Split", self.split_filter)],
                            self.count_label,
                            extras=[self.selection_chip])
        header.setStyleSheet(
            "QWidget#rankedFilterBar { background: #ffffff; border-bottom: 1px solid #e1e5eb; }"
            "QLabel#rankedHint, QLabel#rankedCount { color: #4a5565; }"
            "QToolButton#selectionChip { background: #e8eef9; color: #163a7a; "
            "border: 1px solid #a9c2ef; border-radius: 11px; padding: 2px 10px; }"
            "QToolButton#selectionChip:hover { background: #dce8fc; }")
        self.empty_label.setStyleSheet("color: #6b7685; font-size: 11pt; padding: 24px;")
        hint = QLabel("Space or F: flag   ·   G: label good   ·   B: label bad   ·   "
                      "↑ ↓ Home End: move   ·   Ctrl+Z: undo   ·   click a column header "
                      "to sort", objectName="rankedHint", wordWrap=True)
        hint.setStyleSheet("color: #6b7685; font-size: 9pt; padding: 3px 8px;")
        # The heatmap option sits with the key hint: the filter bar must stay narrow enough
        # for a 1366-px window with a selection chip.
        footer = QWidget(objectName="rankedFooter")
        footer.setStyleSheet("QWidget#rankedFooter { border-top: 1px solid #e1e5eb; "
                             "background: #ffffff; }")
        footer_layout = QHBoxLayout(footer)
        footer_layout.setContentsMargins(8, 0, 0, 0)
        footer_layout.addWidget(self.heatmaps.check_box)
        footer_layout.addWidget(hint, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(self.stack, 1)
        layout.addWidget(footer)

    def _connect(self) -> None:
        state = self.state
        self.kind_filter.currentIndexChanged.connect(self._on_filter_change)
        self.split_filter.currentIndexChanged.connect(self._on_filter_change)
        self.selection_chip.clicked.connect(self.clear_selection_filter)
        self.model.rows_rebuilt.connect(self._on_rows_rebuilt)
        self.table.selectionModel().currentChanged.connect(self._on_table_current_change)
        self.table.key_command.connect(self._on_key_command)
        state.dataset_changed.connect(self._on_dataset_change)
        state.current_run_changed.connect(self._on_run_change)
        state.threshold_changed.connect(self._on_threshold_change)
        state.annotations_changed.connect(self._on_annotations_change)
        state.current_image_changed.connect(self._on_current_image_change)
        state.list_filter_requested.connect(self._on_list_filter_request)

    # -- public --------------------------------------------------------------------
    def set_filters(self, kind: str = "all", split: str = "all") -> None:
        """Select filter values by key (``disagreements``, ``validation``, ...)."""
        for combo, key in ((self.kind_filter, kind), (self.split_filter, split)):
            index = combo.findData(key)
            if index < 0:
                raise ValueError(f"unknown filter value {key!r}")
            combo.setCurrentIndex(index)

    def show_selection(self, positions) -> None:
        """Show just these positions (the other filters go back to "all")."""
        for combo in (self.kind_filter, self.split_filter):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        selection = np.unique(np.asarray(positions, dtype=np.int64))
        # Short: a long chip widened the window past a 1600-pixel screen.
        self.selection_chip.setText(f"{len(selection):,} selected  ✕")
        self.selection_chip.setToolTip(f"Showing the {len(selection):,} selected image"
                                       f"{'' if len(selection) == 1 else 's'}; click to "
                                       "remove the selection filter")
        self.selection_chip.show()
        self.model.set_filter(ListFilter("all", "all", selection))

    def clear_selection_filter(self) -> None:
        """Drop the selection filter (the chip's ✕)."""
        self.selection_chip.hide()
        self.model.set_filter(ListFilter(self.kind_filter.currentData(),
                                         self.split_filter.currentData(), None))

    def publish_order(self) -> None:
        """Make the list's order the one the viewer's previous/next follows (also when it
        is empty: the viewer steps through the list on screen, never another one)."""
        if self.state.dataset is not None:
            self.state.set_browse_order(self.model.positions)

    # -- handlers: filters and rows ------------------------------------------------
    def _on_filter_change(self) -> None:
        self.model.set_filter(ListFilter(self.kind_filter.currentData(),
                                         self.split_filter.currentData(),
                                         self.model.list_filter.selection))

    def _on_rows_rebuilt(self) -> None:
        self._select_position(self.state.current_image)
        self._update_counts()
        if self.isVisible():
            self.publish_order()

    def _update_counts(self) -> None:
        state = self.state
        if state.dataset is None or state.scores is None:
            self.stack.setCurrentWidget(self.empty_label)
            self.empty_label.setText(self._empty_message())
            self.count_label.setText("")
            return
        self.stack.setCurrentWidget(self.table)
        counts = self.model.count_by_filter()
        for i, (kind, text) in enumerate(KIND_FILTERS):
            self.kind_filter.setItemText(i, f"{text} ({counts[kind]:,})")
        shown, scored = self.model.rowCount(), self.model.scored_count
        unscored = len(state.dataset.image_ids) - scored
        text = f"{shown:,} of {scored:,} images" if shown != scored else f"{shown:,} images"
        if unscored:
            text += f" · {unscored:,} unscored not listed"
        self.count_label.setText(f"{text} · run {state.current_run.id}")

    def _empty_message(self) -> str:
        state = self.state
        if state.dataset is None:
            return "Open a folder, then train a run (Training tab) to rank its images."
        if state.current_run is None:
            return NO_RUN_MESSAGE
        return (f"Run {state.current_run.id} has not scored these images yet.\n"
                "Score it in the Training tab, or select another run.")

    # -- handlers: state -----------------------------------------------------------
    def _on_dataset_change(self) -> None:
        if self._owns_thumbnails:
            self.thumbnails.set_dataset(self.state.dataset)
        self.selection_chip.hide()
        self.model.list_filter.selection = None
        self._offer_dataset_splits()
        self.model.reload()

    def _offer_dataset_splits(self) -> None:
        """Offer the dataset's own splits too (new lots, core.lots), then the held-out."""
        choices = [ALL_SPLITS, *split_choices(self.state.dataset, held_out=True)]
        combo = self.split_filter
        if [combo.itemData(i) for i in range(combo.count())] == [k for k, _ in choices]:
            return
        current = combo.currentData()
        combo.blockSignals(True)  # the caller reloads the rows once
        combo.clear()
        for key, text in choices:
            combo.addItem(text, key)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.blockSignals(False)
        self.model.list_filter.split = combo.currentData()

    def _on_run_change(self) -> None:
        self.model.reload()

    def _on_threshold_change(self, _threshold: float) -> None:
        if self.model.depends_on_threshold():
            self.model.apply()
        else:
            self.model.refresh_column("prediction")
            self._update_counts()  # "Disagreements (N)" moves with the threshold

    def _on_annotations_change(self, positions) -> None:
        if self.model.depends_on_annotations():
            self.model.apply()
        else:
            self.model.refresh_positions(positions)
            self._update_counts()

    def _on_current_image_change(self, position: int) -> None:
        self._select_position(position)

    def _on_list_filter_request(self, positions) -> None:
        self.show_selection(positions)

    # -- handlers: the table -------------------------------------------------------
    def _on_table_current_change(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.state.set_current_image(self.model.position_at(current.row()))

    def _on_key_command(self, command: str) -> None:
        if command in ("first", "last"):
            if self.model.rowCount():
                self._select_row(0 if command == "first" else self.model.rowCount() - 1)
            return
        current = self.table.currentIndex()
        if not current.isValid():
            return
        row = current.row()
        position = self.model.position_at(row)
        if command == "flag":
            self.state.toggle_flag(position)
        else:
            self.state.set_label([position], LABEL_OF_COMMAND[command])
        # On to the next image, so the user can keep working down the list. When the image
        # left the filter (labelled while showing "Unlabelled"), the next one took its row.
        still_listed = self.model.row_of(position) >= 0
        if self.model.rowCount():
            self._select_row(min(row + 1 if still_listed else row, self.model.rowCount() - 1))

    def _select_position(self, position: int) -> None:
        row = self.model.row_of(position) if position >= 0 else -1
        if row < 0:
            if self.table.currentIndex().isValid():
                self.table.selectionModel().clear()
            return
        current = self.table.currentIndex()
        if current.isValid() and current.row() == row:
            return
        self._select_row(row)

    def _select_row(self, row: int) -> None:
        index = self.model.index(row, COLUMN["name"])
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)

    # -- visibility ----------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.publish_order()
