"""AppState: the signals views rely on."""

from __future__ import annotations

import numpy as np
import pytest

from app.state import AppState
from core.dataset import open_dataset


@pytest.fixture
def dataset(demo_folder):
    return open_dataset(demo_folder, workers=1)


def test_set_dataset_resets_current_image(qtbot, dataset):
    state = AppState()
    state.set_dataset(dataset)
    state.set_current_image(3)
    with qtbot.waitSignal(state.dataset_changed), \
            qtbot.waitSignal(state.current_image_changed) as current:
        state.set_dataset(dataset)
    assert current.args == [-1]
    assert state.current_image == -1
    assert state.dataset is dataset


def test_current_image_emits_once_per_change(qtbot, dataset):
    state = AppState()
    state.set_dataset(dataset)
    seen = []
    state.current_image_changed.connect(seen.append)
    state.set_current_image(5)
    state.set_current_image(5)
    state.set_current_image(-1)
    assert seen == [5, -1]


def test_current_image_outside_dataset_is_refused(dataset):
    state = AppState()
    with pytest.raises(IndexError):
        state.set_current_image(0)  # no dataset yet
    state.set_dataset(dataset)
    with pytest.raises(IndexError):
        state.set_current_image(len(dataset.image_ids))


# --- run, scores, threshold and annotations ------------------------------------------

def _store_fake_scores(dataset, run_id):
    """Scores a test can predict: position i gets i / n."""
    from core.score_store import store_scores

    n = len(dataset.image_ids)
    scores = np.arange(n, dtype=np.float64) / n
    store_scores(dataset.workspace, run_id, dataset.image_ids, scores,
                 np.zeros((n, 4), dtype=np.float32))
    return scores


@pytest.fixture
def scored_run(dataset):
    from scoring_fixtures import make_run

    run = make_run(dataset.workspace, threshold=0.3)
    return run, _store_fake_scores(dataset, run.id)


def test_current_run_loads_aligned_scores_and_its_threshold(qtbot, dataset, scored_run):
    run, expected = scored_run
    state = AppState()
    state.set_dataset(dataset)
    with qtbot.waitSignal(state.current_run_changed), qtbot.waitSignal(state.threshold_changed):
        state.set_current_run(run)
    np.testing.assert_allclose(state.scores, expected, rtol=1e-6)
    assert state.threshold == pytest.approx(0.3)
    pred = state.predictions()
    assert (pred == (expected >= 0.3)).all()


def test_a_run_without_scores_has_none(dataset):
    from scoring_fixtures import make_run

    state = AppState()
    state.set_dataset(dataset)
    state.set_current_run(make_run(dataset.workspace))
    assert state.scores is None and state.predictions() is None


def test_threshold_is_clamped_and_emits_only_on_change(qtbot, dataset):
    state = AppState()
    seen = []
    state.threshold_changed.connect(seen.append)
    state.set_threshold(1.7)
    state.set_threshold(1.0)
    state.set_threshold(-2)
    assert seen == [1.0, 0.0]


def test_flags_and_labels_are_saved_at_once_and_survive_a_new_state(qtbot, dataset):
    state = AppState()
    state.set_dataset(dataset)
    with qtbot.waitSignal(state.annotations_changed) as blocker:
        state.set_flagged([3, 1, 3], True)
    assert list(blocker.args[0]) == [1, 3]
    original = int(state.labels[2])
    state.set_label([2], 1 - original if original in (0, 1) else 1)
    state.toggle_flag(1)

    again = AppState()
    again.set_dataset(open_dataset(dataset.root, workers=1))
    assert list(np.flatnonzero(again.flagged)) == [3]
    assert again.labels[2] == state.labels[2] != original
    state.set_label([2], None)
    assert state.labels[2] == original


def test_annotations_need_a_dataset_and_valid_positions(dataset):
    state = AppState()
    with pytest.raises(RuntimeError):
        state.set_flagged([0], True)
    state.set_dataset(dataset)
    with pytest.raises(IndexError):
        state.set_flagged([len(dataset.image_ids)], True)


# --- the order previous/next follows ---------------------------------------------------

def test_browse_order_keeps_the_given_order_and_emits_on_change(qtbot, dataset):
    state = AppState()
    state.set_dataset(dataset)
    assert state.browse_order is None
    seen = []
    state.browse_order_changed.connect(lambda: seen.append(state.browse_order))
    order = np.array([5, 2, 9])
    state.set_browse_order(order)
    order[0] = 0  # the caller's array changing later must not change the published order
    state.set_browse_order([5, 2, 9])  # same order: no signal
    state.set_browse_order(None)
    state.set_browse_order(None)
    assert [None if s is None else list(s) for s in seen] == [[5, 2, 9], None]
    with pytest.raises(IndexError):
        state.set_browse_order([len(dataset.image_ids)])


def test_a_new_dataset_drops_the_browse_order(qtbot, dataset):
    state = AppState()
    state.set_dataset(dataset)
    state.set_browse_order([3, 1])
    state.set_dataset(dataset)
    assert state.browse_order is None
