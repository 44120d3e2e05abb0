"""The Training tab: settings with presets, Start/Cancel, live progress and curves, the runs.

Left, the settings form: every field of :class:`core.training.TrainConfig`, one widget each
(:class:`TrainingSettingsForm`), with presets at the top — "Quick (CPU)", a compact model at
a reduced image size that trains and scores the 3,000-image demo set in about two minutes
on a 2-core CPU, and "Full (GPU)", the seed study's settings. Right, the running job's
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
from PySide6.QtGui import QStandardItemModel, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.runs_view import AXIS_COLOUR, PLOT_BACKGROUND, RunsView, duration_text
from app.state import AppState
from app.training_jobs import Hardware, discover_hardware, score_job, train_job
from app.workers import Task, describe_error
from core.progress import Progress
from core.runs import EpochRecord, RunRecord, epochs, get_run
from core.training import presets
from core.training.config import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_PER_CLASS,
    MIN_IMAGE_SIZE,
    OPTIMIZERS,
    PRECISIONS,
    SAMPLER_HELP,
    SCHEDULES,
    TrainConfig,
    width_for_rows,
)

# The presets are defined once, in core (``diesight train --preset`` uses the same); the
# form knows them by their titles.
QUICK = presets.QUICK.title
FULL = presets.FULL.title
CUSTOM = "Custom"
PRESETS: dict[str, TrainConfig] = {p.title: p.config for p in presets.PRESETS.values()}
PRESET_NOTES = {p.title: p.note for p in presets.PRESETS.values()}
PRESET_NOTES[CUSTOM] = "Your own settings. Pick a preset to start again from one."
SAMPLER_TITLES = {"B": "B — balanced bootstrap", "S": "S — balanced subsample",
                  "shuffle": "shuffle — every image once",
                  "weighted": "weighted — class-weighted loss"}
PRECISION_TITLES = {"auto": "auto", "fp32": "fp32", "bf16": "bf16 (mixed)",
                    "fp16": "fp16 (mixed, GPU only)"}
NO_CUDA_TIP = "No CUDA GPU is available to this computer (or PyTorch was built without CUDA)."
LOSS_COLOURS = {"train": "#2f6fde", "val": "#d9822b"}
AUC_COLOUR = "#2e9e5b"
PROGRESS_STEPS = 1000
SETTINGS_WIDTH = 330  # the settings column's width when there is room
SETTINGS_SHARE = 0.3  # ... and at most this share of the tab


# -- number entry -----------------------------------------------------------------------------

class ScientificSpinBox(QDoubleSpinBox):
    """A spin box for rates such as 0.001 or 3e-4: shows ``%g``, steps by doubling/halving."""

    def __init__(self, minimum: float, maximum: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)  # keep typed values exact; textFromValue shows them short
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802
        return f"{value:g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            # Partial input on the way to a number ('3e', '1.', '-') is fine while typing.
            partial = stripped in ("", ".", "-") or stripped.lower().endswith(("e", "e-", "."))
            state = QValidator.State.Intermediate if partial else QValidator.State.Invalid
            return state, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self.value() or max(self.minimum(), 1e-5)
        self.setValue(min(self.maximum(), max(self.minimum(), value * 2.0 ** steps)))


def _spin(minimum: int, maximum: int, step: int = 1, suffix: str = "",
          special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    box.setKeyboardTracking(False)
    if suffix:
        box.setSuffix(suffix)
    if special:
        box.setSpecialValueText(special)
    return box


def _combo(items: list[tuple[str, object]]) -> QComboBox:
    box = QComboBox()
    # Long item texts (model descriptions, GPU names) must not widen the settings column.
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(10)
    for text, data in items:
        box.addItem(text, data)
    return box


def _select_data(box: QComboBox, value: object, text: str | None = None) -> None:
    """Select the item carrying ``value``, adding one (``text``) if there is none."""
    index = box.findData(value)
    if index < 0:
        box.addItem(text or str(value), value)
        index = box.count() - 1
    box.setCurrentIndex(index)


# -- the settings form ----------------------------------------------------------------------------

class TrainingSettingsForm(QWidget):
    """One widget per :class:`TrainConfig` field, with presets.

    ``config()`` builds the config from the widgets, ``set_config()`` shows one, and the
    preset combo follows: it names the preset the form matches, or "Custom".

    Signals:
        changed(): any setting changed (by the user or by code).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loading = False
        # Settings the form does not show (the GUI trains in one process): carried through.
        self._unshown = {"compile": False, "sync_batchnorm": False}
        self.hardware: Hardware | None = None
        self._build()
        self.apply_preset(QUICK)

    # -- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        self.preset_combo = _combo([(name, name) for name in (*PRESETS, CUSTOM)])
        self.preset_combo.setObjectName("presetCombo")
        self.preset_combo.setToolTip("Start from a preset; every setting below stays editable")
        self.preset_combo.activated.connect(self._on_preset_chosen)
        self.preset_note = QLabel(objectName="dialogHint", wordWrap=True)
        self.hardware_note = QLabel(objectName="dialogHint", wordWrap=True)
        self.hardware_note.hide()
        self.widgets = self._make_widgets()
        self.width_label = QLabel(objectName="dialogHint")
        basic = self._form([
            ("Model", "model"), ("Sampler", "sampler"), ("Draws per class", "per_class"),
            ("Epochs", "epochs"), ("Batch size", "batch_size"), ("Learning rate", "lr"),
            ("Image size", self._image_size_row()), ("Device", "device"),
            ("Precision", "precision"), ("Seed", "seed")])
        advanced = self._form([
            ("Optimizer", "optimizer"), ("Weight decay", "weight_decay"),
            ("LR schedule", "schedule"), ("Augmentation", "augment"),
            ("Validation share", "val_fraction"), ("Split seed", "split_seed"),
            ("Early stop after", "early_stopping_patience"), ("Threshold", "threshold"),
            ("CPU threads", "num_threads"), ("Initial weights", self._weights_row())])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Preset", objectName="sectionTitle"))
        layout.addWidget(self.preset_combo)
        layout.addWidget(self.preset_note)
        layout.addWidget(self.hardware_note)
        layout.addWidget(QLabel("Settings", objectName="sectionTitle"))
        layout.addLayout(basic)
        layout.addWidget(QLabel("More settings", objectName="sectionTitle"))
        layout.addLayout(advanced)
        layout.addStretch(1)
        for name, widget in self.widgets.items():
            self._connect_change(widget)
            widget.setObjectName(f"field_{name}")
            # Spin boxes size themselves for their largest value (a seed of 2**31): let
            # the column decide instead.
            widget.setMinimumWidth(72)
        self.widgets["sampler"].currentIndexChanged.connect(self._update_enabled)

    def _make_widgets(self) -> dict[str, QWidget]:
        w: dict[str, QWidget] = {
            "model": _combo([]),
            "sampler": _combo([(SAMPLER_TITLES[s], s) for s in SAMPLER_TITLES]),
            "per_class": _spin(1, MAX_PER_CLASS, 100),
            "epochs": _spin(1, MAX_EPOCHS),
            "batch_size": _spin(1, MAX_BATCH_SIZE, 8),
            "lr": ScientificSpinBox(1e-7, 10.0),
            "image_size": _spin(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, 8, " rows"),
            "device": _combo([("Auto", "auto"), ("CUDA GPU", "cuda"), ("CPU", "cpu")]),
            "precision": _combo([(PRECISION_TITLES[p], p) for p in PRECISIONS]),
            "seed": _spin(0, 2**31 - 1),
            "split_seed": _spin(-1, 2**31 - 1, 1, "", "same as seed"),
            "optimizer": _combo([(o.upper() if o == "sgd" else "AdamW", o) for o in OPTIMIZERS]),
            "weight_decay": ScientificSpinBox(0.0, 1.0),
            "schedule": _combo([(s, s) for s in SCHEDULES]),
            "augment": QCheckBox("on"),
            "val_fraction": QDoubleSpinBox(decimals=3, minimum=0.01, maximum=0.99,
                                           singleStep=0.05),
            "early_stopping_patience": _spin(0, MAX_EPOCHS, 1, " stale epochs", "never"),
            "threshold": QDoubleSpinBox(decimals=4, minimum=0.0, maximum=1.0, singleStep=0.05),
            "num_threads": _spin(0, 1024, 1, "", "all cores"),
            "weights": QLineEdit(placeholderText="none: random initialisation"),
        }
        w["sampler"].setToolTip("\n".join(f"{k}: {v}" for k, v in SAMPLER_HELP.items()))
        w["per_class"].setToolTip("Images drawn per class per epoch (samplers B and S)")
        w["precision"].setToolTip("auto: bf16 (or fp16) mixed precision on a GPU, fp32 on "
                                  "the CPU")
        w["lr"].setToolTip("Peak learning rate (arrows double / halve it)")
        w["image_size"].setToolTip("Rows of the network input; the width keeps the parts' "
                                   "267:275 aspect ratio. Smaller trains much faster.")
        w["augment"].setToolTip("Random brightness, contrast, gamma, noise and small shifts "
                                "on training batches")
        w["val_fraction"].setToolTip("Share of each class held out for validation")
        # 0 would call every part defective, so it stands for "not set" (TrainConfig None).
        w["threshold"].setSpecialValueText("operating point")
        w["threshold"].setToolTip("Score at or above which a part is called defective. "
                                  "'operating point' (0): the run's threshold is placed "
                                  "after training, with no escapes on its holdout images")
        w["seed"].setToolTip("Seeds weight initialisation, sampling and augmentation (and the "
                             "split, unless a split seed is set)")
        w["split_seed"].setToolTip("Seeds only which images are held out (selection and "
                                   "holdout), so other seeds can be compared on the same "
                                   "images")
        return w

    def _form(self, rows: list[tuple[str, str | QWidget]]) -> QFormLayout:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setContentsMargins(0, 2, 0, 6)
        for label, field in rows:
            form.addRow(label, self.widgets[field] if isinstance(field, str) else field)
        return form

    def _image_size_row(self) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widgets["image_size"], 1)
        layout.addWidget(self.width_label)
        self.widgets["image_size"].valueChanged.connect(
            lambda rows: self.width_label.setText(f"× {width_for_rows(rows)} px"))
        return row

    def _weights_row(self) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        browse = QToolButton(text="…", toolTip="Choose a local weights file (.pt, .pth)")
        browse.clicked.connect(self._on_browse_weights)
        layout.addWidget(self.widgets["weights"], 1)
        layout.addWidget(browse)
        return row

    def _connect_change(self, widget: QWidget) -> None:
        if isinstance(widget, QComboBox):
            widget.currentIndexChanged.connect(self._on_field_change)
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            widget.valueChanged.connect(self._on_field_change)
        elif isinstance(widget, QCheckBox):
            widget.toggled.connect(self._on_field_change)
        elif isinstance(widget, QLineEdit):
            widget.textChanged.connect(self._on_field_change)

    # -- hardware ------------------------------------------------------------------------------
    def set_hardware(self, hardware: Hardware) -> None:
        """Show the registered models (with parameter counts) and the GPU, if any."""
        self.hardware = hardware
        chosen = self.widgets["model"].currentData()
        box: QComboBox = self.widgets["model"]
        self._loading = True
        try:
            box.clear()
            for info in hardware.models:
                box.addItem(f"{info.name} ({info.parameter_count / 1e6:.2f} M parameters)",
                            info.name)
                box.setItemData(box.count() - 1, info.description,
                                Qt.ItemDataRole.ToolTipRole)
            if chosen is not None:
                _select_data(box, chosen)
            self._show_devices(hardware.cuda_name)
        finally:
            self._loading = False
        self._update_notes()

    def _show_devices(self, cuda_name: str | None) -> None:
        box: QComboBox = self.widgets["device"]
        model = box.model()
        cuda_item = model.item(box.findData("cuda")) if isinstance(
            model, QStandardItemModel) else None
        if cuda_name:
            box.setItemText(box.findData("auto"), f"Auto (CUDA: {cuda_name})")
            box.setItemText(box.findData("cuda"), f"CUDA: {cuda_name}")
            tip = f"Train on the GPU {cuda_name}"
        else:
            box.setItemText(box.findData("auto"), "Auto (CPU; no CUDA GPU)")
            box.setItemText(box.findData("cuda"), "CUDA GPU (not available)")
            tip = NO_CUDA_TIP
        box.setItemData(box.findData("cuda"), tip, Qt.ItemDataRole.ToolTipRole)
        if cuda_item is not None:
            cuda_item.setEnabled(bool(cuda_name))
        if not cuda_name and box.currentData() == "cuda":
            box.setCurrentIndex(box.findData("auto"))

    @property
    def cuda_available(self) -> bool | None:
        """Whether CUDA can be used (None until the hardware is known)."""
        return None if self.hardware is None else self.hardware.cuda_name is not None

    # -- config <-> widgets ------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The settings as a :class:`TrainConfig`.

        Raises:
            ValueError: a setting is out of range (the message names it).
        """
        w = self.widgets
        threads = w["num_threads"].value()
        weights = w["weights"].text().strip()
        return TrainConfig(
            model=str(w["model"].currentData()), epochs=w["epochs"].value(),
            batch_size=w["batch_size"].value(), lr=float(w["lr"].value()),
            optimizer=str(w["optimizer"].currentData()),
            weight_decay=float(w["weight_decay"].value()),
            schedule=str(w["schedule"].currentData()), sampler=str(w["sampler"].currentData()),
            per_class=w["per_class"].value(), augment=w["augment"].isChecked(),
            val_fraction=round(float(w["val_fraction"].value()), 4), seed=w["seed"].value(),
            split_seed=None if w["split_seed"].value() < 0 else w["split_seed"].value(),
            device=str(w["device"].currentData()),
            precision=str(w["precision"].currentData()), image_size=w["image_size"].value(),
            early_stopping_patience=w["early_stopping_patience"].value(),
            threshold=round(float(w["threshold"].value()), 6) or None,
            num_threads=threads or None, weights=weights or None, **self._unshown)

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the widgets (the preset combo follows)."""
        w = self.widgets
        self._unshown = {name: getattr(config, name) for name in self._unshown}
        self._loading = True
        try:
            _select_data(w["model"], config.model)
            _select_data(w["sampler"], config.sampler)
            _select_data(w["optimizer"], config.optimizer)
            _select_data(w["schedule"], config.schedule)
            _select_data(w["precision"], config.precision)
            self._set_device(config.device)
            for name in ("epochs", "batch_size", "per_class", "seed", "image_size",
                         "early_stopping_patience"):
                w[name].setValue(int(getattr(config, name)))
            for name in ("lr", "weight_decay", "val_fraction"):
                w[name].setValue(float(getattr(config, name)))
            w["threshold"].setValue(config.threshold or 0.0)
            w["split_seed"].setValue(-1 if config.split_seed is None else config.split_seed)
            w["augment"].setChecked(bool(config.augment))
            w["num_threads"].setValue(int(config.num_threads or 0))
            w["weights"].setText(config.weights or "")
        finally:
            self._loading = False
        self._on_field_change()

    def _set_device(self, device: str) -> None:
        # A run trained on a GPU, loaded on a computer without one, trains here on 'auto'.
        if device == "cuda" and self.cuda_available is False:
            device = "auto"
        _select_data(self.widgets["device"], device)

    def apply_preset(self, name: str) -> None:
        """Fill the form with a preset's settings."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        self.set_config(PRESETS[name])

    def preset_name(self) -> str:
        """The preset the form matches now, or ``CUSTOM``."""
        try:
            current = self.config().to_dict()
        except ValueError:
            return CUSTOM
        return next((name for name, preset in PRESETS.items()
                     if preset.to_dict() == current), CUSTOM)

    # -- reactions ----------------------------------------------------------------------------
    def _on_preset_chosen(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if name in PRESETS:
            self.apply_preset(name)

    def _on_field_change(self, *_args) -> None:
        if self._loading:
            return
        _select_data(self.preset_combo, self.preset_name())
        self._update_enabled()
        self._update_notes()
        self.changed.emit()

    def _update_enabled(self, *_args) -> None:
        uses_draws = self.widgets["sampler"].currentData() in ("B", "S")
        self.widgets["per_class"].setEnabled(uses_draws)

    def _update_notes(self) -> None:
        preset = self.preset_combo.currentData()
        self.preset_note.setText(PRESET_NOTES.get(preset, ""))
        warn = ""
        if self.cuda_available is False:
            config_ok = self.preset_name() == FULL or self.widgets["image_size"].value() > 160
            if config_ok:
                warn = ("No CUDA GPU here: at this image size training on the CPU takes "
                        "hours. The Quick preset runs in minutes.")
        self.hardware_note.setText(warn)
        self.hardware_note.setVisible(bool(warn))

    def _on_browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Initial weights", "",
                                              "PyTorch weights (*.pt *.pth);;All files (*)")
        if path:
            self.widgets["weights"].setText(path)


# -- live curves ---------------------------------------------------------------------------------

class TrainingCurves(QWidget):
    """Loss (training, validation) and validation AUC per epoch, side by side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # The loss title names its curves in their colours: a legend box would cover the
        # points in a narrow plot.
        # (Short: a title wider than the plot pushes the plot's right end out of view.)
        loss_title = (f"<span style='color:{LOSS_COLOURS['train']}'>train</span> · "
                      f"<span style='color:{LOSS_COLOURS['val']}'>validation</span> loss")
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
        widget = pg.PlotWidget(background=PLOT_BACKGROUND)
        widget.setMinimumWidth(100)
        plot = widget.getPlotItem()
        plot.setTitle(title, color=AXIS_COLOUR, size="10pt")
        plot.setLabel("bottom", "epoch", color=AXIS_COLOUR)
        plot.showGrid(x=True, y=True, alpha=0.15)
        for axis in ("bottom", "left"):
            plot.getAxis(axis).setPen(AXIS_COLOUR)
            plot.getAxis(axis).setTextPen(AXIS_COLOUR)
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
        self.training_task: Task | None = None
        self.scoring_task: Task | None = None
        self.run_id: int | None = None  # the run being trained or scored
        self._dataset = None  # the dataset the job works on
        self._started = 0.0
        self._train_seconds = 0.0
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
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        self.rate_label = QLabel(objectName="trainingRate")
        self.notice_label = QLabel(objectName="dialogHint", wordWrap=True)
        self.curves_title = QLabel("Training curves", objectName="sectionTitle")
        self.curves = TrainingCurves()
        self.curves.setMinimumHeight(160)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(6, 8, 10, 4)
        layout.addWidget(QLabel("Progress", objectName="sectionTitle"))
        layout.addWidget(self.status_label)
        row = QHBoxLayout()
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.rate_label)
        layout.addLayout(row)
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
        self.status_label.setText(f"Could not load the models: {describe_error(error)}")

    # -- public ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a training or its scoring runs."""
        return any(t is not None and t.is_running for t in (self.training_task,
                                                             self.scoring_task))

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
        self._dataset, self.run_id, self.scoring_task = dataset, None, None
        self._started, self._train_seconds = time.monotonic(), 0.0
        self.curves.clear_history()
        self.curves_title.setText("Training curves — new run")
        self.notice_label.clear()
        self.rate_label.clear()
        self._set_progress(0, f"Starting {config.model}…")
        self.status_label.setText(f"Preparing {config.model} at {config.image_size} × "
                                  f"{width_for_rows(config.image_size)} px…")
        task = self.run_task(train_job, dataset, config,
                             title=f"Training {config.model}", on_done=self._on_trained)
        # Bound methods only: a window closed mid-run must not call into deleted widgets.
        task.progress.connect(self._on_train_progress)
        task.failed.connect(self._on_job_failed)
        task.cancelled.connect(self._on_job_end)
        self.training_task = task
        self._update_buttons()
        self.busy_changed.emit(True)
        return task

    def cancel(self) -> None:
        """Stop the training (its finished epochs are kept and scored) or the scoring."""
        for task in (self.training_task, self.scoring_task):
            if task is not None and task.is_running:
                task.cancel()
                self.status_label.setText(f"{task.title}: cancelling…")
        self.cancel_button.setEnabled(False)

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
        self.rate_label.setText(f"loss {p.data['loss']:.4f} · "
                                f"{p.data['images_per_s']:.0f} images/s · "
                                f"ETA {duration_text(p.data['eta_s'])}")

    def _on_validate(self, p: Progress) -> None:
        self.progress_bar.setFormat(f"Validating epoch {p.data['epoch']}/{p.data['epochs']}")

    def _on_epoch(self, p: Progress) -> None:
        record: EpochRecord = p.data["epoch_record"]
        self.curves.add_epoch(record)
        self.status_label.setText(p.message)
        self.runs_view.refresh()  # the running row: AUC, escapes, time, epoch

    def _on_notice(self, p: Progress) -> None:
        self.notice_label.setText(p.message)

    def _on_trained(self, run: RunRecord) -> None:
        self._train_seconds = time.monotonic() - self._started
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
        task = self.run_task(score_job, dataset, run, title=f"Scoring with run {run.id}",
                             on_done=self._on_scored)
        task.progress.connect(self._on_score_progress)
        task.failed.connect(self._on_job_failed)
        task.cancelled.connect(self._on_score_cancelled)
        self.scoring_task = task
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
        self.status_label.setText(
            f"Run {run_id} ready: {auc}{len(result.image_ids):,} images scored. "
            f"Took {duration_text(total)} (training {duration_text(self._train_seconds)}, "
            f"scoring {duration_text(total - self._train_seconds)}).")
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
        """Make the run current if its dataset is still open; the refreshed record."""
        dataset = self._dataset
        if dataset is None or dataset is not self.state.dataset:
            return None
        run = get_run(dataset.workspace, run_id)
        self.state.set_current_run(run)
        self.state.notify_runs_changed()
        return run

    # -- endings -----------------------------------------------------------------------------
    def _on_job_failed(self, error: BaseException, _trace: str = "") -> None:
        what = "Scoring" if self.scoring_task is not None else "Training"
        self.status_label.setText(f"{what} failed: {describe_error(error)}")
        self.state.notify_runs_changed()  # the run row says 'failed'
        self._on_job_end()

    def _on_job_end(self) -> None:
        finished_run = self.run_id
        if not self.busy:
            self._update_buttons()
            self.busy_changed.emit(False)
            if finished_run is not None:
                self.run_completed.emit(finished_run)

    def _set_progress(self, value: float, text: str) -> None:
        self.progress_bar.setValue(int(round(value)))
        self.progress_bar.setFormat(text)

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
