"""File ▸ Score New Lot…: a new folder joins the open dataset, scored with the current run."""

from __future__ import annotations

import numpy as np
import pytest
from scoring_fixtures import make_lot, make_run

from core.lots import list_lots
from core.score_store import load_scores
from core.scoring import score_dataset

TIMEOUT_MS = 60_000


def wait_for(qtbot, task):
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=TIMEOUT_MS):
        pass
    return task


@pytest.fixture
def opened(qtbot, window, tmp_path):
    """The window with a small dataset open and a scored run current."""
    wait_for(qtbot, window.open_folder(make_lot(tmp_path / "data")))
    dataset = window.state.dataset
    run = make_run(dataset.workspace, threshold=0.3)
    score_dataset(dataset, run, device="cpu")
    window.state.set_current_run(run)
    return window, run


@pytest.fixture
def lot_folder(tmp_path):
    return make_lot(tmp_path / "lot-july", good=0, bad=0, test=7, seed=4, first_id=500)


def test_action_needs_a_current_run(qtbot, window, tmp_path, lot_folder):
    assert not window.score_lot_action.isEnabled()
    assert window.score_lot_action in window.toolbar.actions()
    file_menu = window.menuBar().actions()[0].menu()
    assert window.score_lot_action in file_menu.actions()
    assert window.score_new_lot(lot_folder) is None
    assert "choose a trained run" in window.message_box.text()

    wait_for(qtbot, window.open_folder(make_lot(tmp_path / "data")))
    assert not window.score_lot_action.isEnabled()
    window.state.set_current_run(make_run(window.state.dataset.workspace))
    assert window.score_lot_action.isEnabled()


def test_new_lot_appears_in_grid_scores_and_panel(qtbot, opened, lot_folder):
    window, run = opened
    before = window.state.dataset
    old_ids, old_scores = load_scores(before.workspace, run.id)
    window.state.set_threshold(0.42)
    window.state.set_current_image(3)
    current_id = int(before.image_ids[3])

    task = wait_for(qtbot, window.score_new_lot(lot_folder, "July"))
    assert task.state == "done"
    assert window.score_lot_action.isEnabled()
    dataset = window.state.dataset
    assert len(dataset) == len(before) + 7

    # The run, threshold and current image survive the dataset swap.
    assert window.state.current_run.id == run.id
    assert window.state.threshold == pytest.approx(0.42)
    assert int(dataset.image_ids[window.state.current_image]) == current_id

    # Scores cover every image; the old ones are unchanged.
    scores = window.state.scores
    assert scores is not None and len(scores) == len(dataset) and not np.isnan(scores).any()
    ids, stored = load_scores(dataset.workspace, run.id)
    assert np.array_equal(stored[np.isin(ids, old_ids)], old_scores)

    # The grid shows the lot through its own split filter value; the panel counts it.
    grid = window.grid
    assert grid.split_filter.currentData() == "lot July"
    assert grid.split_filter.currentText() == "Lot July (7)"
    assert grid.model.rowCount() == 7
    assert (dataset.labels[grid.model.positions] == -1).all()
    grid.set_filters("all", "all")
    assert grid.model.rowCount() == len(dataset)
    assert window.dataset_panel.count_cell("lot july", "unlabelled") == 7

    # The ranked list offers the lot as a split too.
    window.ranked.set_filters("all", "lot July")
    qtbot.waitUntil(lambda: window.ranked.model.rowCount() == 7, timeout=TIMEOUT_MS)
    ranked = window.ranked.model.positions
    assert set(dataset.splits[ranked].tolist()) == {"lot July"}
    assert "Lot 'July'" in window.statusBar().currentMessage()


def test_cancelled_lot_leaves_the_dataset_as_it_was(qtbot, opened, lot_folder):
    window, run = opened
    before = window.state.dataset
    task = window.score_new_lot(lot_folder)
    assert not window.score_lot_action.isEnabled()  # one lot at a time
    task.cancel()
    wait_for(qtbot, task)
    assert task.state == "cancelled"
    assert window.state.dataset is before and window.state.current_run.id == run.id
    assert list_lots(before.workspace) == []
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.score_lot_action.isEnabled()


def test_unusable_lot_folder_is_reported_at_once_without_a_traceback(qtbot, opened):
    window, _run = opened
    inside = window.state.dataset.root / "train"
    assert window.score_new_lot(inside) is None  # refused before any scan or scoring
    assert "inside the dataset folder" in window.message_box.text()
    assert window.message_box.detailedText() == ""
    assert list_lots(window.state.dataset.workspace) == []


def test_overlap_with_a_lot_is_reported_before_naming(qtbot, opened, lot_folder):
    window, _run = opened
    wait_for(qtbot, window.score_new_lot(lot_folder, "July"))
    nested = lot_folder / "sub"
    nested.mkdir()
    # The check the menu flow makes right after the folder is chosen, before the name.
    assert not window.lots.check(nested)
    assert "overlaps lot 'July'" in window.message_box.text()
    assert window.message_box.detailedText() == ""
    assert not window.lots.check(lot_folder.parent / "missing")
    assert "not found" in window.message_box.text()


def test_name_dialog_offers_the_lot_folder_and_warns_about_dropped_labels(qtbot, opened,
                                                                           tmp_path):
    window, _run = opened
    labelled = make_lot(tmp_path / "lot-0712", good=3, bad=2, test=4, seed=5, first_id=900)
    dialog = window.lots.name_dialog(labelled / "test" / "all_tests")
    assert dialog.textValue() == "lot-0712"  # not "all_tests"
    assert "labels" not in dialog.labelText()  # the unlabelled part has none to lose
    dialog = window.lots.name_dialog(labelled)
    assert dialog.textValue() == "lot-0712"
    assert "5 images of this folder sit in class folders" in dialog.labelText()
    assert "will not be used" in dialog.labelText()
