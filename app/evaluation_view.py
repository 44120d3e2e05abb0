"""The "Evaluation" tab: the current run judged against an answer key (a truth CSV).

The user picks a truth CSV (``id,label`` plus optional ``defect_type``, ``severity``,
``split``; see :mod:`core.evaluation`). The last one chosen is remembered per dataset, and a
``ground_truth.csv`` in or beside the dataset folder (what ``diesight demo-data`` writes) is
offered when nothing was chosen yet. The tab shows what ``diesight evaluate`` prints: the
ROC AUC with its bootstrap interval, the ROC curve, escapes at 1/2/5 % false calls with
Wilson intervals, the confusion at the shared threshold and recall per defect kind and
severity band.

The bootstrap (2,000 rounds; about a second for 30,000 images on a busy 2-core machine)
runs on a worker whenever the run, its scores, the CSV or the split changes, and only while
the tab is visible. Moving the shared threshold recomputes only what depends on it
(:meth:`core.evaluation.TruthMatch.at`, milliseconds), on the GUI thread.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.palette import CHART_AXIS_COLOUR, CHART_BACKGROUND
from app.runs_view import ROC_COLOURS
from app.settings import last_dialog_folder, remember_dialog_folder
from app.state import AppState
from app.workers import Task, TaskOwner, error_message
from core.demodata import GROUND_TRUTH_NAME
from core.evaluation import (
    N_BOOT,
    REFERENCE_FPR,
    SEVERITY_BANDS,
    GroupRecall,
    RunEvaluation,
    ThresholdResults,
    evaluate_run,
    interval_text,
    percent,
)

SETTINGS_PREFIX = "evaluation/truth"
ALL_SPLITS = "All images"
WIDE_WIDTH = 980  # pixels from which the ROC plot sits beside the tables
ZOOM_FPR = 0.1  # the "low false calls" zoom shows false-call rates up to this
THRESHOLD_COLOUR = "#d64545"
POINT_COLOUR = "#d9822b"
NO_DATASET = "Open a folder of part images, train or choose a run, then pick a truth CSV."
NO_RUN = "Choose a run (Training tab) that has scored this dataset."
NO_TRUTH = ("Choose a truth CSV (columns id,label; optionally defect_type, severity, split) "
            "to judge the current run against the true labels of every image it names, "
            "the unlabelled test images included.")


def settings_key(root) -> str:
    """The settings key that remembers a dataset's truth CSV (a hash: paths hold slashes)."""
    digest = hashlib.sha1(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"{SETTINGS_PREFIX}/{digest}"


def found_ground_truth(root) -> Path | None:
    """A ``ground_truth.csv`` in the dataset folder or beside it, None if there is none."""
    root = Path(root)
    for folder in (root, root.parent):
        candidate = folder / GROUND_TRUTH_NAME
        if candidate.is_file():
            return candidate
    return None


def evaluation_job(dataset, run, truth_path, split, threshold, n_boot, *, progress=None,
                   cancel=None) -> RunEvaluation:
    """:func:`core.evaluation.evaluate_run` as a worker task (the bootstrap checks cancel)."""
    return evaluate_run(dataset, run, truth_path, split, threshold, n_boot=n_boot,
                        cancel=cancel)


# -- the ROC plot ---------------------------------------------------------------------------

class EvaluationRoc(pg.PlotWidget):
    """ROC curve with the fixed false-call operating points and the current threshold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background=CHART_BACKGROUND)
        item = self.getPlotItem()
        item.setTitle("ROC against the truth CSV", color=CHART_AXIS_COLOUR, size="10pt")
        item.setLabel("bottom", "False-call rate (good parts rejected)", color=CHART_AXIS_COLOUR)
        item.setLabel("left", "Detection rate (bad parts caught)", color=CHART_AXIS_COLOUR)
        for axis in ("bottom", "left"):
            item.getAxis(axis).setPen(CHART_AXIS_COLOUR)
            item.getAxis(axis).setTextPen(CHART_AXIS_COLOUR)
        item.showGrid(x=True, y=True, alpha=0.15)
        # The legend is a row under the axes: in the plot's corner it covered the curve
        # (a weak run's, or any zoomed to the low false-call end).
        self.legend = pg.LegendItem(colCount=3, labelTextColor="#1f2933")
        item.layout.addItem(self.legend, 4, 1)
        item.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen(
            "#b8c0cc", width=1, style=Qt.PenStyle.DashLine)))
        self.curve = pg.PlotDataItem([], [], pen=pg.mkPen(ROC_COLOURS[0], width=2))
        item.addItem(self.curve)
        # Labels on the canvas would overlap (1 % and 2 % lie close): hovering names them.
        self.points = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(POINT_COLOUR),
                                         pen=pg.mkPen("#ffffff"), hoverable=True,
                                         tip=lambda x, y, data: data)
        self.marker = pg.ScatterPlotItem(size=12, symbol="d", brush=pg.mkBrush(THRESHOLD_COLOUR),
                                         pen=pg.mkPen("#ffffff"))
        item.addItem(self.points)
        item.addItem(self.marker)
        self.zoomed = False
        self.show_range()

    def show_curve(self, result: RunEvaluation | None) -> None:
        """Draw a result's curve and operating points (nothing for None)."""
        e = result.evaluation if result is not None else None
        self.legend.clear()
        if e is None or len(e.roc_fpr) == 0:
            self.curve.setData([], [])
            self.points.setData([], [])
            self.marker.setData([], [])
            return
        self.curve.setData(e.roc_fpr, e.roc_tpr)
        self._fill_legend(f"ROC · AUC {e.auc:.4f}")
        xs = [p.false_calls.value for p in e.operating_points]
        ys = [1 - p.escapes.value for p in e.operating_points]
        tips = [f"≤ {percent(p.max_false_call_rate, 0)} false calls: threshold "
                f"{p.threshold:.4g}, {p.escapes.count} escapes" for p in e.operating_points]
        self.points.setData(xs, ys, data=tips)

    def _fill_legend(self, curve_name: str) -> None:
        self.legend.addItem(self.curve, curve_name)
        self.legend.addItem(self.points, "1 / 2 / 5 % false calls")
        self.legend.addItem(self.marker, "shared threshold")

    def show_threshold(self, at: ThresholdResults | None) -> None:
        """Mark where the shared threshold sits on the curve."""
        if at is None or at.false_calls.total == 0 or at.escapes.total == 0:
            self.marker.setData([], [])
            return
        self.marker.setData([at.false_calls.value], [1 - at.escapes.value])

    def set_zoomed(self, zoomed: bool) -> None:
        self.zoomed = zoomed
        self.show_range()

    def show_range(self) -> None:
        x_high = ZOOM_FPR if self.zoomed else 1.0
        self.getPlotItem().setRange(xRange=(0, x_high), yRange=(0, 1.02), padding=0.02)


# -- tables ---------------------------------------------------------------------------------

def _table(name: str, headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers), objectName=name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    # The tab's scroll area scrolls; a table is as wide and as high as its cells.
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.verticalHeader().setDefaultSectionSize(22)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return table


def _fill(table: QTableWidget, rows: list[list[str]], left_columns: int = 1) -> None:
    """Replace a table's rows (numbers right-aligned) and fit its size to them."""
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c >= left_columns:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)
    header, frame = table.horizontalHeader(), 2 * table.frameWidth()
    header.resizeSections(QHeaderView.ResizeMode.ResizeToContents)
    table.setFixedSize(header.length() + frame, header.sizeHint().height() + 22 * len(rows)
                       + frame)


def _caught(group: GroupRecall | None) -> list[str]:
    if group is None:
        return ["", ""]
    return [f"{group.caught:,}", percent(group.recall)]


def _rate_cells(count: int, total: int, value: float, low: float, high: float,
                digits: int = 1) -> list[str]:
    return [f"{count:,} / {total:,}", percent(value, digits), interval_text(low, high, digits)]


# -- the view -------------------------------------------------------------------------------

class EvaluationView(QWidget):
    """The current run against a truth CSV, following the shared run and threshold.

    Args:
        state: the shared state.
        settings: where the truth CSV of each dataset is remembered.
        track: called with each evaluation task (the main window's status corner).
        n_boot: bootstrap rounds for the AUC interval.

    Signals:
        status(str): a line for the status bar.
    """

    status = Signal(str)

    def __init__(self, state: AppState, settings: QSettings, parent: QWidget | None = None,
                 *, track: Callable[[Task], None] | None = None, n_boot: int = N_BOOT) -> None:
        super().__init__(parent)
        self.setObjectName("evaluationView")
        self.state = state
        self.settings = settings
        self.n_boot = n_boot
        # One evaluation at a time; a newer request replaces (and silences) the older one.
        self.evaluations = TaskOwner(self, track=track)
        self.truth_path: Path | None = None
        self.result: RunEvaluation | None = None  # the evaluation shown
        self.at_threshold: ThresholdResults | None = None  # its numbers at the threshold
        self._stale = False  # an evaluation is due when the tab is next shown
        self._offered: Path | None = None
        self._build()
        state.dataset_changed.connect(self._on_dataset_change)
        state.current_run_changed.connect(self._on_run_change)
        state.threshold_changed.connect(self._on_threshold_change)
        self._on_dataset_change()

    # -- construction ----------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setSpacing(4)
        layout.addLayout(self._build_source_bar())
        layout.addWidget(self._build_offer())
        self.message = QLabel(NO_DATASET, objectName="evaluationMessage", wordWrap=True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setStyleSheet("color: #6b7685; font-size: 11pt; padding: 24px;")
        layout.addWidget(self.message, 1)
        self.scroll = QScrollArea(objectName="evaluationScroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setStyleSheet("QWidget#evaluationResults { background: #ffffff; }")
        self.scroll.setWidget(self._build_results())
        layout.addWidget(self.scroll, 1)

    def _build_source_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(QLabel("Truth CSV:"))
        self.path_label = QLabel("none", objectName="truthPath")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setMinimumWidth(40)
        bar.addWidget(self.path_label, 1)
        self.choose_button = QPushButton("Choose…", objectName="chooseTruthButton")
        self.choose_button.setToolTip("Pick the CSV with every image's true label (id,label; "
                                      "optionally defect_type, severity, split)")
        self.choose_button.clicked.connect(self._on_choose_click)
        bar.addWidget(self.choose_button)
        bar.addWidget(QLabel("Split:"))
        self.split_combo = QComboBox(objectName="evaluationSplit")
        self.split_combo.setToolTip("Evaluate only the images of one split (by the folders or "
                                    "the CSV's split column); 'test' = the held-out images")
        self.split_combo.currentIndexChanged.connect(self._on_split_change)
        bar.addWidget(self.split_combo)
        return bar

    def _build_offer(self) -> QFrame:
        self.offer = QFrame(objectName="truthOffer")
        self.offer.setStyleSheet("QFrame#truthOffer { background: #eef3fb; "
                                 "border: 1px solid #cbd8ee; border-radius: 4px; }")
        row = QHBoxLayout(self.offer)
        row.setContentsMargins(8, 4, 8, 4)
        self.offer_label = QLabel(objectName="truthOfferText", wordWrap=True)
        row.addWidget(self.offer_label, 1)
        self.offer_button = QPushButton("Evaluate with it", objectName="truthOfferButton")
        self.offer_button.clicked.connect(self._on_offer_accept)
        row.addWidget(self.offer_button)
        self.offer.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.offer.hide()
        return self.offer

    def _build_results(self) -> QWidget:
        self.results = QWidget(objectName="evaluationResults")
        outer = QVBoxLayout(self.results)
        outer.setContentsMargins(0, 4, 0, 4)
        self.auc_label = QLabel(objectName="aucLabel")
        self.auc_label.setStyleSheet("font-size: 15pt; font-weight: 600;")
        self.summary_label = QLabel(objectName="evaluationSummary", wordWrap=True)
        self.summary_label.setStyleSheet("color: #4a5565;")
        self.warning_label = QLabel(objectName="evaluationWarnings", wordWrap=True)
        self.warning_label.setStyleSheet("color: #b7791f;")
        for label in (self.auc_label, self.summary_label, self.warning_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            outer.addWidget(label)
        self.body = QBoxLayout(QBoxLayout.Direction.BottomToTop)
        self.body.setSpacing(12)
        self.body.addLayout(self._build_plot_column(), 1)  # the plot takes the room left
        self.body.addLayout(self._build_tables(), 0)
        outer.addLayout(self.body, 1)
        return self.results

    def _build_plot_column(self) -> QVBoxLayout:
        column = QVBoxLayout()
        self.roc = EvaluationRoc()
        self.roc.setMinimumSize(300, 280)
        self.zoom_button = QPushButton(f"Zoom to ≤ {percent(ZOOM_FPR, 0)} false calls",
                                       objectName="rocZoomButton", checkable=True)
        self.zoom_button.setToolTip("Show the low false-call end of the curve, where a "
                                    "production line operates")
        self.zoom_button.toggled.connect(self.roc.set_zoomed)
        column.addWidget(self.roc, 1)
        column.addWidget(self.zoom_button, 0, Qt.AlignmentFlag.AlignLeft)
        return column

    def _build_tables(self) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(2)
        self.points_table = _table("operatingPointsTable", [
            "False\ncalls ≤", "Threshold", "False calls", "Escapes", "Escape\nrate",
            "95 %\ninterval"])
        self.points_table.setToolTip("The lowest threshold with at most this share of false "
                                     "calls on these images, and the bad parts it lets "
                                     "pass (Wilson 95 % interval). Double-click a row to "
                                     "use its threshold.")
        self.points_table.cellDoubleClicked.connect(self._on_point_double_click)
        # Titles wrap: an unwrapped label would widen the column past a small screen.
        self.confusion_title = QLabel(objectName="sectionTitle", wordWrap=True)
        self.confusion_table = _table("confusionTable", [
            "Truth", "Called\nbad", "Passed", "Errors", "95 %\ninterval"])
        self.kind_title = QLabel(objectName="sectionTitle", wordWrap=True)
        self.kind_table = _table("kindRecallTable", ["Defect kind", "Bad", "", "", "", ""])
        self.severity_title = QLabel(objectName="sectionTitle", wordWrap=True)
        self.severity_table = _table("severityRecallTable", ["Severity", "Bad", "", "", "",
                                                             ""])
        column.addWidget(QLabel("ESCAPES AT FIXED FALSE-CALL RATES", objectName="sectionTitle"))
        for widget in (self.points_table, self.confusion_title, self.confusion_table,
                       self.kind_title, self.kind_table, self.severity_title,
                       self.severity_table):
            column.addWidget(widget)
        column.addStretch(1)
        return column

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        # Wide: the ROC beside the tables; narrow (both docks open on a small screen):
        # the tables first (the numbers matter most), the ROC under them, and the tab scrolls.
        wide = self.width() >= WIDE_WIDTH
        direction = QBoxLayout.Direction.LeftToRight if wide else \
            QBoxLayout.Direction.BottomToTop
        if self.body.direction() != direction:
            self.body.setDirection(direction)

    # -- following the state ---------------------------------------------------------
    def _on_dataset_change(self) -> None:
        dataset = self.state.dataset
        self._fill_splits(dataset)
        self.truth_path, self._offered = None, None
        if dataset is not None:
            remembered = self.settings.value(settings_key(dataset.root))
            if remembered and Path(str(remembered)).is_file():
                self.truth_path = Path(str(remembered))
            else:
                self._offered = found_ground_truth(dataset.root)
        self._show_source()
        self._request()

    def _on_run_change(self) -> None:
        self._request()

    def _on_split_change(self, _index: int) -> None:
        self._request()

    def _on_threshold_change(self, threshold: float) -> None:
        if self.result is not None:
            self.at_threshold = self.result.match.at(threshold)
            self._show_threshold_results()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().showEvent(event)
        if self._stale:
            self._request()

    def _fill_splits(self, dataset) -> None:
        self.split_combo.blockSignals(True)
        self.split_combo.clear()
        self.split_combo.addItem(ALL_SPLITS, None)
        if dataset is not None:
            for split in sorted(set(map(str, dataset.splits))):
                self.split_combo.addItem(split, split)
        # Start on the held-out test images when there are any: figures over training images
        # flatter the run, and the first number a user reads should be the honest one.
        self.split_combo.setCurrentIndex(max(0, self.split_combo.findData("test")))
        self.split_combo.blockSignals(False)

    # -- choosing the truth CSV ------------------------------------------------------
    def set_truth(self, path: str | Path | None) -> None:
        """Evaluate against ``path`` (remembered for this dataset); None forgets it."""
        dataset = self.state.dataset
        self.truth_path = Path(path) if path else None
        self._offered = None
        if dataset is not None:
            key = settings_key(dataset.root)
            if self.truth_path is None:
                self.settings.remove(key)
            else:
                self.settings.setValue(key, str(self.truth_path))
                remember_dialog_folder(self.settings, "truth", self.truth_path.parent)
        self._show_source()
        self._request()

    def set_split(self, split: str | None) -> None:
        """Evaluate only ``split`` (None: every image the CSV names)."""
        index = 0 if split is None else self.split_combo.findData(split)
        if index < 0:
            raise ValueError(f"no split {split!r} in this dataset")
        self.split_combo.setCurrentIndex(index)

    @property
    def split(self) -> str | None:
        return self.split_combo.currentData()

    def _on_choose_click(self) -> None:
        start = (str(self.truth_path.parent) if self.truth_path is not None
                 else last_dialog_folder(self.settings, "truth"))
        path, _ = QFileDialog.getOpenFileName(self, "Choose the truth CSV", start,
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.set_truth(path)

    def _on_offer_accept(self) -> None:
        if self._offered is not None:
            self.set_truth(self._offered)

    def _show_source(self) -> None:
        path = self.truth_path
        self.path_label.setText(path.name if path is not None else "none")
        self.path_label.setToolTip(str(path) if path is not None else "")
        self.offer.setVisible(self._offered is not None and path is None)
        if self._offered is not None:
            self.offer_label.setText(f"Found {self._offered.name} in {self._offered.parent}: "
                                     "evaluate the current run against it?")

    # -- evaluating ------------------------------------------------------------------
    def _request(self) -> None:
        """Evaluate now if the tab is visible, else when it is next shown."""
        self.evaluations.discard()
        dataset, run = self.state.dataset, self.state.current_run
        why = self._why_not(dataset, run)
        if why:
            self._clear(why)
            return
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        self._start(dataset, run)

    def _why_not(self, dataset, run) -> str:
        if dataset is None:
            return NO_DATASET
        if run is None:
            return NO_RUN
        if self.state.scores is None:
            return (f"Run {run.id} has not scored this dataset yet: score it in the Training "
                    "tab, then it is evaluated here.")
        return "" if self.truth_path is not None else NO_TRUTH

    def _start(self, dataset, run) -> None:
        self.evaluations.start(evaluation_job, dataset, run, self.truth_path, self.split,
                               self.state.threshold, self.n_boot,
                               title=f"Evaluating run {run.id}", on_done=self._on_done,
                               on_failed=self._on_fail, on_cancelled=self._on_cancel)
        if self.result is None:
            self._show_message(f"Evaluating run {run.id} against {self.truth_path.name}…")
        self.status.emit(f"Evaluating run {run.id} against {self.truth_path.name}…")

    def _on_done(self, result: RunEvaluation) -> None:
        self.result = result
        # The threshold may have moved while the bootstrap ran.
        self.at_threshold = result.match.at(self.state.threshold)
        self._show_result()
        self.status.emit(f"Run {result.run_id}: {self.auc_label.text()}")

    def _on_fail(self, error: BaseException) -> None:
        self._clear(f"Cannot evaluate: {error_message(error)}")
        self.status.emit(f"Evaluation failed: {error_message(error)}")

    def _on_cancel(self) -> None:
        # Only the user's Esc gets here (a newer request silences the task it replaces).
        self._stale = True
        self._clear("Evaluation cancelled; it runs again when this tab is next shown.")

    @property
    def busy(self) -> bool:
        """An evaluation is running."""
        return self.evaluations.busy

    # -- showing -----------------------------------------------------------------------
    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()
        self.scroll.hide()

    def _clear(self, text: str) -> None:
        self.result, self.at_threshold = None, None
        self.roc.show_curve(None)
        self._show_message(text)

    def _show_result(self) -> None:
        result, e = self.result, self.result.evaluation
        self.message.hide()
        self.scroll.show()
        self.auc_label.setText(_auc_headline(e))
        where = f", split '{result.split}'" if result.split else ""
        summary = (f"Run {result.run_id} ({result.model}) against {result.truth_path.name}"
                   f"{where}: {e.n_good + e.n_bad:,} images, {e.n_good:,} good and "
                   f"{e.n_bad:,} bad")
        if result.match.trained_split and result.split is None:
            summary += (f" — {result.match.trained_split:,} of them are training images "
                        "(choose the split 'test' for the held-out ones)")
        self.summary_label.setText(
            f"{summary}. Intervals (95 %): AUC by a stratified bootstrap of {e.n_boot:,} "
            "rounds, rates by Wilson's score interval.")
        self.warning_label.setText("\n".join(result.warnings))
        self.warning_label.setVisible(bool(result.warnings))
        self.roc.show_curve(result)
        _fill(self.points_table, [
            [percent(p.max_false_call_rate, 0), f"{p.threshold:.4g}",
             f"{p.false_calls.count:,} ({percent(p.false_calls.value, 2)})",
             *_rate_cells(p.escapes.count, p.escapes.total, p.escapes.value, p.escapes.low,
                          p.escapes.high)]
            for p in e.operating_points])
        self._show_threshold_results()

    def _show_threshold_results(self) -> None:
        at, e = self.at_threshold, self.result.evaluation
        self.roc.show_threshold(at)
        self.confusion_title.setText(f"AT THE SHARED THRESHOLD {at.threshold:.4g}")
        esc, fc = at.escapes, at.false_calls
        _fill(self.confusion_table, [
            [f"Bad ({esc.total:,})", f"{at.tp:,}", f"{esc.count:,}",
             f"{esc.count:,} escapes ({percent(esc.value)})", interval_text(esc.low, esc.high)],
            [f"Good ({fc.total:,})", f"{fc.count:,}", f"{at.tn:,}",
             f"{fc.count:,} false calls ({percent(fc.value, 2)})",
             interval_text(fc.low, fc.high, 2)]])
        reference = e.at_reference
        self._show_recall(self.kind_title, self.kind_table, "DEFECT KIND", at.by_kind,
                          reference.by_kind if reference else ())
        self._show_recall(self.severity_title, self.severity_table,
                          "SEVERITY (" + _bands_text() + ")", at.by_severity,
                          reference.by_severity if reference else ())

    def _show_recall(self, title: QLabel, table: QTableWidget, what: str,
                     groups: tuple[GroupRecall, ...],
                     reference: tuple[GroupRecall, ...]) -> None:
        visible = bool(groups)
        title.setVisible(visible)
        table.setVisible(visible)
        if not visible:
            return
        at, ref = self.at_threshold, self.result.evaluation.at_reference
        title.setText(f"RECALL BY {what}" + (f" · {percent(REFERENCE_FPR, 0)} false calls at "
                                             f"{ref.threshold:.4g}" if ref is not None else ""))
        # Two-line headers keep the table narrow enough for a 1366-pixel screen.
        headers = [table.horizontalHeaderItem(0).text(), "Bad", f"Caught\nat {at.threshold:.4g}",
                   "Recall"]
        if ref is not None:
            headers += [f"Caught at {percent(REFERENCE_FPR, 0)}\nfalse calls", "Recall"]
            table.horizontalHeaderItem(4).setToolTip(
                f"At threshold {ref.threshold:.4g}, the lowest with at most "
                f"{percent(REFERENCE_FPR, 0)} false calls on these images")
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        by_name = {g.name: g for g in reference}
        rows = [[g.name, f"{g.count:,}", *_caught(g)]
                + (_caught(by_name.get(g.name)) if ref is not None else [])
                for g in groups]
        _fill(table, rows)

    def _on_point_double_click(self, row: int, _column: int) -> None:
        if self.result is not None and row < len(self.result.evaluation.operating_points):
            self.state.set_threshold(self.result.evaluation.operating_points[row].threshold)

    # -- what tests and screenshots read ---------------------------------------------------
    def table_text(self, table: QTableWidget) -> list[list[str]]:
        """The cells of one of the tables, as shown."""
        return [[table.item(r, c).text() if table.item(r, c) else ""
                 for c in range(table.columnCount())] for r in range(table.rowCount())]


def _auc_headline(e) -> str:
    if not math.isfinite(e.auc):
        return "ROC AUC n/a (the truth CSV needs good and bad images here)"
    text = f"ROC AUC {e.auc:.4f}"
    if math.isfinite(e.auc_low):
        text += f"   95 % interval {e.auc_low:.4f} – {e.auc_high:.4f}"
    return text


def _bands_text() -> str:
    (first, _, a), (second, _, b), (third, _, _) = SEVERITY_BANDS
    return f"{first} < {a:g} ≤ {second} < {b:g} ≤ {third}"
