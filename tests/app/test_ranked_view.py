"""The Ranked tab: order, filters, selection filter, keyboard flags/labels, and persistence."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from ranked_fixtures import scored_run, state_with_run, validation_positions

from app.ranked_view import COLUMN, FLAGGED_ROLE, NO_RUN_MESSAGE, RankedView
from app.state import AppState
from core import annotations
from core.dataset import open_dataset
from core.ranking import FILTERS, ranked_images


@pytest.fixture
def scored(demo_copy):
    return state_with_run(demo_copy, threshold=0.5)


@pytest.fixture
def view(qtbot, scored):
    state = scored[0]
    view = RankedView(state)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    yield view
    view.thumbnails.loader.shutdown()


def shown(view) -> list[int]:
    return view.model.positions.tolist()


def test_rows_are_ranked_by_score_highest_first(view, scored):
    state, run, scores = scored
    expected = np.lexsort((state.dataset.image_ids, -scores)).tolist()
    assert shown(view) == expected
    assert shown(view) == ranked_images(state.dataset, run.id).positions.tolist()
    model = view.model
    first = expected[0]
    assert model.index(0, COLUMN["score"]).data() == f"{scores[first]:.4f}"
    assert model.index(0, COLUMN["name"]).data() == state.dataset.names[first]
    assert model.index(0, COLUMN["rank"]).data() == "1"
    assert view.stack.currentWidget() is view.table
    assert f"{len(expected):,} images" in view.count_label.text()


def test_each_filter_matches_core_ranking(view, scored):
    state, run, _ = scored
    state.set_threshold(0.42)  # not the run's: disagreements must follow the shared one
    state.set_flagged([3, 10, 11], True)
    for kind in FILTERS:
        view.set_filters(kind, "all")
        expected = ranked_images(state.dataset, run.id, filter=kind, threshold=0.42).positions
        assert shown(view) == expected.tolist(), kind
        assert len(expected) > 0, kind


def test_disagreements_follow_the_threshold(view, scored):
    state, run, _ = scored
    view.set_filters("disagreements", "all")
    for threshold in (0.3, 0.6, 0.9):
        state.set_threshold(threshold)
        labels, scores = state.labels[view.model.positions], state.scores[view.model.positions]
        assert (labels != (scores >= threshold)).all() and (labels >= 0).all()
        assert shown(view) == ranked_images(state.dataset, run.id, filter="disagreements",
                                            threshold=threshold).positions.tolist()


def test_split_filters_include_the_runs_validation_images(view, scored):
    state, run, _ = scored
    view.set_filters("all", "validation")
    assert sorted(shown(view)) == validation_positions(state.dataset).tolist()
    view.set_filters("bad", "test")
    assert shown(view) == []  # the test images are unlabelled
    view.set_filters("unlabelled", "test")
    assert shown(view) == ranked_images(state.dataset, run.id, filter="unlabelled",
                                        split="test").positions.tolist()


def test_selection_filter_shows_a_removable_chip(qtbot, view, scored):
    state = scored[0]
    view.set_filters("bad", "train")
    picked = [7, 2, 30, 2]
    state.request_list_filter(picked)
    assert view.selection_chip.isVisible()
    assert view.selection_chip.text().startswith("3 selected")
    assert "Showing the 3 selected images" in view.selection_chip.toolTip()
    assert view.kind_filter.currentData() == "all"
    assert sorted(shown(view)) == [2, 7, 30]
    assert shown(view) == sorted(shown(view), key=lambda p: -state.scores[p])
    view.set_filters("bad", "all")  # other filters narrow the selection further
    assert set(shown(view)) == {p for p in (2, 7, 30) if state.labels[p] == 1}
    qtbot.mouseClick(view.selection_chip, Qt.MouseButton.LeftButton)
    assert not view.selection_chip.isVisible()
    assert len(shown(view)) == int((state.labels == 1).sum())


def test_unscored_images_are_left_out_and_counted(qtbot, demo_copy):
    state, run, scores = state_with_run(demo_copy, scored=np.arange(0, 240, 2))
    view = RankedView(state)
    qtbot.addWidget(view)
    assert sorted(shown(view)) == list(range(0, 240, 2))
    assert "120 unscored not listed" in view.count_label.text()


def test_selecting_a_row_sets_the_current_image_and_follows_it(view, scored):
    state = scored[0]
    view.table.setCurrentIndex(view.model.index(4, COLUMN["name"]))
    assert state.current_image == view.model.position_at(4)
    target = view.model.position_at(17)
    state.set_current_image(target)
    assert view.table.currentIndex().row() == 17
    view.set_filters("bad", "all")  # the current image stays selected when it is still shown
    if state.labels[target] == 1:
        assert view.model.position_at(view.table.currentIndex().row()) == target
    else:
        assert not view.table.currentIndex().isValid()


def test_keyboard_flags_and_labels_go_to_the_database_and_advance(qtbot, view, scored):
    state = scored[0]
    dataset = state.dataset
    view.table.setFocus()

    def act_on_row(row: int, key: Qt.Key) -> int:
        view.table.setCurrentIndex(view.model.index(row, COLUMN["name"]))
        image_id = int(dataset.image_ids[view.model.position_at(row)])
        qtbot.keyClick(view.table, key)
        # Each key acts on the row and moves on, so the user keeps working down the list.
        assert view.table.currentIndex().row() == row + 1
        assert state.current_image == view.model.position_at(row + 1)
        return image_id

    image_id = act_on_row(2, Qt.Key.Key_Space)
    assert image_id in annotations.flags(dataset.workspace)
    assert view.model.index(2, COLUMN["flag"]).data(FLAGGED_ROLE) is True
    act_on_row(2, Qt.Key.Key_F)
    assert image_id not in annotations.flags(dataset.workspace)
    assert view.model.index(2, COLUMN["flag"]).data(FLAGGED_ROLE) is False

    act_on_row(2, Qt.Key.Key_G)
    assert annotations.user_labels(dataset.workspace)[image_id] == 0
    assert view.model.index(2, COLUMN["label"]).data() == "good"
    act_on_row(2, Qt.Key.Key_B)
    assert annotations.user_labels(dataset.workspace)[image_id] == 1
    assert view.model.index(2, COLUMN["label"]).data() == "bad"
    qtbot.keyClick(view.table, Qt.Key.Key_Down)
    assert state.current_image == view.model.position_at(4)


def test_home_and_end_go_to_the_first_and_last_row(qtbot, view, scored):
    state = scored[0]
    view.table.setFocus()
    view.table.setCurrentIndex(view.model.index(5, COLUMN["name"]))
    qtbot.keyClick(view.table, Qt.Key.Key_Home)
    assert view.table.currentIndex().row() == 0
    assert state.current_image == view.model.position_at(0)
    qtbot.keyClick(view.table, Qt.Key.Key_End)
    assert view.table.currentIndex().row() == view.model.rowCount() - 1


def test_labelling_in_the_unlabelled_filter_moves_to_the_next_image(qtbot, view, scored):
    state = scored[0]
    view.set_filters("unlabelled", "all")
    before = shown(view)
    view.table.setFocus()
    view.table.setCurrentIndex(view.model.index(0, COLUMN["name"]))
    qtbot.keyClick(view.table, Qt.Key.Key_B)
    assert shown(view) == before[1:]
    assert state.current_image == before[1]
    assert view.table.currentIndex().row() == 0


def test_header_click_sorts_by_that_column(view, scored):
    state = scored[0]
    view.table.sortByColumn(COLUMN["name"], Qt.SortOrder.AscendingOrder)
    names = [state.dataset.names[p] for p in shown(view)]
    assert names == sorted(names)
    view.table.sortByColumn(COLUMN["score"], Qt.SortOrder.AscendingOrder)
    assert [state.scores[p] for p in shown(view)] == sorted(state.scores)
    view.table.sortByColumn(COLUMN["label"], Qt.SortOrder.DescendingOrder)
    labels = state.labels[view.model.positions]
    assert (np.diff(labels) <= 0).all()


def test_thumbnails_arrive_lazily(qtbot, view):
    cell = view.model.index(0, COLUMN["thumbnail"])
    cell.data(Qt.ItemDataRole.DecorationRole)  # asks the loader
    qtbot.waitUntil(lambda: isinstance(cell.data(Qt.ItemDataRole.DecorationRole), QPixmap),
                    timeout=5000)


def test_without_run_or_scores_the_view_says_what_to_do(qtbot, demo_copy):
    from scoring_fixtures import make_run

    state = AppState()
    view = RankedView(state)
    qtbot.addWidget(view)
    assert view.stack.currentWidget() is view.empty_label
    state.set_dataset(open_dataset(demo_copy, workers=1))
    assert view.empty_label.text() == NO_RUN_MESSAGE
    run = make_run(state.dataset.workspace)
    state.set_current_run(run)
    assert f"Run {run.id} has not scored" in view.empty_label.text()
    assert view.model.rowCount() == 0


def test_flags_and_labels_survive_a_new_window(qtbot, settings, demo_copy):
    from app.main_window import MainWindow
    from core.runs import get_run

    first = MainWindow(settings=settings)
    first.open_workers = 1
    qtbot.addWidget(first)
    first.show()
    first.activateWindow()  # window shortcuts live (the viewer's F = Fit): F must still flag
    qtbot.waitUntil(first.isActiveWindow)
    with qtbot.waitSignal(first.open_folder(demo_copy).finished, timeout=30_000):
        pass
    run, _ = scored_run(first.state.dataset)
    first.state.set_current_run(run)
    first.tabs.setCurrentWidget(first.ranked)
    ranked = first.ranked
    ranked.table.setFocus()
    ranked.table.setCurrentIndex(ranked.model.index(0, COLUMN["name"]))
    flagged_position = ranked.model.position_at(0)
    qtbot.keyClick(ranked.table, Qt.Key.Key_F)
    ranked.table.setCurrentIndex(ranked.model.index(1, COLUMN["name"]))
    relabelled = ranked.model.position_at(1)
    qtbot.keyClick(ranked.table, Qt.Key.Key_G)
    first.close()

    second = MainWindow(settings=settings)
    second.open_workers = 1
    qtbot.addWidget(second)
    with qtbot.waitSignal(second.open_folder(demo_copy).finished, timeout=30_000):
        pass
    state = second.state
    state.set_current_run(get_run(state.dataset.workspace, run.id))
    assert np.flatnonzero(state.flagged).tolist() == [flagged_position]
    assert state.labels[relabelled] == 0
    row = second.ranked.model.row_of(flagged_position)
    assert second.ranked.model.index(row, COLUMN["flag"]).data(FLAGGED_ROLE) is True
    assert second.ranked.model.index(second.ranked.model.row_of(relabelled),
                                     COLUMN["label"]).data() == "good"
    state.set_current_image(flagged_position)
    assert second.viewer.flag_button.isChecked()
    second.close()
