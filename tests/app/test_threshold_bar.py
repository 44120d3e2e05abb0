"""The shared threshold bar: slider/spin box <-> AppState, and the validation escapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt
from ranked_fixtures import state_with_run, validation_positions

from app.state import AppState
from app.threshold_bar import ThresholdBar
from core.metrics import confusion_at, threshold_for_max_escapes
from core.runs import get_run, save_validation_ids, validation_ids


@pytest.fixture
def scored(demo_copy):
    return state_with_run(demo_copy, threshold=0.5)


@pytest.fixture
def bar(qtbot, scored):
    bar = ThresholdBar(scored[0])
    qtbot.addWidget(bar)
    bar.show()
    return bar


def validation_truth(state, run):
    """Scores and labels of the run's validation ids, looked up independently of the bar."""
    ids = validation_ids(state.dataset.workspace, run.id)
    positions = np.searchsorted(state.dataset.image_ids, ids)
    labels = state.labels[positions]
    keep = labels >= 0
    return state.scores[positions][keep], labels[keep]


def test_bar_and_state_follow_each_other(bar, scored):
    state = scored[0]
    assert bar.spin.value() == pytest.approx(0.5) and bar.slider.value() == 500
    state.set_threshold(0.25)
    assert bar.slider.value() == 250 and bar.spin.value() == pytest.approx(0.25)
    bar.slider.setValue(123)
    assert state.threshold == pytest.approx(0.123)
    assert bar.spin.value() == pytest.approx(0.123)
    bar.spin.setValue(0.777)
    assert state.threshold == pytest.approx(0.777) and bar.slider.value() == 777


def test_exact_thresholds_are_not_rounded_by_the_widgets(bar, scored):
    state = scored[0]
    state.set_threshold(0.12345678)
    assert state.threshold == 0.12345678  # the 3-decimal widgets do not echo a rounded value
    assert bar.spin.value() == pytest.approx(0.123)


def test_escapes_and_false_calls_equal_core_metrics_on_the_validation_ids(bar, scored):
    state, run, _ = scored
    scores, labels = validation_truth(state, run)
    assert len(scores) == len(validation_positions(state.dataset))
    for threshold in (0.2, 0.5, 0.61, 0.9):
        state.set_threshold(threshold)
        expected = confusion_at(scores, labels, threshold)
        assert bar.escapes_label.text().startswith(f"{expected.escapes:,} escape")
        assert bar.false_calls_label.text().startswith(f"{expected.false_calls:,} false call")
    assert bar.scope_label.text() == f"Holdout ({len(scores):,}):"
    zero = threshold_for_max_escapes(scores, labels, 0)
    assert bar.zero_escape_label.text() == f"0 escapes at ≤ {math.floor(zero * 1000) / 1000:.3f}"


def test_at_most_n_escapes_is_one_click(qtbot, bar, scored):
    state, run, _ = scored
    scores, labels = validation_truth(state, run)
    bar.max_escapes_spin.setValue(2)
    qtbot.mouseClick(bar.max_escapes_button, Qt.MouseButton.LeftButton)
    assert state.threshold == pytest.approx(threshold_for_max_escapes(scores, labels, 2))
    assert confusion_at(scores, labels, state.threshold).escapes <= 2
    assert bar.escapes_label.text().startswith(
        f"{confusion_at(scores, labels, state.threshold).escapes} escape")


def test_relabelling_a_validation_image_updates_the_numbers(bar, scored):
    state, run, _ = scored
    state.set_threshold(0.5)
    good = [p for p in validation_positions(state.dataset).tolist()
            if state.labels[p] == 0 and state.scores[p] < 0.5]
    before = bar.escapes_label.text()
    state.set_label(good[:3], 1)  # three passed "good" parts are really defective
    scores, labels = validation_truth(state, run)
    escapes = confusion_at(scores, labels, 0.5).escapes
    assert bar.escapes_label.text().startswith(f"{escapes:,} escape")
    assert bar.escapes_label.text() != before


def test_without_a_scored_run_the_numbers_say_why(qtbot):
    state = AppState()
    bar = ThresholdBar(state)
    qtbot.addWidget(bar)
    assert bar.scope_label.text() == "Holdout: no run selected"
    assert not bar.max_escapes_button.isEnabled()
    assert bar.set_threshold_for_max_escapes(0) is None
    bar.slider.setValue(800)  # the threshold itself works without a run
    assert state.threshold == pytest.approx(0.8)


def test_the_numbers_come_from_the_holdout_not_the_selection_images(bar, scored):
    state, run, _ = scored
    workspace = state.dataset.workspace
    held_out = validation_ids(workspace, run.id)
    save_validation_ids(workspace, run.id, held_out, holdout_ids=held_out[::2])
    state.set_current_run(None)
    state.set_current_run(get_run(workspace, run.id))  # the bar reads the run's ids again
    expected = np.searchsorted(state.dataset.image_ids, held_out[::2])
    expected = expected[state.labels[expected] >= 0]
    assert np.array_equal(bar.validation.positions, expected)
    assert bar.scope_label.text() == f"Holdout ({len(expected):,}):"
