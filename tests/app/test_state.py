"""AppState: the signals views rely on."""

from __future__ import annotations

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
