"""Regression tests for the GUI defects of issue 10 that came from views keeping their own
copies of the session (labels, counts, selection, threshold, browse list, split names)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from ranked_fixtures import scored_run, state_with_run

from app.activation_tab import ActivationTab
from app.dataset_panel import DatasetPanel
from app.ranked_view import RankedView
from app.runs_view import ROC_MIN_HEIGHT, RocPlot, validation_roc
from app.scatter_view import ActivationScatter
from app.state import AppState
from app.threshold_bar import ThresholdBar
from app.thumbnail_grid import LABEL_ROLE, ThumbnailGrid
from core import annotations
from core.dataset import open_dataset
from core.ranking import filter_mask


@pytest.fixture
def scored(demo_copy):
    return state_with_run(demo_copy)


def _window(qtbot, settings, folder):
    from app.main_window import MainWindow

    window = MainWindow(settings=settings)
    window.open_workers = 1
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.open_folder(folder).finished, timeout=30_000):
        pass
    return window


# -- one source for labels: every view follows a relabel ---------------------------------------

def test_the_grid_shows_a_relabel_at_once(qtbot, scored):
    state = scored[0]
    grid = ThumbnailGrid(state)
    qtbot.addWidget(grid)
    good = int(np.flatnonzero(state.labels == 0)[0])
    bad_before = int((state.labels == 1).sum())
    grid.set_filters("bad", "all")
    state.set_label([good], 1)
    assert grid.model.row_of(good) >= 0  # it joined the "Bad" filter
    assert grid.model.index(grid.model.row_of(good)).data(LABEL_ROLE) == 1
    assert grid.class_filter.itemText(grid.class_filter.findData("bad")) == \
        f"Bad ({bad_before + 1:,})"
    state.undo()
    assert grid.model.row_of(good) < 0


def test_counts_follow_a_relabel_and_the_threshold(qtbot, settings, demo_copy):
    # Defect 6: "240 bad" stayed in the Dataset panel and status bar after a relabel, and
    # the Show menu said "Disagreements (41)" while the list held 286.
    window = _window(qtbot, settings, demo_copy)
    state = window.state
    run, _ = scored_run(state.dataset)
    state.set_current_run(run)
    panel: DatasetPanel = window.dataset_panel
    bad = state.label_counts()["bad"]
    good = int(np.flatnonzero(state.labels == 0)[0])
    split = str(state.dataset.splits[good])
    bad_in_split = panel.count_cell(split, "bad")
    state.set_label([good], 1)
    assert window.summary_label.text().endswith(f"{bad + 1:,} bad")
    assert panel.count_cell(split, "bad") == bad_in_split + 1
    ranked: RankedView = window.ranked
    combo = ranked.kind_filter
    for threshold in (0.2, 0.8):
        state.set_threshold(threshold)
        expected = int(filter_mask("disagreements", state.labels, state.predictions(),
                                   state.flagged).sum())
        assert combo.itemText(combo.findData("disagreements")).endswith(f"({expected:,})")
    ranked.set_filters("disagreements", "all")
    assert ranked.model.rowCount() == expected
    window.close()


# -- the threshold is kept per run -------------------------------------------------------------

def test_the_threshold_is_saved_and_restored_with_the_run(qtbot, settings, demo_copy):
    # Defect 5: 0.300 set, quit, reopen: 0.500, and a later export used 0.5.
    window = _window(qtbot, settings, demo_copy)
    run, _ = scored_run(window.state.dataset, threshold=0.5)
    window.state.set_current_run(run)
    window.threshold_bar.spin.setValue(0.3)
    window.close()
    again = _window(qtbot, settings, demo_copy)
    assert again.state.current_run.id == run.id
    assert again.state.threshold == pytest.approx(0.3)
    assert again.threshold_bar.spin.value() == pytest.approx(0.3)
    again.close()


def test_a_slider_drag_writes_the_threshold_once_after_it_stops(qtbot, scored):
    from core.session import saved_threshold

    state, run, _ = scored
    workspace = state.dataset.workspace
    for value in np.linspace(0.6, 0.7, 20):
        state.set_threshold(float(value))
    assert saved_threshold(workspace, run) == pytest.approx(0.5)  # not yet: still moving
    qtbot.waitUntil(lambda: saved_threshold(workspace, run) == pytest.approx(0.7), timeout=3000)


# -- previous/next step through the list on screen ---------------------------------------------

def test_the_viewer_steps_through_the_list_on_screen(qtbot, settings, demo_copy):
    # Defect 7: Ranked -> Disagreements (286 rows) and the panel read "118 of 240",
    # stepping through the Images tab's Bad filter.
    window = _window(qtbot, settings, demo_copy)
    state = window.state
    run, _ = scored_run(state.dataset)
    state.set_current_run(run)
    window.grid.set_filters("bad", "all")
    bad = window.grid.model.positions
    window.tabs.setCurrentWidget(window.ranked)
    window.ranked.set_filters("disagreements", "all")
    rows = window.ranked.model.positions
    outside = int(np.setdiff1d(bad, rows)[0])  # current image: in the grid's list only
    state.set_current_image(outside)
    assert window.viewer.browse_label.text() == f"– of {len(rows):,}"
    window.viewer.step(1)
    assert state.current_image == rows[0]
    window.viewer.step(1)
    assert state.current_image == rows[1]
    assert window.viewer.browse_label.text() == f"2 of {len(rows):,}"
    window.close()


# -- keyboard ----------------------------------------------------------------------------------

def test_enter_in_the_escape_budget_sets_the_threshold(qtbot, scored):
    state = scored[0]
    bar = ThresholdBar(state)
    qtbot.addWidget(bar)
    bar.max_escapes_spin.setValue(0)
    expected = bar.validation.threshold_for(0)
    assert expected is not None and expected != pytest.approx(state.threshold)
    qtbot.keyClick(bar.max_escapes_spin, Qt.Key.Key_Return)
    assert state.threshold == pytest.approx(expected)


def test_ctrl_z_undoes_flags_and_relabels(qtbot, settings, demo_copy):
    window = _window(qtbot, settings, demo_copy)
    state = window.state
    ids = state.dataset.image_ids
    assert not window.undo_action.isEnabled()
    good = int(np.flatnonzero(state.labels == 0)[0])
    state.set_flagged([3], True)
    state.set_label([good], 1)
    assert window.undo_action.isEnabled()
    window.undo_action.trigger()
    assert state.labels[good] == 0 and int(ids[good]) not in annotations.user_labels(
        state.dataset.workspace)
    window.undo_action.trigger()
    assert not state.flagged[3] and annotations.flags(state.dataset.workspace) == {}
    assert not window.undo_action.isEnabled()
    assert window.undo_action.shortcut().toString() == "Ctrl+Z"
    window.close()


def test_f_flags_the_selection_in_activation_space(qtbot, scored):
    state = scored[0]
    tab = ActivationTab(state)
    qtbot.addWidget(tab)
    state.set_selection([4, 9])
    qtbot.keyClick(tab, Qt.Key.Key_F)
    assert state.flagged[[4, 9]].all() and state.flagged.sum() == 2
    qtbot.keyClick(tab, Qt.Key.Key_F)  # all flagged: F unflags them
    assert not state.flagged.any()
    state.clear_selection()
    state.set_current_image(7)
    qtbot.keyClick(tab, Qt.Key.Key_F)
    assert state.flagged[7] and state.flagged.sum() == 1


# -- the selection follows its images ----------------------------------------------------------

def test_a_selection_survives_new_points_by_image_id(qtbot):
    # Defect 3: after Score New Lot the map said "234 selected" but "Show in list" showed 0.
    scatter = ActivationScatter()
    qtbot.addWidget(scatter)
    ids = np.arange(10, 30, dtype=np.int64)
    scatter.set_points(np.random.default_rng(0).normal(size=(20, 2)), ids)
    scatter.select_ids([12, 15, 20])
    grown = np.concatenate([np.arange(0, 5), ids])  # new lot images sort first
    scatter.set_points(np.random.default_rng(1).normal(size=(25, 2)), grown)
    assert sorted(scatter.selected_ids().tolist()) == [12, 15, 20]
    assert scatter.selection_label.text() == "3 selected"
    scatter.set_points(np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    assert scatter.selection_label.text() == "No selection"
    assert not any(b.isEnabled() for b in scatter.action_buttons.values())


def test_a_grown_dataset_keeps_the_selection_for_show_in_list(qtbot, demo_copy):
    state, _run, _ = state_with_run(demo_copy)
    ranked = RankedView(state)
    qtbot.addWidget(ranked)
    chosen = [3, 8, 40]
    chosen_ids = state.dataset.image_ids[chosen]
    state.set_selection(chosen)
    state.replace_dataset(open_dataset(demo_copy, workers=1))
    assert sorted(state.dataset.image_ids[state.selection].tolist()) == sorted(
        chosen_ids.tolist())
    state.request_list_filter(state.selection)
    assert ranked.model.rowCount() == 3


# -- split names -------------------------------------------------------------------------------

def test_one_name_per_split_in_every_view(qtbot, scored):
    # Defect 13: "Val" and "Validation (held out)" side by side; "split train" for an image
    # the run held out.
    from ranked_fixtures import validation_positions

    from app.image_viewer import ImageViewer

    state, run, _ = scored
    ranked = RankedView(state)
    grid = ThumbnailGrid(state)
    viewer = ImageViewer(state)
    for widget in (ranked, grid, viewer):
        qtbot.addWidget(widget)
    names = [ranked.split_filter.itemText(i) for i in range(ranked.split_filter.count())]
    assert "Val" not in names and "Validation (held out)" not in names
    assert "Held out by the run" in names
    assert any(text.startswith("Val folder") for text in
               (grid.split_filter.itemText(i) for i in range(grid.split_filter.count())))
    held = int(validation_positions(state.dataset)[0])
    state.set_current_image(held)
    assert f"held out by run {run.id}" in viewer.info_label.text()


# -- comparing ROC curves ----------------------------------------------------------------------

def test_the_roc_legend_sits_under_the_curves(qtbot, scored):
    # Defect 16: the ROC plot was ~100 px tall and its legend covered the curves.
    state, run, _ = scored
    plot = RocPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 120)
    plot.show()
    qtbot.waitExposed(plot)
    roc = validation_roc(state.dataset, state.labels, run)
    plot.show_curves([(f"Run {i}", roc) for i in range(4)])
    assert plot.height() >= ROC_MIN_HEIGHT
    assert len(plot.legend.items) == 4

    def legend_below_the_plot_area() -> bool:  # not over the curves (once laid out)
        view_box = plot.getPlotItem().vb.sceneBoundingRect()
        legend = plot.legend.sceneBoundingRect()
        return legend.height() > 0 and legend.top() >= view_box.bottom()

    qtbot.waitUntil(legend_below_the_plot_area, timeout=3000)


def test_a_state_without_dataset_has_no_selection():
    state = AppState()
    assert len(state.selection) == 0
    state.clear_selection()


def test_show_in_list_after_score_new_lot_shows_the_selection(qtbot, settings, tmp_path):
    # Defect 3, the whole way: lasso, Score New Lot, "Show in list".
    from scoring_fixtures import make_lot, make_run

    from core.scoring import score_dataset

    window = _window(qtbot, settings, make_lot(tmp_path / "data"))
    state = window.state
    run = make_run(state.dataset.workspace)
    score_dataset(state.dataset, run, device="cpu")
    state.set_current_run(run)
    window.tabs.setCurrentWidget(window.activation)
    tab, scatter = window.activation, window.activation.scatter

    def map_shown() -> bool:
        return (tab.showing_map and tab.controller.task is None and tab.points is not None
                and np.array_equal(scatter.image_ids, tab.points.image_ids))

    qtbot.waitUntil(map_shown, timeout=60_000)
    chosen = state.dataset.image_ids[[1, 4, 6, 9]]
    scatter.select_ids(chosen)
    assert sorted(state.dataset.image_ids[state.selection].tolist()) == sorted(chosen.tolist())
    lot = make_lot(tmp_path / "lot", good=0, bad=0, test=5, seed=3, first_id=500)
    with qtbot.waitSignal(window.score_new_lot(lot, "July").finished, timeout=60_000):
        pass
    window.tabs.setCurrentWidget(window.activation)
    qtbot.waitUntil(lambda: map_shown() and len(scatter.image_ids) == len(state.dataset),
                    timeout=60_000)
    assert scatter.selection_label.text() == "4 selected"
    scatter.action_buttons["show_in_list"].click()
    assert window.tabs.currentWidget() is window.ranked
    assert window.ranked.model.rowCount() == 4
    window.close()
