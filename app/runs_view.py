"""The runs table of the Training tab: every run of the dataset, live, with ROC comparison.

One row per run (the seed study's results table): id, model, parameters, sampler ("5000B"),
holdout AUC, escapes and false calls at the run's threshold, training time, device,
date, status and whether it has scored this dataset. A running run's row is refreshed after
every epoch by whoever trains it (:meth:`RunsView.refresh`).

Selecting a row makes that run current for every view (``AppState.set_current_run``);
selecting more rows (Ctrl/Shift+click) keeps the current run and overlays their ROC
curves on their holdout images (the held-out images that did not choose the epoch; all
held-out images for a run from before the holdout existed), with each AUC in the legend
(a row under the axes). The plot sits beside the table, or in a tab of its own when the
view is narrow. A run without scores can be scored from here ("Score Now").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.palette import CHART_AXIS_COLOUR, CHART_BACKGROUND
from app.state import AppState
from app.workers import Task, TaskOwner
from core import metrics
from core.runs import RunRecord, epochs, get_run, holdout_ids, list_runs
from core.score_store import has_scores, load_logits, score_freshness, scored_at

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2
NARROW_WIDTH = 560  # pixels below which the table and the ROC plot become two tabs
MAX_COMPARED = 6  # more overlaid ROC curves cannot be told apart
ROC_COLOURS = ("#2f6fde", "#d9822b", "#2e9e5b", "#9b59b6", "#d64545", "#16a2b8")
ROC_TITLE = "ROC on holdout images"
ROC_MIN_HEIGHT = 200  # axes, curves and a legend row still fit (a 768-pixel screen)
# Room around 0..1: with less, pyqtgraph hides the end ticks' labels ("0", "1.0"), which
# would overhang the axes.
ROC_PADDING = 0.06
STATUS_COLOURS = {"running": "#2f6fde", "finished": "#2e9e5b", "cancelled": "#b7791f",
                  "failed": "#d64545", "imported": "#5d6673"}


# -- formatting -----------------------------------------------------------------------------

def sampler_text(run: RunRecord) -> str:
    """How the seed's table names a sampler: '5000B', '1000S', 'shuffle', 'weighted'."""
    config = run.config
    if config.sampler in ("B", "S"):
        return f"{config.per_class}{config.sampler}"
    return config.sampler


def parameters_text(count: int | None) -> str:
    """'2.81 M' for 2,807,249 parameters; '' when unknown."""
    if count is None:
        return ""
    return f"{count / 1e6:.2f} M" if count >= 100_000 else f"{count:,}"


def duration_text(seconds: float | None) -> str:
    """'0:42', '12:05' or '1:02:03' ('' when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


def date_text(created_at: str) -> str:
    """The run's creation time (stored in UTC) in local time: '2024-05-01 14:03'."""
    try:
        return datetime.fromisoformat(created_at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created_at


# -- the table model ------------------------------------------------------------------------

@dataclass
class RunRow:
    """What one table row shows: the record plus facts the record does not hold.

    Attributes:
        run: the run's record.
        scored: the run has stored scores for this dataset.
        epochs_done: finished epochs (for a running run's status and time).
        seconds: training time so far (a running run has no ``train_seconds`` yet).
        stale: images changed or new since the run scored (core.score_store.score_freshness).
    """

    run: RunRecord
    scored: bool
    epochs_done: int
    seconds: float | None
    stale: int = 0


@dataclass(frozen=True)
class Column:
    title: str
    tip: str
    text: Callable[[RunRow], str]
    sort_key: Callable[[RunRow], Any]
    numeric: bool = False


def _status_text(row: RunRow) -> str:
    run = row.run
    if run.status == "running":
        return f"running · epoch {row.epochs_done}/{run.config.epochs}"
    return run.status


def _optional(value: Any, fmt: str = "{}") -> str:
    return "" if value is None else fmt.format(value)


def _sort_number(value: float | None) -> float:
    return -math.inf if value is None else float(value)


COLUMNS = (
    Column("ID", "Run number in this dataset's workspace",
           lambda r: str(r.run.id), lambda r: r.run.id, True),
    Column("Model", "Network architecture", lambda r: r.run.model, lambda r: r.run.model),
    Column("Sampler", "Draws per class and sampler: B bootstrap, S subsample; or shuffle / "
           "weighted", lambda r: sampler_text(r.run), lambda r: sampler_text(r.run)),
    Column("Val AUC", "ROC AUC of the best epoch on the holdout images (not the ones that "
           "chose the epoch)",
           lambda r: _optional(r.run.val_auc, "{:.4f}"),
           lambda r: _sort_number(r.run.val_auc), True),
    Column("Escapes", "Defective holdout parts scored below the run's threshold "
           "(best epoch)", lambda r: _optional(r.run.escapes),
           lambda r: _sort_number(r.run.escapes), True),
    Column("False calls", "Good holdout parts scored at or above the run's threshold "
           "(best epoch)", lambda r: _optional(r.run.false_calls),
           lambda r: _sort_number(r.run.false_calls), True),
    Column("Status", "finished, running, cancelled (resumable), failed or imported from "
           "another dataset", _status_text, _status_text),
    Column("Scores", "Whether the run has scored every image of this dataset",
           lambda r: (f"partly ({r.stale:,} stale)" if r.stale else "scored") if r.scored
           else "—", lambda r: 1.0 / (1 + r.stale) if r.scored else 0.0),
    Column("Time", "Training time (h:mm:ss)", lambda r: duration_text(r.seconds),
           lambda r: _sort_number(r.seconds), True),
    Column("Parameters", "Trainable parameters", lambda r: parameters_text(r.run.parameters),
           lambda r: _sort_number(r.run.parameters), True),
    Column("Device", "Where it trained", lambda r: r.run.device or "",
           lambda r: r.run.device or ""),
    Column("Date", "When it started (local time)", lambda r: date_text(r.run.created_at),
           lambda r: r.run.created_at),
)
COLUMN_INDEX = {column.title: i for i, column in enumerate(COLUMNS)}


class RunsTableModel(QAbstractTableModel):
    """The rows of :class:`RunsView` (one per run, in id order)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[RunRow] = []

    def set_rows(self, rows: list[RunRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_of(self, run_id: int) -> int:
        """Row index of a run, -1 when it is not listed."""
        return next((i for i, row in enumerate(self.rows) if row.run.id == run_id), -1)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(row)
        if role == SORT_ROLE:
            return column.sort_key(row)
        if role == RUN_ID_ROLE:
            return row.run.id
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column.title == "Status":
            return pg.mkColor(STATUS_COLOURS.get(row.run.status, CHART_AXIS_COLOUR))
        if role == Qt.ItemDataRole.ToolTipRole:
            return _row_tooltip(row)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tip
        return None


def _row_tooltip(row: RunRow) -> str:
    run = row.run
    lines = [f"Run {run.id}: {run.model}, {sampler_text(run)}, {run.config.epochs} epochs, "
             f"batch {run.config.batch_size}, lr {run.config.lr:g}, "
             f"{run.config.image_size} rows"]
    if run.best_epoch is not None:
        lines.append(f"Best epoch {run.best_epoch}; threshold {run.threshold}")
    if run.source:
        lines.append(f"From {run.source}")
    if run.message:
        lines.append(run.message)
    return "\n".join(lines)


def load_rows(workspace) -> list[RunRow]:
    """The table rows of a workspace's runs (one query per run for scores and epochs)."""
    rows = []
    for run in list_runs(workspace):
        done = epochs(workspace, run.id) if run.status == "running" else []
        seconds = run.train_seconds
        if run.status == "running":
            seconds = sum(e.seconds for e in done) if done else None
        scored = has_scores(workspace, run.id)
        stale = score_freshness(workspace, run.id).stale if scored else 0
        rows.append(RunRow(run, scored, len(done), seconds, stale))
    return rows


# -- ROC on validation images ------------------------------------------------------------------

@dataclass
class RocCurve:
    """One run's ROC on the images that validated it.

    Attributes:
        run_id: the run.
        fpr, tpr: the curve's points.
        auc: area under it.
        images: how many labelled images it is computed on.
        basis: 'validation' (the run's own holdout images) or 'labelled' (every labelled
            image: an imported run never saw this dataset).
    """

    run_id: int
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    images: int
    basis: str


def validation_roc(dataset, labels: np.ndarray, run: RunRecord) -> RocCurve | None:
    """The ROC of ``run``'s stored scores on its holdout images of ``dataset`` (by logit:
    probabilities of very confident parts can tie).

    Args:
        dataset: the open dataset (its workspace holds the run).
        labels: labels by position as they stand now (the user's relabels applied).
        run: the run.

    Returns:
        The curve, or None when the run has no scores or the images lack both classes.
    """
    score_ids, scores = load_logits(dataset.workspace, run.id)
    if len(score_ids) == 0:
        return None
    wanted, basis = holdout_ids(dataset.workspace, run.id), "validation"
    if len(wanted) == 0:  # imported: nothing of this dataset trained it
        wanted, basis = np.asarray(dataset.image_ids)[labels >= 0], "labelled"
    wanted = np.intersect1d(wanted, score_ids)
    image_ids = np.asarray(dataset.image_ids)
    positions = np.searchsorted(image_ids, wanted)
    found = (positions < len(image_ids)) & (image_ids[np.minimum(positions,
                                                                 len(image_ids) - 1)] == wanted)
    positions, wanted = positions[found], wanted[found]
    chosen_labels = labels[positions]
    known = chosen_labels >= 0
    chosen_labels, wanted = chosen_labels[known], wanted[known]
    if len(np.unique(chosen_labels)) < 2:
        return None
    chosen_scores = scores[np.searchsorted(score_ids, wanted)]
    fpr, tpr, _ = metrics.roc_curve(chosen_scores, chosen_labels)
    return RocCurve(run.id, fpr, tpr, metrics.roc_auc(chosen_scores, chosen_labels),
                    len(wanted), basis)


class RocPlot(pg.PlotWidget):
    """Overlaid ROC curves (false-call rate vs. detection rate), AUC in the legend."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background=CHART_BACKGROUND)
        item = self.getPlotItem()
        item.setTitle(ROC_TITLE, color=CHART_AXIS_COLOUR, size="10pt")
        self.note = ""
        item.setLabel("bottom", "False-call rate", color=CHART_AXIS_COLOUR)
        item.setLabel("left", "Detection rate", color=CHART_AXIS_COLOUR)
        item.getAxis("bottom").setToolTip("Share of good parts rejected")
        item.getAxis("left").setToolTip("Share of bad parts caught")
        for axis in ("bottom", "left"):
            item.getAxis(axis).setPen(CHART_AXIS_COLOUR)
            item.getAxis(axis).setTextPen(CHART_AXIS_COLOUR)
        item.showGrid(x=True, y=True, alpha=0.15)
        item.setRange(xRange=(0, 1), yRange=(0, 1), padding=ROC_PADDING)
        item.setMouseEnabled(x=True, y=True)
        # The legend sits in its own row under the axes: over the plot it hid the curves.
        self.legend = pg.LegendItem(colCount=2, labelTextColor="#1f2933")
        item.layout.addItem(self.legend, 4, 1)
        self.setMinimumHeight(ROC_MIN_HEIGHT)
        self.curves: list[pg.PlotDataItem] = []
        self.message = pg.TextItem("", color=CHART_AXIS_COLOUR, anchor=(0.5, 0.5))
        self.message.setPos(0.5, 0.5)
        item.addItem(self.message)
        chance = pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen("#b8c0cc", width=1,
                                                                style=Qt.PenStyle.DashLine))
        item.addItem(chance)

    def show_curves(self, curves: list[tuple[str, RocCurve]], note: str = "") -> None:
        """Draw ``(name, curve)`` pairs; ``note`` is shown when nothing can be drawn."""
        for curve in self.curves:
            self.getPlotItem().removeItem(curve)
        self.legend.clear()
        self.curves = []
        for i, (name, roc) in enumerate(curves):
            pen = pg.mkPen(ROC_COLOURS[i % len(ROC_COLOURS)], width=2)
            label = f"{name} · AUC {roc.auc:.4f}"
            curve = self.getPlotItem().plot(roc.fpr, roc.tpr, pen=pen)
            self.legend.addItem(curve, label)
            self.curves.append(curve)
        self.note = note
        self.message.setText("" if curves else note)
        # With curves drawn, a note on the canvas would cover them: the title carries it.
        title = ROC_TITLE if not (curves and note) else \
            f"{ROC_TITLE}<br><span style='font-size:8pt'>{note}</span>"
        self.getPlotItem().setTitle(title, color=CHART_AXIS_COLOUR, size="10pt")
        self.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1), padding=ROC_PADDING)


# -- the view -------------------------------------------------------------------------------------

class RunsView(QWidget):
    """Runs table + ROC comparison + "Score Now", following and setting the current run.

    Args:
        state: the shared state; selecting a row sets its current run.
        run_task: :meth:`app.main_window.MainWindow.run_task` (runs scoring on a worker).
        roc_beside: put the ROC plot (``self.roc``) beside the table; False leaves it to
            the owner to place.

    Signals:
        scoring_finished(int): a run scored this dataset (its id).
    """

    scoring_finished = Signal(int)

    def __init__(self, state: AppState, run_task: Callable[..., Task], *,
                 roc_beside: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.run_task = run_task
        self._roc_beside = roc_beside
        self.model = RunsTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self._dataset = None  # the dataset the rows and cached curves belong to
        self._syncing = False  # selection changes made by code, not by the user
        self._scoring: dict[int, TaskOwner] = {}  # "Score Now" per run id, several at once
        # ROC curves by (run id, when it scored): refreshes during training redraw for free.
        self._roc_cache: dict[tuple[int, str | None], RocCurve | None] = {}
        self._build()
        state.dataset_changed.connect(self.refresh)
        state.runs_changed.connect(self.refresh)
        state.current_run_changed.connect(self._on_current_run_change)
        state.annotations_changed.connect(self._on_annotations_change)
        self.refresh()

    def _build(self) -> None:
        self.table = QTableView(objectName="runsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COLUMN_INDEX["ID"], Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setMinimumWidth(120)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_change)
        self.table.selectionModel().currentChanged.connect(self._on_selection_change)
        self.title = QLabel("Runs", objectName="sectionTitle")
        self.hint = QLabel("Click a run to make it current for every view; Ctrl+click "
                           "more runs to compare their ROC curves (the current run stays).",
                           objectName="dialogHint", wordWrap=True)
        self.score_button = QPushButton("Score Now", objectName="scoreNowButton")
        self.score_button.setToolTip("Score every image of this dataset with the selected "
                                     "run (needed for ranking and the activation space)")
        self.score_button.clicked.connect(self._on_score_clicked)
        self.roc = RocPlot()
        self.roc.setMinimumWidth(150)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.score_button)
        self.table_box = QWidget()
        box_layout = QVBoxLayout(self.table_box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.addLayout(top)
        box_layout.addWidget(self.table, 1)
        box_layout.addWidget(self.hint)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if self._roc_beside:
            # Wide: table and ROC side by side. Narrow (a 1366 x 768 screen with both
            # docks open): stacked, each would get a sliver of the height, so they become
            # two tabs that each get all of it.
            self.splitter = QSplitter(Qt.Orientation.Horizontal)
            self.narrow_tabs = QTabWidget(objectName="runsNarrowTabs")
            self.narrow_tabs.setDocumentMode(True)
            self.pages = QStackedWidget()
            self.pages.addWidget(self.splitter)
            self.pages.addWidget(self.narrow_tabs)
            layout.addWidget(self.pages)
            self._place_roc(wide=True)
        else:
            layout.addWidget(self.table_box)

    @property
    def narrow(self) -> bool:
        """True when the table and the ROC plot are two tabs (the view is narrow)."""
        return self._roc_beside and self.pages.currentWidget() is self.narrow_tabs

    def _place_roc(self, wide: bool) -> None:
        if wide:
            self.narrow_tabs.clear()
            self.splitter.addWidget(self.table_box)
            self.splitter.addWidget(self.roc)
            self.splitter.setStretchFactor(0, 3)
            self.splitter.setStretchFactor(1, 2)
            self.splitter.setSizes([3000, 2000])
            self.table_box.show()
            self.roc.show()
            self.pages.setCurrentWidget(self.splitter)
        else:
            self.narrow_tabs.addTab(self.table_box, "Runs")
            self.narrow_tabs.addTab(self.roc, "ROC")
            self.narrow_tabs.setTabToolTip(1, ROC_TITLE)
            self.pages.setCurrentWidget(self.narrow_tabs)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._roc_beside:
            wide = self.width() >= NARROW_WIDTH
            if wide == self.narrow:
                self._place_roc(wide)

    # -- rows -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the runs of the open dataset, keeping the selection."""
        dataset = self.state.dataset
        selected = self.selected_run_ids()
        if dataset is not self._dataset:  # run ids of another dataset mean other runs
            self._dataset, selected = dataset, []
            self._roc_cache.clear()
        rows = load_rows(dataset.workspace) if dataset is not None else []
        self._syncing = True
        try:
            self.model.set_rows(rows)
            current = self.state.current_run
            keep = selected or ([current.id] if current is not None else [])
            self._select_ids(keep, current.id if current is not None else None)
        finally:
            self._syncing = False
        self._update_roc()
        self._update_buttons()

    def run(self, run_id: int) -> RunRecord | None:
        """The listed record of a run (as of the last refresh)."""
        row = self.model.row_of(run_id)
        return self.model.rows[row].run if row >= 0 else None

    def row_for(self, run_id: int) -> RunRow | None:
        row = self.model.row_of(run_id)
        return self.model.rows[row] if row >= 0 else None

    def selected_run_ids(self) -> list[int]:
        """Ids of the selected rows, in table order."""
        rows = self.table.selectionModel().selectedRows()
        rows.sort(key=lambda index: index.row())
        return [int(self.proxy.data(index, RUN_ID_ROLE)) for index in rows]

    def select_runs(self, run_ids: list[int]) -> None:
        """Select these runs (as a user would); the current run stays if among them, else
        the last becomes current."""
        self._select_ids(run_ids, run_ids[-1] if run_ids else None)

    def _select_ids(self, run_ids: list[int], current_id: int | None) -> None:
        selection_model = self.table.selectionModel()
        if current_id is not None and self.model.row_of(current_id) >= 0:
            # The current index first, so the selection handler already sees it.
            syncing, self._syncing = self._syncing, True
            index = self.proxy.mapFromSource(self.model.index(self.model.row_of(current_id), 0))
            selection_model.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
            self._syncing = syncing
        selection = QItemSelection()
        for run_id in run_ids:
            row = self.model.row_of(run_id)
            if row < 0:
                continue
            index = self.proxy.mapFromSource(self.model.index(row, 0))
            selection.select(index, index)
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                 | QItemSelectionModel.SelectionFlag.Rows)
        selection_model.select(selection, flags)

    # -- selection <-> current run -------------------------------------------------------
    def _on_selection_change(self, *_args) -> None:
        # Also called when the current index moves (a Ctrl+click selects first and moves
        # the current index after).
        if not self._syncing:
            ids = self.selected_run_ids()
            run = self.state.current_run
            if run is None or run.id not in ids:
                # Only when the current run left the selection does another become current:
                # Ctrl+clicking runs in to compare them keeps the current one.
                current = self.table.selectionModel().currentIndex()
                current_id = int(self.proxy.data(current, RUN_ID_ROLE)) if current.isValid() \
                    else None
                if current_id not in ids:
                    current_id = ids[-1] if ids else None
                self._make_current(current_id)
        self._update_roc()
        self._update_buttons()

    def _make_current(self, run_id: int | None) -> None:
        current = self.state.current_run
        if run_id is None or (current is not None and current.id == run_id):
            return
        dataset = self.state.dataset
        if dataset is None:
            return
        self._syncing = True
        try:
            self.state.set_current_run(get_run(dataset.workspace, run_id))
        finally:
            self._syncing = False

    def _on_current_run_change(self) -> None:
        if self._syncing:
            return
        run = self.state.current_run
        if run is None or run.id in self.selected_run_ids():
            self._update_buttons()
            return
        self._syncing = True
        try:
            self._select_ids([run.id], run.id)
        finally:
            self._syncing = False
        self._update_roc()
        self._update_buttons()

    # -- ROC -----------------------------------------------------------------------------
    def _update_roc(self) -> None:
        dataset = self.state.dataset
        ids = self.selected_run_ids()[:MAX_COMPARED]
        if dataset is None or not ids:
            self.roc.show_curves([], "Select runs to see their ROC curves")
            return
        curves, missing = [], []
        for run_id in ids:
            run = self.run(run_id)
            roc = self._roc(dataset, run) if run is not None else None
            if roc is None:
                missing.append(run_id)
            else:
                basis = "" if roc.basis == "validation" else " (all labelled)"
                curves.append((f"Run {run_id}{basis}", roc))
        note = ""
        if missing:
            names = ", ".join(str(i) for i in missing)
            note = f"Run {names}: no scores yet — use Score Now"
        self.roc.show_curves(curves, note)

    def _roc(self, dataset, run: RunRecord) -> RocCurve | None:
        key = (run.id, scored_at(dataset.workspace, run.id))
        if key not in self._roc_cache:
            self._roc_cache[key] = validation_roc(dataset, self.state.labels, run)
        return self._roc_cache[key]

    def _on_annotations_change(self, _positions) -> None:
        self._roc_cache.clear()  # a relabel changes the curves
        self._update_roc()

    def roc_curves(self) -> list[pg.PlotDataItem]:
        """The ROC curves drawn now (one per compared run)."""
        return list(self.roc.curves)

    # -- scoring -------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        run = self._scorable_selection()
        self.score_button.setEnabled(run is not None)
        if run is not None and run.id in self._scoring and self._scoring[run.id].busy:
            self.score_button.setEnabled(False)

    def _scorable_selection(self) -> RunRecord | None:
        """The selected run when exactly one is selected and it can score but has not."""
        ids = self.selected_run_ids()
        if len(ids) != 1:
            return None
        row = self.row_for(ids[0])
        if row is None or (row.scored and not row.stale) or row.run.status == "running":
            return None
        checkpoint = row.run.checkpoint
        return row.run if checkpoint is not None and checkpoint.is_file() else None

    def _on_score_clicked(self) -> None:
        run = self._scorable_selection()
        if run is not None:
            self.score_run(run)

    def score_run(self, run: RunRecord, *, make_current: bool = False) -> Task | None:
        """Score the open dataset with ``run`` on a worker.

        When it is done the runs are refreshed and the run becomes current (if
        ``make_current``) or, being current already, its scores are reloaded.
        Returns the task (None when no dataset is open).
        """
        from app.training_jobs import score_job

        dataset = self.state.dataset
        if dataset is None:
            return None
        owner = self._scoring.get(run.id)
        if owner is None:
            owner = self._scoring[run.id] = TaskOwner(self, launch=self.run_task)
            owner.busy_changed.connect(lambda _busy: self._update_buttons())
        task = owner.start(score_job, dataset, run, title=f"Scoring with run {run.id}",
                           on_done=lambda result: self._on_scored(dataset, make_current, result))
        self._update_buttons()
        return task

    def _on_scored(self, dataset, make_current: bool, result) -> None:
        if dataset is not self.state.dataset:
            return  # another folder was opened meanwhile; the scores are stored anyway
        run_id, current = result.run_id, self.state.current_run
        if make_current or (current is not None and current.id == run_id):
            self.state.set_current_run(get_run(dataset.workspace, run_id))
        self.state.notify_runs_changed()
        self.scoring_finished.emit(run_id)
