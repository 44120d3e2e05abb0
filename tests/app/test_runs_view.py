"""The runs table: rows, selection <-> current run, ROC comparison and Score Now."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from scoring_fixtures import make_run

from app.runs_view import (
    COLUMN_INDEX,
    RunsView,
    duration_text,
    parameters_text,
    sampler_text,
    validation_roc,
)
from app.state import AppState
from app.workers import Task
from core import metrics
from core.dataset import open_dataset
from core.runs import create_run, get_run, save_validation_ids, update_run
from core.score_store import store_scores
from core.training.config import TrainConfig

SCORE_TIMEOUT_MS = 120_000


def run_task(fn, *args, title, on_done=None, on_cancelled=None, **kwargs):
    """MainWindow.run_task without the window."""
    task = Task(fn, *args, title=title, **kwargs)
    if on_done is not None:
        task.done.connect(on_done)
    if on_cancelled is not None:
        task.cancelled.connect(on_cancelled)
    return task.start()


@pytest.fixture
def state(qtbot, demo_folder):
    state = AppState()
    state.set_dataset(open_dataset(demo_folder, workers=1))
    return state


def add_run(dataset, *, sampler="B", per_class=5000, auc=0.9, seed=0, scores_noise=None):
    """A finished run row (no checkpoint); with scores_noise, stored scores that separate
    the classes with that much noise, and validation ids (every other labelled image)."""
    ws = dataset.workspace
    config = TrainConfig(model="stratified", sampler=sampler, per_class=per_class, epochs=20,
                         image_size=64, seed=seed)
    run_id = create_run(ws, config, device="cpu (2 threads)", parameters=3_090_321)
    update_run(ws, run_id, status="finished", val_auc=auc, escapes=3, false_calls=7,
               train_seconds=3723.0, best_epoch=12)
    if scores_noise is not None:
        labels = np.asarray(dataset.labels)
        rng = np.random.default_rng(seed)
        scores = np.clip(0.5 * (labels == 1) + rng.normal(0.25, scores_noise, len(labels)),
                         0, 1)
        n = len(labels)
        store_scores(ws, run_id, dataset.image_ids, scores, np.zeros((n, 2), np.float32))
        labelled_ids = np.asarray(dataset.image_ids)[labels >= 0]
        save_validation_ids(ws, run_id, labelled_ids[::2])
    return get_run(ws, run_id)


def cell(view, row, column):
    return view.proxy.index(row, COLUMN_INDEX[column]).data()


def test_formatting():
    run = get_run_like(sampler="B", per_class=5000)
    assert sampler_text(run) == "5000B"
    assert sampler_text(get_run_like(sampler="S", per_class=1000)) == "1000S"
    assert sampler_text(get_run_like(sampler="shuffle", per_class=1000)) == "shuffle"
    assert parameters_text(2_807_249) == "2.81 M"
    assert parameters_text(None) == ""
    assert duration_text(42) == "0:42"
    assert duration_text(3723) == "1:02:03"
    assert duration_text(None) == ""


def get_run_like(sampler, per_class):
    from core.runs import RunRecord

    return RunRecord(id=1, created_at="2024-01-01T00:00:00+00:00", model="stratified",
                     config=TrainConfig(sampler=sampler, per_class=per_class),
                     status="finished")


def test_table_shows_runs_newest_first(qtbot, state):
    older = add_run(state.dataset, per_class=1000, sampler="S")
    newer = add_run(state.dataset, auc=0.98765)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    assert view.proxy.rowCount() == 2
    assert cell(view, 0, "ID") == str(newer.id)
    assert cell(view, 1, "ID") == str(older.id)
    assert cell(view, 0, "Model") == "stratified"
    assert cell(view, 0, "Parameters") == "3.09 M"
    assert cell(view, 0, "Sampler") == "5000B"
    assert cell(view, 1, "Sampler") == "1000S"
    assert cell(view, 0, "Val AUC") == "0.9877"
    assert cell(view, 0, "Escapes") == "3"
    assert cell(view, 0, "False calls") == "7"
    assert cell(view, 0, "Time") == "1:02:03"
    assert cell(view, 0, "Device") == "cpu (2 threads)"
    assert cell(view, 0, "Status") == "finished"
    assert cell(view, 0, "Scores") == "—"
    # Sorting by AUC puts the better run first either way round.
    view.table.sortByColumn(COLUMN_INDEX["Val AUC"], Qt.SortOrder.AscendingOrder)
    assert cell(view, 0, "ID") == str(older.id)


def test_selecting_a_row_makes_the_run_current_and_back(qtbot, state):
    first = add_run(state.dataset)
    second = add_run(state.dataset)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    view.select_runs([first.id])
    assert state.current_run.id == first.id
    # Another view choosing a run moves the table's selection.
    state.set_current_run(second)
    assert view.selected_run_ids() == [second.id]
    # A new run appears on runs_changed, the selection stays.
    third = add_run(state.dataset)
    state.notify_runs_changed()
    assert view.proxy.rowCount() == 3
    assert view.selected_run_ids() == [second.id]
    assert state.current_run.id == second.id
    view.select_runs([third.id])
    assert state.current_run.id == third.id


def test_running_run_shows_live_epoch(qtbot, state):
    from core.runs import EpochRecord, record_epoch

    ws = state.dataset.workspace
    config = TrainConfig(epochs=4, image_size=64)
    run_id = create_run(ws, config, device="cpu", parameters=10)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    assert cell(view, 0, "Status") == "running · epoch 0/4"
    record_epoch(ws, EpochRecord(run_id, 1, 0.6, 0.5, 0.8, 4, 5, 100.0, 12.5))
    update_run(ws, run_id, val_auc=0.8, escapes=4, false_calls=5, best_epoch=1)
    view.refresh()
    assert cell(view, 0, "Status") == "running · epoch 1/4"
    assert cell(view, 0, "Val AUC") == "0.8000"
    assert cell(view, 0, "Time") == "0:12"
    update_run(ws, run_id, status="cancelled")  # releases the run's lock


def test_two_selected_runs_overlay_two_roc_curves(qtbot, state):
    good = add_run(state.dataset, seed=1, scores_noise=0.1)
    worse = add_run(state.dataset, seed=2, scores_noise=0.4)
    unscored = add_run(state.dataset, seed=3)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    view.select_runs([good.id, worse.id])
    curves = view.roc_curves()
    assert len(curves) == 2
    legend = [item[1].text for item in view.roc.legend.items]
    roc = validation_roc(state.dataset, state.labels, good)
    assert roc.basis == "validation"
    # The legend's AUC is the validation images' AUC of the stored scores.
    labelled = np.asarray(state.dataset.labels) >= 0
    val = np.flatnonzero(labelled)[::2]
    from core.score_store import aligned_scores

    expected = metrics.roc_auc(aligned_scores(state.dataset, good.id)[val],
                               state.labels[val])
    assert roc.auc == pytest.approx(expected)
    assert any(f"AUC {expected:.4f}" in text for text in legend)
    assert roc.images == len(val)
    view.select_runs([good.id, unscored.id])
    assert len(view.roc_curves()) == 1
    assert "no scores" in view.roc.note
    view.select_runs([unscored.id])
    assert view.roc_curves() == []
    assert "no scores" in view.roc.message.textItem.toPlainText()


def test_imported_run_roc_uses_every_labelled_image(qtbot, state):
    run = add_run(state.dataset, seed=4, scores_noise=0.2)
    (state.dataset.workspace.run_dir(run.id) / "validation_ids.npy").unlink()
    roc = validation_roc(state.dataset, state.labels, run)
    assert roc.basis == "labelled"
    assert roc.images == int((state.labels >= 0).sum())


def test_score_now_scores_the_selected_run(qtbot, state):
    run = make_run(state.dataset.workspace)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    view.select_runs([run.id])
    assert state.current_run.id == run.id and state.scores is None
    assert view.score_button.isEnabled()
    with qtbot.waitSignal(view.scoring_finished, timeout=SCORE_TIMEOUT_MS):
        view.score_button.click()
    assert cell(view, 0, "Scores") == "scored"
    assert not view.score_button.isEnabled()
    assert state.scores is not None and np.isfinite(state.scores).all()


def test_click_then_ctrl_click_compares_and_the_current_run_stays(qtbot, state):
    from PySide6.QtTest import QTest

    first = add_run(state.dataset, seed=5, scores_noise=0.1)
    second = add_run(state.dataset, seed=6, scores_noise=0.3)
    view = RunsView(state, run_task)
    qtbot.addWidget(view)
    view.resize(900, 400)
    view.show()
    qtbot.waitExposed(view)

    def click(run_id, modifier=Qt.KeyboardModifier.NoModifier):
        index = view.proxy.mapFromSource(view.model.index(view.model.row_of(run_id), 1))
        QTest.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, modifier,
                         view.table.visualRect(index).center())

    click(first.id)
    assert state.current_run.id == first.id
    assert len(view.roc_curves()) == 1
    threshold = state.threshold
    click(second.id, Qt.KeyboardModifier.ControlModifier)
    assert sorted(view.selected_run_ids()) == sorted([first.id, second.id])
    # Comparing is not switching: the threshold bar keeps showing the current run.
    assert state.current_run.id == first.id
    assert state.threshold == threshold
    assert len(view.roc_curves()) == 2
