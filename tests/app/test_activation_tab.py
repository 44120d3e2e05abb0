"""The Activation space tab: follows the current run, colours from the state, click and actions."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTabWidget

from app.activation_tab import NO_DATASET_MESSAGE, NO_RUN_MESSAGE, ActivationTab
from app.state import AppState
from core.activation_maps import TSNESettings
from core.dataset import open_dataset
from core.runs import VALIDATION_IDS, create_run, get_run, update_run
from core.score_store import store_scores
from core.training.config import TrainConfig

LOAD_TIMEOUT_MS = 15_000
EMBEDDING_DIM = 8


@pytest.fixture
def dataset(demo_folder):
    return open_dataset(demo_folder, workers=1)


def new_run(dataset, threshold: float = 0.5):
    """A finished run record (no checkpoint: these tests only read its stored scores)."""
    config = TrainConfig(image_size=64, epochs=1, per_class=16, device="cpu",
                         threshold=threshold)
    run_id = create_run(dataset.workspace, config, device="cpu", parameters=1)
    update_run(dataset.workspace, run_id, status="finished")
    return get_run(dataset.workspace, run_id)


def store_run_scores(dataset, run, *, seed: int = 0, ids=None):
    """Scores and embeddings that separate the labels (bad images form their own cluster)."""
    rng = np.random.default_rng(seed)
    ids = dataset.image_ids if ids is None else np.asarray(ids, dtype=np.int64)
    positions = dataset.positions(ids)
    labels = np.where(positions >= 0, dataset.labels[np.maximum(positions, 0)], -1)
    centres = rng.normal(0, 6, (3, EMBEDDING_DIM))
    embeddings = (centres[labels + 1] + rng.normal(0, 1, (len(ids), EMBEDDING_DIM)))
    scores = rng.uniform(0, 1, len(ids))
    store_scores(dataset.workspace, run.id, ids, scores, embeddings.astype(np.float32))
    return scores


@pytest.fixture
def scored(dataset):
    run = new_run(dataset, threshold=0.4)
    store_run_scores(dataset, run)
    return run


def make_tab(qtbot, state, **kwargs):
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=20, n_iter=20,
                            step_iters=10, n_jobs=1)
    tab = ActivationTab(state, tsne_settings=settings, **kwargs)
    qtbot.addWidget(tab)
    tab.resize(900, 700)
    tab.show()
    return tab


def wait_for_map(qtbot, tab, method="pca"):
    qtbot.waitUntil(lambda: tab.showing_map and tab.controller.task is None
                    and tab.points is not None
                    and np.array_equal(tab.scatter.image_ids, tab.points.image_ids)
                    and tab.scatter.method == method, timeout=LOAD_TIMEOUT_MS)


@pytest.fixture
def shown(qtbot, dataset, scored):
    """A tab showing the PCA map of a scored run."""
    state = AppState()
    state.set_dataset(dataset)
    tab = make_tab(qtbot, state)
    state.set_current_run(scored)
    wait_for_map(qtbot, tab)
    return state, tab


def test_messages_without_dataset_run_or_scores(qtbot, dataset):
    state = AppState()
    tab = make_tab(qtbot, state)
    assert not tab.showing_map and tab.message.text() == NO_DATASET_MESSAGE
    state.set_dataset(dataset)
    assert not tab.showing_map and tab.message.text() == NO_RUN_MESSAGE
    unscored = new_run(dataset)
    state.set_current_run(unscored)
    qtbot.waitUntil(lambda: "has not scored" in tab.message.text(), timeout=LOAD_TIMEOUT_MS)
    assert f"Run {unscored.id}" in tab.message.text() and not tab.showing_map
    assert tab.message.isVisible()


def test_a_scored_run_shows_every_image_with_state_colours(shown, dataset):
    state, tab = shown
    points = tab.points
    np.testing.assert_array_equal(points.image_ids, dataset.image_ids)
    np.testing.assert_array_equal(points.positions, np.arange(len(dataset.image_ids)))
    assert len(tab.scatter.coords) == len(dataset.image_ids)
    assert tab.scatter.coloring.mode == "label"
    np.testing.assert_array_equal(tab.values("label"), state.labels)
    np.testing.assert_array_equal(tab.values("score"), state.scores)
    np.testing.assert_array_equal(tab.values("prediction"), state.predictions())
    names = tab.scatter.describe_point(7)
    assert dataset.names[7] in names and f"{state.scores[7]:.3f}" in names


def test_bad_images_separate_in_the_pca_map(shown, dataset):
    _state, tab = shown
    coords = tab.scatter.coords
    bad, good = coords[dataset.labels == 1], coords[dataset.labels == 0]
    gap = np.linalg.norm(bad.mean(axis=0) - good.mean(axis=0))
    assert gap > 3 * max(bad.std(axis=0).max(), good.std(axis=0).max())


def test_split_colouring_marks_the_runs_validation_images(qtbot, dataset):
    run = new_run(dataset)
    train_ids = dataset.image_ids[dataset.splits == "train"]
    val_ids = train_ids[::5]
    np.save(dataset.workspace.run_dir(run.id) / VALIDATION_IDS, val_ids)
    store_run_scores(dataset, run)
    state = AppState()
    state.set_dataset(dataset)
    tab = make_tab(qtbot, state)
    state.set_current_run(run)
    wait_for_map(qtbot, tab)
    splits = tab.values("split")
    assert set(splits[dataset.positions(val_ids)]) == {"validation"}
    assert (splits == "validation").sum() == len(val_ids)
    assert set(splits[dataset.splits == "test"]) == {"test"}
    tab.scatter.color_combo.setCurrentIndex(tab.scatter.color_combo.findData("split"))
    counts = dict(zip(tab.scatter.coloring.names, tab.scatter.coloring.counts(), strict=True))
    # Held out by the run, not the 'val' folder: never both called "val" (issue 10, #13).
    assert counts["held out by the run"] == len(val_ids)
    assert "val" not in counts


def test_threshold_and_annotations_recolour_without_a_new_map(qtbot, shown):
    state, tab = shown
    tab.scatter.set_coloring("prediction")
    coords = tab.scatter.coords.copy()
    state.set_threshold(0.9)
    assert tab.controller.task is None  # nothing recomputed
    np.testing.assert_array_equal(tab.scatter.coords, coords)
    expected = (state.scores >= 0.9).astype(np.int64)
    np.testing.assert_array_equal(tab.scatter.coloring.classes, 1 - expected)  # 0: bad
    state.set_flagged([4, 9], True)
    tab.scatter.set_coloring("flagged")
    assert list(np.flatnonzero(tab.scatter.coloring.classes == 0)) == [4, 9]
    state.set_label([4], 1)
    assert tab.values("label")[4] == 1
    np.testing.assert_array_equal(tab.scatter.coords, coords)


def test_click_opens_the_image_and_the_current_image_is_ringed(qtbot, shown, dataset):
    state, tab = shown
    scatter = tab.scatter
    target = int(np.argmax(scatter.coords[:, 1]))  # the topmost point: nothing else near it
    pos = scatter.view_to_widget(*scatter.coords[target])
    qtbot.mouseClick(scatter.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert state.current_image == tab.points.positions[target]
    state.set_current_image(30)
    assert scatter.highlighted_id == int(dataset.image_ids[30])
    state.set_current_image(-1)
    assert scatter.highlighted_id is None


def test_selection_actions_flag_label_and_show_in_the_ranked_tab(qtbot, dataset, scored):
    state = AppState()
    state.set_dataset(dataset)
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=20, n_iter=20, n_jobs=1)
    tab = ActivationTab(state, tsne_settings=settings)
    tabs.addTab(QLabel("images"), "Images")
    tabs.addTab(tab, "Activation space")
    tabs.addTab(QLabel("ranked"), "&Ranked")
    tabs.setCurrentWidget(tab)
    tabs.show()
    state.set_current_run(scored)
    wait_for_map(qtbot, tab)
    chosen = dataset.image_ids[[3, 8, 40]]
    tab.scatter.select_ids(chosen)
    tab.scatter.action_buttons["flag"].click()
    assert list(np.flatnonzero(state.flagged)) == [3, 8, 40]
    tab.scatter.action_buttons["unflag"].click()
    assert not state.flagged.any()
    tab.scatter.action_buttons["label_bad"].click()
    assert (state.labels[[3, 8, 40]] == 1).all()
    tab.scatter.action_buttons["label_good"].click()
    assert (state.labels[[3, 8, 40]] == 0).all()
    with qtbot.waitSignal(state.list_filter_requested) as request:
        tab.scatter.action_buttons["show_in_list"].click()
    assert list(request.args[0]) == [3, 8, 40]
    assert tabs.tabText(tabs.currentIndex()) == "&Ranked"


def test_run_switch_and_rescoring_reload_but_a_repeat_does_not(qtbot, shown, dataset, scored):
    state, tab = shown
    first = tab.scatter.coords.copy()
    points = tab.points
    state.set_current_run(scored)  # the same run again: nothing reloads
    assert tab.points is points and tab.showing_map
    np.testing.assert_array_equal(tab.scatter.coords, first)

    other = new_run(dataset)
    store_run_scores(dataset, other, seed=5)
    state.set_current_run(other)
    wait_for_map(qtbot, tab)
    assert tab.points is not points
    assert not np.allclose(tab.scatter.coords, first)
    np.testing.assert_array_equal(tab.values("score"), state.scores)

    state.set_current_run(scored)
    wait_for_map(qtbot, tab)
    np.testing.assert_allclose(tab.scatter.coords, first)  # from the run's map cache
    points = tab.points
    new_scores = store_run_scores(dataset, scored, seed=9)  # re-scored
    state.reload_scores()
    wait_for_map(qtbot, tab)
    assert tab.points is not points
    np.testing.assert_allclose(tab.values("score"), new_scores.astype(np.float32))

    state.set_current_run(None)
    assert not tab.showing_map and tab.message.text() == NO_RUN_MESSAGE
    assert len(tab.scatter.image_ids) == 0


def test_embeddings_of_images_no_longer_present_are_dropped(qtbot, dataset):
    run = new_run(dataset)
    gone = int(dataset.image_ids.max()) + 1000
    ids = np.append(dataset.image_ids[:50], gone)
    store_run_scores(dataset, run, ids=ids)
    state = AppState()
    state.set_dataset(dataset)
    tab = make_tab(qtbot, state)
    state.set_current_run(run)
    wait_for_map(qtbot, tab)
    np.testing.assert_array_equal(tab.points.image_ids, dataset.image_ids[:50])
    np.testing.assert_array_equal(tab.points.positions, np.arange(50))


def test_tsne_runs_as_a_tracked_task_and_animates(qtbot, dataset, scored):
    tracked = []
    state = AppState()
    state.set_dataset(dataset)
    tab = make_tab(qtbot, state, track=tracked.append)
    state.set_current_run(scored)
    wait_for_map(qtbot, tab)
    pca = tab.scatter.coords.copy()
    frames = []
    original = tab.scatter.show_partial
    tab.scatter.show_partial = lambda coords: frames.append(coords) or original(coords)
    tab.scatter.color_combo.setCurrentIndex(tab.scatter.color_combo.findData("score"))
    tab.scatter.method_combo.setCurrentIndex(tab.scatter.method_combo.findData("tsne"))
    wait_for_map(qtbot, tab, "tsne")
    assert frames and not np.allclose(tab.scatter.coords, pca)
    assert tab.scatter.coloring.mode == "score" and tab.scatter.coloring.levels == (0.0, 1.0)
    titles = [task.title for task in tracked]
    assert any("activations" in t for t in titles) and "t-SNE map" in titles


def test_a_hidden_tab_loads_the_run_only_when_shown(qtbot, dataset, scored):
    tracked = []
    state = AppState()
    state.set_dataset(dataset)
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    tab = ActivationTab(state, track=tracked.append)
    tabs.addTab(QLabel("training"), "Training")
    tabs.addTab(tab, "Activation space")
    tabs.show()
    state.set_current_run(scored)
    qtbot.wait(50)
    assert tracked == [] and tab.points is None
    tabs.setCurrentWidget(tab)
    wait_for_map(qtbot, tab)
    assert len(tab.points.image_ids) == len(dataset.image_ids)
    assert len(tracked) == 2  # the embeddings, then the PCA map


def test_new_lots_share_one_split_colour(qtbot, dataset, scored):
    from dataclasses import replace

    splits = dataset.splits.astype(object)
    splits[:30] = "lot week 12"
    splits[30:40] = "lot week 13"
    with_lots = replace(dataset, splits=splits.astype(str))
    state = AppState()
    state.set_dataset(with_lots)
    tab = make_tab(qtbot, state)
    state.set_current_run(scored)
    wait_for_map(qtbot, tab)
    assert set(tab.values("split")[:40]) == {"lot"}
    tab.scatter.set_coloring("split")
    counts = dict(zip(tab.scatter.coloring.names, tab.scatter.coloring.counts(), strict=True))
    assert counts["new lots"] == 40 and counts["other"] == 0
