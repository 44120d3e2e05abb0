"""The Training tab: settings with presets, Start/Cancel, live progress and curves, the runs.

Left, the settings form: every field of :class:`core.training.TrainConfig`, one widget each
(:class:`TrainingSettingsForm`), with presets at the top — "Quick (CPU)", a compact model at
a reduced image size for a CPU, and "Full (GPU)", the seed study's settings (their measured
times and AUCs are in the README's results). Right, the running job's
progress (images/s, ETA) above live curves of training loss, validation loss and validation
AUC per epoch, and below them the runs table with ROC comparison (:class:`RunsView`).

Start trains on a worker (``core.training.train`` through ``MainWindow.run_task``); when it
finishes — or is cancelled after at least one epoch, keeping its best checkpoint — the
dataset is scored on a worker and the new run becomes the current run of every view.
The window stays usable meanwhile: images and older runs can be browsed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.elide import CollapsingLabel
from app.icons import icon
from app.palette import CHART_AXIS_COLOUR, CHART_BACKGROUND
from app.runs_view import RunsView, duration_text
from app.state import AppState
from app.training_form import (  # noqa: F401  (CUSTOM ... QUICK: importable from here too)
    CUSTOM,
    FULL,
    PRESETS,
    QUICK,
    TrainingSettingsForm,
)
from app.training_jobs import discover_hardware, score_job, train_job
from app.workers import Task, TaskOwner, error_message
from core.progress import Progress
from core.runs import EpochRecord, RunRecord, epochs, get_run
from core.training.config import width_for_rows

LOSS_COLOURS = {"train": "#2f6fde", "val": "#d9822b"}
AUC_COLOUR = "#2e9e5b"
PROGRESS_STEPS = 1000
SETTINGS_WIDTH = 330  # the settings column's width when there is room
SETTINGS_SHARE = 0.3  # ... and at most this share of the tab
ETA_MIN_SECONDS = 10.0  # of measured training before an ETA is shown (unless an epoch ended)
ETA_SMOOTHING = 0.2  # weight of a new estimate in the shown one
CANCEL_QUESTION = "Cancel training? The run so far is kept as 'cancelled'."


# -- time left ----------------------------------------------------------------------------------

class EtaEstimate:
    """Time left in a training, from the wall time its batches have taken so far.

    The first batches run slower (start-up, caches, the first validation still to come), so
    an estimate from them alone is far off: none is given before an epoch has ended or
    ``ETA_MIN_SECONDS`` of training were measured. From then on, the rate is the progress
    since the first batch over the time since then (validation included), and the time
    shown moves smoothly towards each new estimate.
    """

    def __init__(self) -> None:
        self._first: tuple[float, float] | None = None  # (time, fraction) of the first batch
        self._epoch_ended = False
        self._shown: float | None = None

    def add_epoch(self) -> None:
        """An epoch ended: its time, validation included, is measured."""
        self._epoch_ended = True

    def update(self, now: float, fraction: float) -> float | None:
        """Seconds left at ``fraction`` (0..1) of the run done, or None while unknown."""
        if self._first is None:
            self._first = (now, fraction)
            return None
        start, start_fraction = self._first
        elapsed, progressed = now - start, fraction - start_fraction
        if progressed <= 0 or not (self._epoch_ended or elapsed >= ETA_MIN_SECONDS):
            return self._shown
        estimate = elapsed / progressed * max(0.0, 1.0 - fraction)
        if self._shown is None:
            self._shown = estimate
        else:
            self._shown += ETA_SMOOTHING * (estimate - self._shown)
        return self._shown


# -- live curves ---------------------------------------------------------------------------------

class TrainingCurves(QWidget):
    """Loss (training, validation) and validation AUC per epoch, side by side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The loss title names its curves in their colours: a legend box would cover the
        # points in a narrow plot.
        # (Short: a title wider than the plot pushes the plot's right end out of view.)
        loss_title = (f"<span style='color:{LOSS_COLOURS['train']}'>train</span> / "
                      f"<span style='color:{LOSS_COLOURS['val']}'>val</span> loss")
        self.loss_widget = self._plot_widget(loss_title)
        self.auc_widget = self._plot_widget("Validation AUC")
        self.loss_plot = self.loss_widget.getPlotItem()
        self.auc_plot = self.auc_widget.getPlotItem()
        self.train_loss = self._curve(self.loss_plot, LOSS_COLOURS["train"], "training")
        self.val_loss = self._curve(self.loss_plot, LOSS_COLOURS["val"], "validation")
        self.val_auc = self._curve(self.auc_plot, AUC_COLOUR, "selection AUC")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.loss_widget, 1)
        layout.addWidget(self.auc_widget, 1)
        self.records: list[EpochRecord] = []

    @staticmethod
    def _plot_widget(title: str) -> pg.PlotWidget:
        widget = pg.PlotWidget(background=CHART_BACKGROUND)
        widget.setMinimumWidth(100)
        plot = widget.getPlotItem()
        plot.setTitle(title, color=CHART_AXIS_COLOUR, size="10pt")
        plot.setLabel("bottom", "epoch", color=CHART_AXIS_COLOUR)
        plot.showGrid(x=True, y=True, alpha=0.15)
        for axis in ("bottom", "left"):
            plot.getAxis(axis).setPen(CHART_AXIS_COLOUR)
            plot.getAxis(axis).setTextPen(CHART_AXIS_COLOUR)
        return widget

    @staticmethod
    def _curve(plot: pg.PlotItem, colour: str, name: str) -> pg.PlotDataItem:
        return plot.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                         symbolBrush=colour, symbolPen=None, name=name)

    def set_history(self, records: list[EpochRecord]) -> None:
        """Show these epochs (replacing what was shown)."""
        self.records = sorted(records, key=lambda r: r.epoch)
        self._redraw()

    def add_epoch(self, record: EpochRecord) -> None:
        """Add (or replace) one epoch's point."""
        self.records = [r for r in self.records if r.epoch != record.epoch] + [record]
        self.records.sort(key=lambda r: r.epoch)
        self._redraw()

    def clear_history(self) -> None:
        self.set_history([])

    def _redraw(self) -> None:
        x = [r.epoch for r in self.records]
        self.train_loss.setData(x, [r.train_loss for r in self.records])
        self.val_loss.setData(x, [r.val_loss for r in self.records])
        aucs = [r.val_auc if r.val_auc is not None and math.isfinite(r.val_auc) else math.nan
                for r in self.records]
        self.val_auc.setData(x, aucs)
        # Whole epochs only: '1.2' on an epoch axis reads as nonsense.
        spacing = max(1, math.ceil(max(x, default=1) / 8))
        for plot in (self.loss_plot, self.auc_plot):
            plot.getAxis("bottom").setTickSpacing(spacing, spacing)
            plot.setXRange(min(x, default=1) - 0.25, max(x, default=1) + 0.25, padding=0)
            plot.enableAutoRange(axis="y")

    def point_counts(self) -> dict[str, int]:
        """Points per curve (train_loss, val_loss, val_auc)."""
        return {name: len(curve.getData()[0] if curve.getData()[0] is not None else [])
                for name, curve in (("train_loss", self.train_loss),
                                    ("val_loss", self.val_loss), ("val_auc", self.val_auc))}


# -- the tab ------------------------------------------------------------------------------------

class TrainingPanel(QWidget):
    """The Training tab.

    Args:
        state: the shared state (dataset to train on; the new run becomes current).
        run_task: :meth:`app.main_window.MainWindow.run_task` (progress, Cancel, errors).

    Signals:
        busy_changed(bool): a training or its scoring started (True) or ended (False).
        run_completed(int): a run trained and its scoring ended (the run id).
    """

    busy_changed = Signal(bool)
    run_completed = Signal(int)

    def __init__(self, state: AppState, run_task: Callable[..., Task],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.run_task = run_task
        # Training, then scoring the new run: one job at a time, both through this owner.
        self.jobs = TaskOwner(self, launch=run_task)
        self._stage = ""  # "Training" or "Scoring": what the job does now
        self.run_id: int | None = None  # the run being trained or scored
        self._dataset = None  # the dataset the job works on
        self._started = 0.0
        self._train_seconds = 0.0
        self._eta = EtaEstimate()
        self.cancel_dialog: QMessageBox | None = None
        self._build()
        state.dataset_changed.connect(self._on_dataset_change)
        state.current_run_changed.connect(self._on_current_run_change)
        self.hardware_task: Task | None = None
        self._on_dataset_change()

    # -- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        self.form = TrainingSettingsForm()
        scroll = QScrollArea(objectName="trainingSettingsScroll")
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.data_label = QLabel(objectName="dialogHint", wordWrap=True)
        self.load_button = QPushButton("Load Selected Run's Settings")
        self.load_button.setToolTip("Fill the form with the settings of the run selected in "
                                    "the runs table (the current run)")
        self.load_button.clicked.connect(self.load_selected_settings)
        self.start_button = QPushButton("Start Training", objectName="startTraining")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", objectName="cancelTraining")
        self.cancel_button.setIcon(icon("cancel"))
        self.cancel_button.setToolTip("Stop after the current batch; the finished epochs are "
                                      "kept (the best checkpoint is scored)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.cancel_button)
        left = QWidget(objectName="trainingSettings")
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(10, 8, 6, 8)
        left_layout.addWidget(scroll, 1)
        left_layout.addWidget(self.data_label)
        left_layout.addWidget(self.load_button)
        left_layout.addLayout(buttons)
        left.setMinimumWidth(270)
        left.setMaximumWidth(420)
        self.settings_column = left

        self.runs_view = RunsView(self.state, self.run_task)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._progress_box())
        splitter.addWidget(self.runs_view)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.right_splitter = splitter
        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(left)
        outer.addWidget(splitter)
        outer.setStretchFactor(1, 1)
        outer.setChildrenCollapsible(False)
        self.outer_splitter = outer
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(outer)

    def _progress_box(self) -> QWidget:
        box = QWidget()
        self.status_label = QLabel("Choose a preset or adjust the settings, then Start.",
                                   objectName="trainingStatus", wordWrap=True)
        self.progress_bar = QProgressBar(objectName="trainingProgress")
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        # The text goes beside the bar, not over it: over the fill it is unreadable, and a
        # bar sized for its text leaves no room for the rate.
        self.progress_bar.setTextVisible(False)
        self.progress_text = CollapsingLabel(objectName="trainingProgressText")
        self.rate_label = CollapsingLabel(objectName="trainingRate")
        self.notice_label = CollapsingLabel(objectName="dialogHint")
        self.curves_title = QLabel("Training curves", objectName="sectionTitle")
        self.curves = TrainingCurves()
        self.curves.setMinimumHeight(160)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(6, 8, 10, 4)
        layout.addWidget(QLabel("Progress", objectName="sectionTitle"))
        layout.addWidget(self.status_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.progress_text)
        layout.addWidget(self.rate_label)
        layout.addWidget(self.notice_label)
        layout.addWidget(self.curves_title)
        layout.addWidget(self.curves, 1)
        return box

    # -- hardware ----------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.discover_hardware()
        self._fit_columns()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """The settings at a readable width, as far as the plots' minimum leaves room."""
        total = sum(self.outer_splitter.sizes())
        right_minimum = self.right_splitter.minimumSizeHint().width()
        room = total - right_minimum - self.outer_splitter.handleWidth()
        left = max(self.settings_column.minimumWidth(),
                   min(SETTINGS_WIDTH, int(total * SETTINGS_SHARE), room))
        if total > 0 and self.outer_splitter.sizes()[0] != left:
            self.outer_splitter.setSizes([left, total - left])

    def discover_hardware(self) -> Task:
        """Find the models and the GPU on a worker (once; it imports torch)."""
        if self.hardware_task is None:
            self.hardware_task = Task(discover_hardware, title="Looking for models and GPUs")
            # Bound methods of widgets: Qt drops the connection if the tab is deleted first.
            self.hardware_task.done.connect(self.form.set_hardware)
            self.hardware_task.failed.connect(self._on_hardware_failed)
            self.hardware_task.start()
        return self.hardware_task

    def _on_hardware_failed(self, error: BaseException, _trace: str) -> None:
        self.status_label.setText(f"Could not load the models: {error_message(error)}")

    # -- public ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a training or its scoring runs."""
        return self.jobs.busy

    def start(self) -> Task | None:
        """Train with the form's settings on the open dataset; None when it cannot start."""
        dataset = self.state.dataset
        if dataset is None or self.busy:
            return None
        try:
            config = self.form.config()
        except ValueError as error:
            self.status_label.setText(f"Cannot start: {error}")
            return None
        self._dataset, self.run_id = dataset, None
        self._started, self._train_seconds = time.monotonic(), 0.0
        self._eta = EtaEstimate()
        self.curves.clear_history()
        self.curves_title.setText("Training curves — new run")
        self.notice_label.clear()
        self.rate_label.clear()
        self._set_progress(0, f"Starting {config.model}…")
        self.status_label.setText(f"Preparing {config.model} at {config.image_size} × "
                                  f"{width_for_rows(config.image_size)} px…")
        self._stage = "Training"
        task = self.jobs.start(train_job, dataset, config, title=f"Training {config.model}",
                               on_done=self._on_trained, on_progress=self._on_train_progress,
                               on_failed=self._on_job_failed, on_cancelled=self._on_job_end)
        self._update_buttons()
        self.busy_changed.emit(True)
        return task

    def cancel(self) -> None:
        """Stop the training (its finished epochs are kept and scored) or the scoring."""
        task = self.jobs.current
        if task is not None:
            self.jobs.cancel()
            self.status_label.setText(f"{task.title}: cancelling…")
        self.cancel_button.setEnabled(False)

    def is_training(self, task: Task | None) -> bool:
        """Whether ``task`` is this tab's running training (not its scoring)."""
        return (task is not None and task is self.jobs.current and task.is_running
                and self._stage == "Training")

    def confirm_cancel(self) -> QMessageBox:
        """Ask before cancelling the training (Esc is easily pressed by mistake).

        The question is window-modal but does not block; "Keep training" is the default
        and what Esc answers. The training is cancelled only on "Cancel training".
        """
        box = QMessageBox(QMessageBox.Icon.Question, "Cancel training", CANCEL_QUESTION,
                          QMessageBox.StandardButton.NoButton, self)
        stop = box.addButton("Cancel training", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._on_cancel_answer(button is stop))
        self.cancel_dialog = box
        box.open()
        return box

    def _drop_cancel_question(self) -> None:
        """The training ended: a pending "Cancel training?" has nothing left to cancel."""
        if self.cancel_dialog is not None:
            self.cancel_dialog.close()
            self.cancel_dialog = None

    def _on_cancel_answer(self, stop: bool) -> None:
        self.cancel_dialog = None
        if stop and self.is_training(self.jobs.current):
            self.cancel()

    def load_selected_settings(self) -> None:
        """Fill the form with the current run's settings."""
        run = self.state.current_run
        if run is not None:
            self.form.set_config(run.config)
            self.status_label.setText(f"Loaded the settings of run {run.id}.")

    # -- training events ---------------------------------------------------------------------
    def _on_train_progress(self, p: Progress) -> None:
        handler = {"start": self._on_run_start, "prepare": self._on_prepare,
                   "train": self._on_batch, "validate": self._on_validate,
                   "epoch": self._on_epoch, "notice": self._on_notice}.get(p.stage)
        if handler is not None:
            handler(p)

    def _on_run_start(self, p: Progress) -> None:
        self.run_id = int(p.data["run_id"])
        self.status_label.setText(p.message)
        self.curves_title.setText(f"Training curves — run {self.run_id}")
        self.state.notify_runs_changed()  # a new 'running' row

    def _on_prepare(self, p: Progress) -> None:
        self._set_progress(p.fraction * PROGRESS_STEPS,
                           f"Resizing images {p.done:,}/{p.total:,}")

    def _on_batch(self, p: Progress) -> None:
        epoch, epochs_total = int(p.data["epoch"]), int(p.data["epochs"])
        overall = (epoch - 1 + p.fraction) / epochs_total
        self._set_progress(overall * PROGRESS_STEPS, f"Epoch {epoch}/{epochs_total} · "
                                                     f"batch {p.done}/{p.total}")
        left = self._eta.update(time.monotonic(), overall)
        eta = "ETA after the first epoch" if left is None else f"ETA {duration_text(left)}"
        self.rate_label.setText(f"loss {p.data['loss']:.4f} · "
                                f"{p.data['images_per_s']:.0f} images/s · {eta}")

    def _on_validate(self, p: Progress) -> None:
        self.progress_text.setText(f"Validating epoch {p.data['epoch']}/{p.data['epochs']}")

    def _on_epoch(self, p: Progress) -> None:
        record: EpochRecord = p.data["epoch_record"]
        self._eta.add_epoch()
        self.curves.add_epoch(record)
        self.status_label.setText(p.message)
        self.runs_view.refresh()  # the running row: AUC, escapes, time, epoch

    def _on_notice(self, p: Progress) -> None:
        self.notice_label.setText(p.message)

    def _on_trained(self, run: RunRecord) -> None:
        self._train_seconds = time.monotonic() - self._started
        self._drop_cancel_question()
        self.run_id = run.id
        self.state.notify_runs_changed()  # finished / cancelled
        checkpoint = run.checkpoint
        if not self.window().isVisible():
            self._on_job_end()  # the window was closed (which cancelled the run): no scoring
            return
        if checkpoint is None or not checkpoint.is_file():
            self.status_label.setText(f"Run {run.id} {run.status}: {run.message or ''}")
            self._on_job_end()
            return
        self._score(run)

    # -- scoring -----------------------------------------------------------------------------
    def _score(self, run: RunRecord) -> None:
        dataset = self._dataset
        what = "finished" if run.status == "finished" else f"{run.status}; scoring its best epoch"
        self.status_label.setText(f"Run {run.id} {what}. Scoring {len(dataset.image_ids):,} "
                                  f"images…")
        self._set_progress(0, "Scoring")
        self._stage = "Scoring"
        self.jobs.start(score_job, dataset, run, title=f"Scoring with run {run.id}",
                        on_done=self._on_scored, on_progress=self._on_score_progress,
                        on_failed=self._on_job_failed, on_cancelled=self._on_score_cancelled)
        self._update_buttons()

    def _on_score_progress(self, p: Progress) -> None:
        self._set_progress(p.fraction * PROGRESS_STEPS, f"Scoring {p.done:,}/{p.total:,}")
        rate = p.data.get("images_per_s")
        if rate:
            self.rate_label.setText(f"{rate:.0f} images/s")

    def _on_scored(self, result) -> None:
        run_id = result.run_id
        total = time.monotonic() - self._started
        run = self._make_current(run_id)
        auc = f"holdout AUC {run.val_auc:.4f}, " if run and run.val_auc is not None else ""
        kept = "" if run is None or run.status == "finished" else \
            f" It was {run.status}, so it is not current: select it in the runs table to use it."
        self.status_label.setText(
            f"Run {run_id} ready: {auc}{len(result.image_ids):,} images scored. "
            f"Took {duration_text(total)} (training {duration_text(self._train_seconds)}, "
            f"scoring {duration_text(total - self._train_seconds)}).{kept}")
        self._set_progress(PROGRESS_STEPS, "Done")
        self.rate_label.clear()
        self._on_job_end()

    def _on_score_cancelled(self) -> None:
        run_id = self.run_id
        self._make_current(run_id)
        self.status_label.setText(f"Scoring with run {run_id} cancelled; the run is kept — "
                                  f"select it and use Score Now to score later.")
        self._on_job_end()

    def _make_current(self, run_id: int) -> RunRecord | None:
        """Offer the run as current if its dataset is still open (a cancelled run is not
        taken: core.session.Session.offer_trained_run); the refreshed record."""
        dataset = self._dataset
        if dataset is None or dataset is not self.state.dataset:
            return None
        run = get_run(dataset.workspace, run_id)
        self.state.offer_trained_run(run)
        self.state.notify_runs_changed()
        return run

    # -- endings -----------------------------------------------------------------------------
    def _on_job_failed(self, error: BaseException) -> None:
        self.status_label.setText(f"{self._stage} failed: {error_message(error)}")
        self.state.notify_runs_changed()  # the run row says 'failed'
        self._on_job_end()

    def _on_job_end(self) -> None:
        finished_run = self.run_id
        self._drop_cancel_question()
        if not self.busy:
            self._update_buttons()
            self.busy_changed.emit(False)
            if finished_run is not None:
                self.run_completed.emit(finished_run)

    def _set_progress(self, value: float, text: str) -> None:
        self.progress_bar.setValue(int(round(value)))
        self.progress_text.setText(text)

    def _update_buttons(self) -> None:
        busy = self.busy
        self.start_button.setEnabled(not busy and self.state.dataset is not None)
        self.cancel_button.setEnabled(busy)
        self.load_button.setEnabled(self.state.current_run is not None)

    # -- state -------------------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        dataset = self.state.dataset
        if dataset is None:
            self.data_label.setText("Open a folder (or generate demo data) to train.")
        else:
            labels = dataset.labels
            labelled, bad = int((labels >= 0).sum()), int((labels == 1).sum())
            self.data_label.setText(f"Trains on {labelled:,} labelled images ({bad:,} bad) of "
                                    f"{Path(dataset.root).name}; scores all "
                                    f"{len(dataset.image_ids):,}.")
        self._update_buttons()
        if not self.busy:
            self._show_current_history()

    def _on_current_run_change(self) -> None:
        self._update_buttons()
        if not self.busy:
            self._show_current_history()

    def _show_current_history(self) -> None:
        """Outside training, the curves show the current run's epochs."""
        run, dataset = self.state.current_run, self.state.dataset
        if run is None or dataset is None:
            self.curves.clear_history()
            self.curves_title.setText("Training curves")
            return
        self.curves.set_history(epochs(dataset.workspace, run.id))
        self.curves_title.setText(f"Training curves — run {run.id} ({run.model})")
