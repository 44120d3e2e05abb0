"""The image viewer's review controls: score/flag/label line, Flag and Label buttons, prev/next."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from ranked_fixtures import state_with_run

from app.image_viewer import ImageViewer
from core import annotations


@pytest.fixture
def scored(demo_copy):
    return state_with_run(demo_copy, threshold=0.5)


@pytest.fixture
def viewer(qtbot, scored):
    viewer = ImageViewer(scored[0])
    qtbot.addWidget(viewer)
    viewer.show()
    return viewer


def test_info_shows_score_call_flag_and_current_label(viewer, scored):
    state, _, scores = scored
    position = int(np.flatnonzero(state.labels == 0)[0])
    state.set_current_image(position)
    assert viewer.score_label.text() == (f"score {scores[position]:.4f}  →  "
                                         f"{'bad' if scores[position] >= 0.5 else 'good'} at "
                                         "0.500   ·   not flagged")
    assert viewer.label_chip.text() == "GOOD"
    state.set_label([position], 1)  # a relabel shows at once
    assert viewer.label_chip.text() == "BAD"
    state.set_threshold(0.0)
    assert "→  bad at 0.000" in viewer.score_label.text()


def test_flag_and_label_buttons_save_at_once(qtbot, viewer, scored):
    state = scored[0]
    state.set_current_image(5)
    image_id = int(state.dataset.image_ids[5])
    qtbot.mouseClick(viewer.flag_button, Qt.MouseButton.LeftButton)
    assert image_id in annotations.flags(state.dataset.workspace)
    assert viewer.flag_button.isChecked() and viewer.flag_button.text() == "Unflag"
    assert viewer.score_label.text().endswith("flagged") and "not" not in viewer.score_label.text()
    qtbot.mouseClick(viewer.flag_button, Qt.MouseButton.LeftButton)
    assert image_id not in annotations.flags(state.dataset.workspace)
    assert not viewer.flag_button.isChecked() and viewer.flag_button.text() == "Flag"
    qtbot.mouseClick(viewer.bad_button, Qt.MouseButton.LeftButton)
    assert annotations.user_labels(state.dataset.workspace)[image_id] == 1
    assert viewer.bad_button.isChecked() and not viewer.good_button.isChecked()
    qtbot.mouseClick(viewer.good_button, Qt.MouseButton.LeftButton)
    assert annotations.user_labels(state.dataset.workspace)[image_id] == 0
    assert viewer.good_button.isChecked() and not viewer.bad_button.isChecked()
    # Clicking the checked label again keeps it (a click sets, it does not toggle).
    qtbot.mouseClick(viewer.good_button, Qt.MouseButton.LeftButton)
    assert state.labels[5] == 0 and viewer.good_button.isChecked()


def test_previous_next_follow_the_published_list(qtbot, viewer, scored):
    state = scored[0]
    order = [40, 3, 17, 8]
    state.set_browse_order(order)
    state.set_current_image(3)
    assert viewer.browse_label.text() == "2 of 4"
    qtbot.mouseClick(viewer.next_button, Qt.MouseButton.LeftButton)
    assert state.current_image == 17
    viewer.step(1)
    assert state.current_image == 8 and not viewer.next_button.isEnabled()
    viewer.step(1)  # stays at the end
    assert state.current_image == 8
    for expected in (17, 3, 40):
        qtbot.mouseClick(viewer.previous_button, Qt.MouseButton.LeftButton)
        assert state.current_image == expected
    assert not viewer.previous_button.isEnabled()


def test_comma_and_period_step_through_the_list(qtbot, viewer, scored):
    state = scored[0]
    state.set_browse_order([9, 2, 6])
    state.set_current_image(9)
    viewer.activateWindow()  # shortcuts only fire in the active window
    qtbot.waitUntil(viewer.isActiveWindow)
    viewer.graphics.setFocus()
    # A button's shortcut animates a click: the step lands a moment later.
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_Period)
    qtbot.waitUntil(lambda: state.current_image == 2)
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: state.current_image == 6)
    qtbot.keyClick(viewer.graphics, Qt.Key.Key_Comma)
    qtbot.waitUntil(lambda: state.current_image == 2)


def test_without_a_published_list_the_fallback_order_is_used(viewer, scored):
    state = scored[0]
    grid_rows = np.array([11, 5, 30])
    viewer.set_fallback_order(lambda: grid_rows)
    state.set_current_image(5)
    viewer.step(1)
    assert state.current_image == 30
    # A published list (the list on screen) is stepped through even when it does not hold
    # the current image: stepping enters it, never another list (issue 10, defect 7).
    state.set_browse_order([1, 2])
    assert viewer.browse_label.text() == "– of 2"
    viewer.step(-1)
    assert state.current_image == 2
    # Outside every list, the dataset order is the list.
    state.set_browse_order(None)
    state.set_current_image(100)
    viewer.step(1)
    assert state.current_image == 101
    assert viewer.browse_label.text() == f"102 of {len(state.dataset.image_ids):,}"


def test_ranked_tab_drives_previous_next_in_the_window(qtbot, settings, demo_copy):
    from ranked_fixtures import scored_run

    from app.main_window import MainWindow

    window = MainWindow(settings=settings)
    window.open_workers = 1
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.open_folder(demo_copy).finished, timeout=30_000):
        pass
    run, scores = scored_run(window.state.dataset)
    window.state.set_current_run(run)
    window.tabs.setCurrentWidget(window.ranked)
    ranked = window.ranked.model.positions
    assert np.array_equal(window.state.browse_order, ranked)
    window.state.set_current_image(int(ranked[0]))
    window.viewer.step(1)
    assert window.state.current_image == ranked[1]
    assert window.ranked.table.currentIndex().row() == 1
    window.tabs.setCurrentWidget(window.grid)  # back to the grid: its order again
    assert np.array_equal(window.state.browse_order, window.grid.model.positions)
    window.grid.set_filters("bad", "all")
    bad = window.grid.model.positions
    assert np.array_equal(window.state.browse_order, bad)
    window.state.set_current_image(int(bad[0]))
    window.viewer.step(1)
    assert window.state.current_image == bad[1]
    window.close()
