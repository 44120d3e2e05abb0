"""The Training tab's settings form: one widget per :class:`TrainConfig` field, with presets.

The widgets are built from :func:`core.training.config.field_specs`, so their ranges,
steps, units, choices, "not set" texts and tooltips are the ones the command line and
:meth:`TrainConfig.validate` use; nothing here restates a bound. The form only decides
the layout (which fields come first) and what the hardware adds (model sizes, the GPU).
Labels sit above their fields: at 1366 × 768 the settings column is ~270 px wide, too narrow
for a label and a combo box side by side.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.training_jobs import Hardware
from core.training import presets
from core.training.config import FieldSpec, TrainConfig, field_specs, width_for_rows

# The presets are defined once, in core (``diesight train --preset`` uses the same); the
# form knows them by their titles.
QUICK = presets.QUICK.title
FULL = presets.FULL.title
CUSTOM = "Custom"
PRESETS: dict[str, TrainConfig] = {p.title: p.config for p in presets.PRESETS.values()}
PRESET_NOTES = {p.title: p.note for p in presets.PRESETS.values()}
PRESET_NOTES[CUSTOM] = "Your own settings. Pick a preset to start again from one."
NO_CUDA_TIP = "No CUDA GPU is available to this computer (or PyTorch was built without CUDA)."
# Fields shown first; the others follow under "More settings" in TrainConfig's order.
BASIC_FIELDS = ("model", "sampler", "per_class", "epochs", "batch_size", "lr", "image_size",
                "device", "precision", "seed")
# Settings of a multi-process run (the GUI trains in one process): carried, not shown.
UNSHOWN_FIELDS = ("sync_batchnorm",)
SAMPLERS_WITH_DRAWS = ("B", "S")  # the samplers that use per_class
CPU_IMAGE_ROWS = 160  # above this, a CPU run of the Full preset's kind takes hours
QT_INT_MAX = 2**31 - 1  # QSpinBox holds a C int
FLOAT_DECIMALS = 4  # shown decimals of stepped float fields (shares, thresholds)
RATE_DECIMALS = 12  # kept decimals of rates typed like 3e-4


# -- number entry -----------------------------------------------------------------------------

class ScientificSpinBox(QDoubleSpinBox):
    """A spin box for rates such as 0.001 or 3e-4: shows ``%g``, steps by doubling/halving."""

    def __init__(self, minimum: float, maximum: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(RATE_DECIMALS)  # keep typed values exact; textFromValue shows them short
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


# -- widgets from field specs -------------------------------------------------------------------

def tooltip(spec: FieldSpec) -> str:
    """The field's help, its allowed values and its command-line flag."""
    lines = [spec.help[:1].upper() + spec.help[1:] + "."] if spec.help else []
    if spec.choice_help:
        lines += [f"{choice}: {text}" for choice, text in spec.choice_help.items()]
    allowed = spec.range_text()
    if allowed and spec.choices is None:
        lines.append(f"Allowed: {allowed}" + (f", or {spec.none_label}" if spec.optional
                                              and spec.none_label else "") + ".")
    lines.append(f"Command line: diesight train {spec.cli_flag}")
    return "\n".join(lines)


def _int_range(spec: FieldSpec) -> tuple[int, int]:
    low = -QT_INT_MAX if spec.minimum is None else int(spec.minimum) + spec.exclusive_minimum
    high = QT_INT_MAX if spec.maximum is None else int(spec.maximum) - spec.exclusive_maximum
    return low, min(high, QT_INT_MAX)


def _float_range(spec: FieldSpec, decimals: int) -> tuple[float, float]:
    """The spec's bounds, an exclusive one moved one shown digit inwards."""
    tick = 10.0 ** -decimals
    low = -math.inf if spec.minimum is None else spec.minimum + tick * spec.exclusive_minimum
    high = math.inf if spec.maximum is None else spec.maximum - tick * spec.exclusive_maximum
    return low, high


def _none_position(box: QSpinBox | QDoubleSpinBox, spec: FieldSpec) -> None:
    """An optional number gets one position below its minimum that reads ``none_label``."""
    if spec.optional:
        box.setMinimum(box.minimum() - box.singleStep())
        box.setSpecialValueText(spec.none_label)


def _int_box(spec: FieldSpec) -> QSpinBox:
    box = QSpinBox()
    box.setRange(*_int_range(spec))
    box.setSingleStep(int(spec.step or 1))
    box.setKeyboardTracking(False)
    if spec.unit:
        box.setSuffix(f" {spec.unit}")
    _none_position(box, spec)
    return box


def _float_box(spec: FieldSpec) -> QDoubleSpinBox:
    if spec.step is None:  # a rate: spans decades, typed as 3e-4 and stepped by doubling
        return ScientificSpinBox(*_float_range(spec, RATE_DECIMALS))
    box = QDoubleSpinBox(decimals=FLOAT_DECIMALS, singleStep=spec.step)
    box.setRange(*_float_range(spec, FLOAT_DECIMALS))
    box.setKeyboardTracking(False)
    _none_position(box, spec)
    return box


def _combo(items: list[tuple[str, object]]) -> QComboBox:
    box = QComboBox()
    # Long item texts (model descriptions, GPU names) must not widen the settings column.
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(10)
    for text, data in items:
        box.addItem(text, data)
    return box


def _choice_combo(spec: FieldSpec) -> QComboBox:
    box = _combo([(choice, choice) for choice in spec.choices or ()])
    for index, choice in enumerate(spec.choices or ()):
        if spec.choice_help and choice in spec.choice_help:
            box.setItemData(index, spec.choice_help[choice], Qt.ItemDataRole.ToolTipRole)
    return box


def widget_for(spec: FieldSpec) -> QWidget:
    """The entry widget of one field, with the spec's range, step, unit and tooltip."""
    if spec.choices is not None or spec.name == "model":  # models: filled from the registry
        widget: QWidget = _choice_combo(spec)
    elif spec.type is bool:
        widget = QCheckBox(spec.label)
    elif spec.type is int:
        widget = _int_box(spec)
    elif spec.type is float:
        widget = _float_box(spec)
    else:
        widget = QLineEdit(placeholderText=spec.none_label)
    widget.setToolTip(tooltip(spec))
    return widget


def read_widget(widget: QWidget, spec: FieldSpec) -> object:
    """The field's value as the widget shows it (None for a "not set" position)."""
    if isinstance(widget, QComboBox):
        return None if widget.currentData() is None else str(widget.currentData())
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        text = widget.text().strip()
        return text or (None if spec.optional else "")
    if spec.optional and widget.value() < widget.minimum() + widget.singleStep() / 2:
        return None
    if isinstance(widget, QSpinBox):
        return widget.value()
    value = float(widget.value())
    return value if isinstance(widget, ScientificSpinBox) else round(value, FLOAT_DECIMALS)


def show_value(widget: QWidget, value: object) -> None:
    """Show ``value`` (None: the "not set" position) in the field's widget."""
    if isinstance(widget, QComboBox):
        select_data(widget, value)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QLineEdit):
        widget.setText("" if value is None else str(value))
    else:
        widget.setValue(widget.minimum() if value is None else value)


def select_data(box: QComboBox, value: object, text: str | None = None) -> None:
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
        self.hardware: Hardware | None = None
        self.specs = {spec.name: spec for spec in field_specs()
                      if spec.name not in UNSHOWN_FIELDS}
        self._unshown = {name: TrainConfig().to_dict()[name] for name in UNSHOWN_FIELDS}
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
        self.widgets = {name: widget_for(spec) for name, spec in self.specs.items()}
        self.width_label = QLabel(objectName="dialogHint")
        self.sampler_note = QLabel(objectName="dialogHint", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Preset", objectName="sectionTitle"))
        layout.addWidget(self.preset_combo)
        layout.addWidget(self.preset_note)
        layout.addWidget(self.hardware_note)
        layout.addWidget(QLabel("Settings", objectName="sectionTitle"))
        layout.addLayout(self._form(BASIC_FIELDS))
        layout.addWidget(QLabel("More settings", objectName="sectionTitle"))
        layout.addLayout(self._form(tuple(n for n in self.specs if n not in BASIC_FIELDS)))
        layout.addStretch(1)
        for name, widget in self.widgets.items():
            self._connect_change(widget)
            widget.setObjectName(f"field_{name}")
            # Spin boxes size themselves for their largest value (a seed of 2**31): let
            # the column decide instead.
            widget.setMinimumWidth(72)
        self.widgets["sampler"].currentIndexChanged.connect(self._update_enabled)

    def _form(self, names: tuple[str, ...]) -> QFormLayout:
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(0, 2, 0, 6)
        form.setVerticalSpacing(3)
        for name in names:
            row = self._row(name)
            if isinstance(self.widgets[name], QCheckBox):
                form.addRow(row)  # the check box names itself
            else:
                label = QLabel(self.specs[name].label)
                label.setToolTip(self.widgets[name].toolTip())
                form.addRow(label, row)
        return form

    def _row(self, name: str) -> QWidget:
        """The field's widget, with what goes beside or under it."""
        widget = self.widgets[name]
        beside = {"image_size": self.width_label, "weights": self._browse_button()}.get(name)
        below = self.sampler_note if name == "sampler" else None
        if beside is None and below is None:
            return widget
        row = QWidget()
        layout = QVBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        line = QHBoxLayout()
        line.addWidget(widget, 1)
        if beside is not None:
            line.addWidget(beside)
        layout.addLayout(line)
        if below is not None:
            layout.addWidget(below)
        if name == "image_size":
            widget.valueChanged.connect(
                lambda rows: self.width_label.setText(f"× {width_for_rows(rows)} px"))
        return row

    def _browse_button(self) -> QToolButton:
        browse = QToolButton(text="…", toolTip="Choose a local weights file (.pt, .pth)")
        browse.clicked.connect(self._on_browse_weights)
        return browse

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
        box: QComboBox = self.widgets["model"]
        chosen = box.currentData()
        self._loading = True
        try:
            box.clear()
            for info in hardware.models:
                millions = f"{info.parameter_count / 1e6:.2f} M"
                box.addItem(f"{info.name} ({millions})", info.name)
                box.setItemData(box.count() - 1, f"{millions} parameters. {info.description}",
                                Qt.ItemDataRole.ToolTipRole)
            if chosen is not None:
                select_data(box, chosen)
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
            box.setItemText(box.findData("auto"), f"auto (CUDA: {cuda_name})")
            box.setItemText(box.findData("cuda"), f"cuda: {cuda_name}")
            tip = f"Train on the GPU {cuda_name}"
        else:
            box.setItemText(box.findData("auto"), "auto (CPU; no CUDA GPU)")
            box.setItemText(box.findData("cuda"), "cuda (not available)")
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
        return TrainConfig(**{name: read_widget(self.widgets[name], spec)
                              for name, spec in self.specs.items()}, **self._unshown)

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the widgets (the preset combo follows)."""
        self._unshown = {name: getattr(config, name) for name in UNSHOWN_FIELDS}
        self._loading = True
        try:
            for name in self.specs:
                show_value(self.widgets[name], getattr(config, name))
            self._set_device(config.device)
        finally:
            self._loading = False
        self._on_field_change()

    def _set_device(self, device: str) -> None:
        # A run trained on a GPU, loaded on a computer without one, trains here on 'auto'.
        if device == "cuda" and self.cuda_available is False:
            device = "auto"
        select_data(self.widgets["device"], device)

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
        select_data(self.preset_combo, self.preset_name())
        self._update_enabled()
        self._update_notes()
        self.changed.emit()

    def _update_enabled(self, *_args) -> None:
        sampler = self.widgets["sampler"].currentData()
        self.widgets["per_class"].setEnabled(sampler in SAMPLERS_WITH_DRAWS)
        self.sampler_note.setText((self.specs["sampler"].choice_help or {}).get(sampler, ""))

    def _update_notes(self) -> None:
        preset = self.preset_combo.currentData()
        self.preset_note.setText(PRESET_NOTES.get(preset, ""))
        warn = ""
        if self.cuda_available is False:
            large = (self.preset_name() == FULL
                     or self.widgets["image_size"].value() > CPU_IMAGE_ROWS)
            if large:
                warn = ("No CUDA GPU here: at this image size training on the CPU takes "
                        "hours. The Quick preset runs in minutes.")
        self.hardware_note.setText(warn)
        self.hardware_note.setVisible(bool(warn))

    def _on_browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Initial weights", "",
                                              "PyTorch weights (*.pt *.pth);;All files (*)")
        if path:
            self.widgets["weights"].setText(path)
