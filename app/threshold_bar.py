"""The decision threshold every view shares, and what it costs on the run's holdout images.

A part is called defective when its score is at or above :attr:`AppState.threshold`. The bar
holds a slider (0..1 in steps of 0.001) and a spin box for it, both following the state
both ways, and beside them what that threshold does to the current run's HOLDOUT images
(held out from training and never used to choose its epoch, :func:`core.runs.holdout_ids`;
for a run from before the holdout existed, its validation images): how many defective parts
it lets pass (escapes), how many good parts it rejects (false calls), and the threshold that
lets none escape. One click sets the threshold for at most N escapes (placed with a margin,
midway in logit space below the lowest bad score it must catch). Every number comes from
:mod:`core.metrics`, so the bar agrees with the trainer and the exports.

When a run becomes current the threshold is the run's own: the one it was trained with, or,
when none was set, its operating point (no holdout escapes) placed after training.

The numbers use the labels as they stand now (the user's relabels applied), and images that
are unlabelled or unscored are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from app.state import AppState
from core.metrics import Confusion, confusion_at, threshold_for_max_escapes
from core.runs import holdout_ids

SLIDER_STEPS = 1000  # three decimals


@dataclass(frozen=True)
class ValidationScores:
    """The current run's holdout images that have a score and a label.

    Attributes:
        positions: their dataset positions.
        scores: their defect probabilities.
        labels: their labels, 1 bad / 0 good.
    """

    positions: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def confusion(self, threshold: float) -> Confusion:
        return confusion_at(self.scores, self.labels, threshold)

    def threshold_for(self, max_escapes: int) -> float | None:
        """The threshold for at most ``max_escapes`` escapes, with a margin (None: no bad
        part)."""
        if not (self.labels == 1).any():
            return None
        return threshold_for_max_escapes(self.scores, self.labels, max_escapes)


def positions_of_ids(image_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the ``wanted`` ids among ``image_ids``; absent ids drop out."""
    return np.flatnonzero(np.isin(image_ids, np.asarray(wanted, dtype=np.int64)))


def floor_to_step(value: float, steps: int = SLIDER_STEPS) -> float:
    """``value`` rounded down to the bar's resolution, so "0 escapes at ≤ t" stays true."""
    return math.floor(value * steps) / steps


class EnterSpinBox(QSpinBox):
    """A spin box that says when Enter was pressed in it (``entered``), so Enter applies."""

    entered = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        super().keyPressEvent(event)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.entered.emit()


class ThresholdBar(QWidget):
    """Slider + spin box for :attr:`AppState.threshold`, with validation escapes and false calls.

    Attributes:
        slider: 0..1000 for thresholds 0.000..1.000.
        spin: the same threshold as a number.
        escapes_label, false_calls_label, zero_escape_label: the validation numbers.
        max_escapes_spin: N for "at most N escapes"; ``max_escapes_button`` applies it.
    """

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thresholdBar")
        self.state = state
        self._validation: ValidationScores | None = None
        self._validation_positions: tuple[int, np.ndarray] | None = None  # (run id, positions)
        self._build_widgets()
        self._build_layout()
        self.slider.valueChanged.connect(self._on_slider_change)
        self.spin.valueChanged.connect(self._on_spin_change)
        self.max_escapes_button.clicked.connect(self._on_max_escapes_click)
        self.max_escapes_spin.entered.connect(self._on_max_escapes_click)
        state.threshold_changed.connect(self._on_threshold_change)
        state.current_run_changed.connect(self._on_run_change)
        state.dataset_changed.connect(self._on_run_change)
        state.annotations_changed.connect(self._on_annotations_change)
        self._on_threshold_change(state.threshold)
        self._on_run_change()

    # -- construction --------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.slider = QSlider(Qt.Orientation.Horizontal, objectName="thresholdSlider")
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(50)
        self.slider.setMinimumWidth(180)
        self.slider.setToolTip("Decision threshold: a part scoring at or above it is called "
                               "defective (shared by every view)")
        self.spin = QDoubleSpinBox(objectName="thresholdSpin")
        self.spin.setRange(0.0, 1.0)
        self.spin.setDecimals(3)
        self.spin.setSingleStep(0.001)
        self.spin.setKeyboardTracking(False)  # typing "0.25" must not jump to 0.2 on the way
        self.spin.setToolTip(self.slider.toolTip())
        self.scope_label = QLabel(objectName="thresholdScope")
        self.escapes_label = QLabel(objectName="escapesLabel")
        self.escapes_label.setToolTip("Escapes: defective holdout parts scoring below the "
                                      "threshold (they would pass inspection)")
        self.false_calls_label = QLabel(objectName="falseCallsLabel")
        self.false_calls_label.setToolTip("False calls: good holdout parts scoring at or "
                                          "above the threshold (they would be rejected)")
        self.zero_escape_label = QLabel(objectName="zeroEscapeLabel")
        self.zero_escape_label.setToolTip("A threshold (to 0.001) at which no defective "
                                          "holdout part escapes, with a margin below the "
                                          "lowest bad score")
        self.max_escapes_spin = EnterSpinBox(objectName="maxEscapesSpin")
        self.max_escapes_spin.setRange(0, 100_000)
        self.max_escapes_spin.setPrefix("≤ ")
        self.max_escapes_spin.setSuffix(" escapes")
        self.max_escapes_spin.setToolTip("How many defective holdout parts may escape "
                                         "(Enter sets the threshold)")
        self.max_escapes_button = QPushButton("Set threshold", objectName="maxEscapesButton")
        self.max_escapes_button.setToolTip("Set the threshold that lets at most this many "
                                           "defective holdout parts escape (fewest false "
                                           "calls for that budget, with a margin)")

    def _build_layout(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(6)
        title = QLabel("Threshold", objectName="thresholdTitle")
        layout.addWidget(title)
        layout.addWidget(self.slider)
        layout.addWidget(self.spin)
        layout.addSpacing(14)
        layout.addWidget(self.scope_label)
        layout.addWidget(self.escapes_label)
        layout.addWidget(self._dot())
        layout.addWidget(self.false_calls_label)
        layout.addWidget(self._dot())
        layout.addWidget(self.zero_escape_label)
        layout.addSpacing(14)
        layout.addWidget(self.max_escapes_spin)
        layout.addWidget(self.max_escapes_button)
        layout.addStretch(1)

    @staticmethod
    def _dot() -> QLabel:
        return QLabel("·", objectName="thresholdDot")

    # -- public --------------------------------------------------------------------
    @property
    def validation(self) -> ValidationScores | None:
        """The holdout images behind the numbers (None without a scored run)."""
        return self._validation

    def set_threshold_for_max_escapes(self, max_escapes: int | None = None) -> float | None:
        """Set the shared threshold for at most N holdout escapes (with a margin).

        Args:
            max_escapes: N (default: the spin box's value).

        Returns:
            The threshold set, or None when there are no defective holdout parts.
        """
        if max_escapes is None:
            max_escapes = self.max_escapes_spin.value()
        if self._validation is None:
            return None
        threshold = self._validation.threshold_for(int(max_escapes))
        if threshold is not None:
            self.state.set_threshold(threshold)
        return threshold

    # -- handlers ------------------------------------------------------------------
    def _on_slider_change(self, value: int) -> None:
        self.state.set_threshold(value / SLIDER_STEPS)

    def _on_spin_change(self, value: float) -> None:
        self.state.set_threshold(value)

    def _on_max_escapes_click(self) -> None:
        self.set_threshold_for_max_escapes()

    def _on_threshold_change(self, threshold: float) -> None:
        for widget, value in ((self.slider, round(threshold * SLIDER_STEPS)),
                              (self.spin, threshold)):
            # The widgets only show the state; echoing it back would round it to 3 decimals.
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self._show_numbers()

    def _on_run_change(self) -> None:
        self._validation = self._load_validation()
        self._show_numbers()

    def _on_annotations_change(self, positions) -> None:
        if self._validation is not None and np.isin(positions, self._validation_positions[1]).any():
            self._validation = self._load_validation()  # a holdout image was relabelled
            self._show_numbers()

    # -- the numbers ---------------------------------------------------------------
    def _load_validation(self) -> ValidationScores | None:
        state = self.state
        dataset, run, scores = state.dataset, state.current_run, state.scores
        if dataset is None or run is None or scores is None:
            self._validation_positions = None
            return None
        if self._validation_positions is None or self._validation_positions[0] != run.id:
            ids = holdout_ids(dataset.workspace, run.id)
            self._validation_positions = (run.id, positions_of_ids(dataset.image_ids, ids))
        positions = self._validation_positions[1]
        labels = state.labels[positions]
        usable = np.isin(labels, (0, 1)) & ~np.isnan(scores[positions])
        positions = positions[usable]
        return ValidationScores(positions, scores[positions].astype(np.float64),
                                labels[usable].astype(np.int8))

    def _show_numbers(self) -> None:
        validation = self._validation
        has_numbers = validation is not None and len(validation.positions) > 0
        for widget in (self.escapes_label, self.false_calls_label, self.zero_escape_label,
                       self.max_escapes_spin, self.max_escapes_button):
            widget.setEnabled(has_numbers)
        if not has_numbers:
            self.scope_label.setText(self._why_no_numbers())
            for label in (self.escapes_label, self.false_calls_label, self.zero_escape_label):
                label.setText("—")
            return
        confusion = validation.confusion(self.state.threshold)
        self.scope_label.setText(f"Holdout ({len(validation.positions):,}):")
        self.escapes_label.setText(f"{confusion.escapes:,} escape"
                                   f"{'' if confusion.escapes == 1 else 's'}")
        self.escapes_label.setProperty("alarm", confusion.escapes > 0)
        self._repolish(self.escapes_label)
        self.false_calls_label.setText(f"{confusion.false_calls:,} false call"
                                       f"{'' if confusion.false_calls == 1 else 's'}")
        zero = validation.threshold_for(0)
        self.zero_escape_label.setText("no defective parts" if zero is None else
                                       f"0 escapes at ≤ {floor_to_step(min(zero, 1.0)):.3f}")

    def _why_no_numbers(self) -> str:
        state = self.state
        if state.dataset is None or state.current_run is None:
            return "Holdout: no run selected"
        if state.scores is None:
            return f"Holdout: run {state.current_run.id} has no scores yet"
        return f"Holdout: run {state.current_run.id} has no labelled holdout images here"

    @staticmethod
    def _repolish(widget: QWidget) -> None:
        widget.style().unpolish(widget)
        widget.style().polish(widget)
