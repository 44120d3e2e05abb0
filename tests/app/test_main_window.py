"""The main window end to end: open, browse, view, cancel, errors, recent folders, drops."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QMessageBox

from app.main_window import MainWindow

OPEN_TIMEOUT_MS = 30_000


def open_and_wait(qtbot, window, folder):
    task = window.open_folder(folder)
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=OPEN_TIMEOUT_MS):
        pass
    return task


def test_open_folder_fills_panel_grid_and_viewer(qtbot, window, demo_folder):
    task = open_and_wait(qtbot, window, demo_folder)
    assert task.state == "done"
    dataset = window.state.dataset
    assert dataset is not None and dataset.root == demo_folder.resolve()
    panel = window.dataset_panel
    counts = dataset.counts()
    assert panel.count_cell("train", "good") == counts["train"]["good"] == 144
    assert panel.count_cell("train", "bad") == counts["train"]["bad"] == 48
    assert panel.count_cell("test", "unlabelled") == 48
    assert panel.count_cell("total", "total") == 240
    assert "Kaggle" in panel.layout_label.text()
    assert panel.workspace_label.text() == str(dataset.workspace.path)
    assert window.grid.model.rowCount() == 240

    window.grid.set_filters("bad", "train")
    assert window.grid.model.rowCount() == 48
    window.grid.view.setCurrentIndex(window.grid.model.index(5))
    position = int(window.grid.model.positions[5])
    assert window.state.current_image == position
    expected = dataset.images[dataset.image_ids[position]]
    assert np.array_equal(window.viewer.shown_array, expected)
    assert np.array_equal(window.viewer.image_item.image, expected)
    assert window.viewer.name_label.text() == dataset.names[position]
    assert window.viewer.label_chip.text() == "BAD"
    assert "275 × 267 px" in window.viewer.info_label.text()
    assert demo_folder.name in window.windowTitle()


def test_viewer_zoom_fit_and_pixel_readout(qtbot, window, demo_folder):
    open_and_wait(qtbot, window, demo_folder)
    window.state.set_current_image(0)
    viewer = window.viewer
    width_before = viewer.view_box.viewRange()[0][1] - viewer.view_box.viewRange()[0][0]
    viewer.zoom(0.5)
    width_zoomed = viewer.view_box.viewRange()[0][1] - viewer.view_box.viewRange()[0][0]
    assert width_zoomed == pytest.approx(width_before / 2, rel=0.05)
    viewer.fit()
    x_range = viewer.view_box.viewRange()[0]
    assert x_range[0] <= 0 and x_range[1] >= 275
    scene_pos = viewer.view_box.mapViewToScene(QPointF(10.5, 20.5))
    viewer._on_mouse_move(scene_pos)
    value = int(viewer.shown_array[20, 10])
    assert viewer.pixel_label.text().split() == ["x", "10", "y", "20", "value", str(value)]


def _bigger_copy(demo_folder, target, copies=3):
    """A few hundred images (the demo set several times) in the same Kaggle layout."""
    for sub in ("train/good_0", "train/bad_1", "test/all_tests"):
        (target / sub).mkdir(parents=True)
        for path in (demo_folder / sub).iterdir():
            for k in range(copies):
                shutil.copyfile(path, target / sub / f"c{k}_{path.name}")
    return target


def test_cancel_keeps_the_previous_dataset(qtbot, window, demo_folder, tmp_path):
    open_and_wait(qtbot, window, demo_folder)
    previous = window.state.dataset
    window.state.set_current_image(7)
    big = _bigger_copy(demo_folder, tmp_path / "big")
    task = window.open_folder(big)
    task.progress.connect(lambda p: window.task_status.cancel_current())
    assert window.task_status.isVisible() and window.cancel_action.isEnabled()
    with qtbot.waitSignal(task.finished, timeout=OPEN_TIMEOUT_MS):
        pass
    assert task.state == "cancelled"
    assert window.state.dataset is previous
    assert window.state.current_image == 7
    assert window.grid.model.rowCount() == 240
    assert "cancelled" in window.statusBar().currentMessage()
    assert not window.task_status.isVisible() and not window.cancel_action.isEnabled()
    # Still usable: the same folder opens fine afterwards.
    open_and_wait(qtbot, window, big)
    assert len(window.state.dataset.image_ids) == 720


def test_skipped_files_are_listed(qtbot, window, demo_copy):
    broken = demo_copy / "train" / "good_0" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not really a jpeg")
    open_and_wait(qtbot, window, demo_copy)
    texts = window.dataset_panel.skipped_texts()
    assert len(texts) == 1 and texts[0].startswith("train/good_0/broken.jpg — ")
    assert window.dataset_panel.skipped_list.isVisible()
    assert "Skipped files (1)" in window.dataset_panel.skipped_title.text()
    assert window.grid.model.rowCount() == 240


def test_a_failing_open_is_reported_and_changes_nothing(qtbot, window, demo_folder, tmp_path):
    open_and_wait(qtbot, window, demo_folder)
    previous = window.state.dataset
    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    task = open_and_wait(qtbot, window, empty)
    assert task.state == "failed"
    box = window.message_box
    assert box is not None and box.isVisible()
    assert box.icon() == QMessageBox.Icon.Critical
    assert box.text() == str(task.error)
    assert window.state.dataset is previous
    box.close()


def test_not_a_folder_is_refused_with_a_message(window, tmp_path):
    assert window.open_folder(tmp_path / "missing") is None
    assert "is not a folder" in window.message_box.text()


def test_recent_folders_persist_and_missing_ones_are_removed(qtbot, settings, demo_folder,
                                                             demo_copy):
    first = MainWindow(settings=settings)
    first.open_workers = 1
    qtbot.addWidget(first)
    open_and_wait(qtbot, first, demo_folder)
    open_and_wait(qtbot, first, demo_copy)
    first.close()

    second = MainWindow(settings=settings)
    qtbot.addWidget(second)
    assert second.recent.folders() == [str(demo_copy.resolve()), str(demo_folder.resolve())]
    menu_folders = [a.data() for a in second.recent_menu.actions() if a.data()]
    assert menu_folders == second.recent.folders()

    shutil.rmtree(demo_copy)
    assert second.open_recent(str(demo_copy.resolve())) is None
    assert "no longer exists" in second.message_box.text()
    assert second.recent.folders() == [str(demo_folder.resolve())]
    second.close()


def test_recent_list_is_capped(settings, tmp_path):
    from app.settings import RecentFolders

    recent = RecentFolders(settings, limit=10)
    for i in range(12):
        recent.add(tmp_path / f"f{i}")
    recent.add(tmp_path / "f5")
    folders = recent.folders()
    assert len(folders) == 10
    assert folders[0] == str((tmp_path / "f5").resolve())
    assert folders.count(str((tmp_path / "f5").resolve())) == 1


def test_dropping_a_folder_opens_it(qtbot, window, demo_folder):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_folder))])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    qtbot.waitUntil(lambda: window.state.dataset is not None, timeout=OPEN_TIMEOUT_MS)
    assert window.state.dataset.root == demo_folder.resolve()


def test_dropping_a_file_is_refused(window, demo_folder):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_folder / "ground_truth.csv"))])
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert not enter.isAccepted()


def test_generate_demo_data_then_opens_it(qtbot, window, tmp_path):
    out = tmp_path / "demo-small"
    task = window.generate_demo_data(out, n=30, bad_fraction=0.2, seed=3, style="single")
    with qtbot.waitSignal(task.finished, timeout=60_000):
        pass
    assert task.state == "done"
    assert task.result.style == "single"
    qtbot.waitUntil(lambda: window.state.dataset is not None, timeout=OPEN_TIMEOUT_MS)
    assert len(window.state.dataset.image_ids) == 30
    written = task.result.counts  # the demo summary: what was written, per split and class
    assert window.dataset_panel.count_cell("train", "bad") == written["train"]["bad"] > 0
    assert window.dataset_panel.count_cell("test", "unlabelled") == sum(written["test"].values())


def test_window_layout_is_saved_on_close(qtbot, settings):
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.close()
    assert settings.value("window/geometry") is not None
    assert settings.value("window/state") is not None


def test_opening_a_folder_makes_its_newest_scored_run_current(qtbot, window, demo_folder):
    from scoring_fixtures import make_run

    from core.dataset import open_dataset
    from core.score_store import store_scores

    dataset = open_dataset(demo_folder, workers=1)
    n = len(dataset.image_ids)
    scored = make_run(dataset.workspace)
    store_scores(dataset.workspace, scored.id, dataset.image_ids, np.linspace(0, 1, n),
                 np.zeros((n, 2), dtype=np.float32))
    make_run(dataset.workspace, seed=1)  # newer, but it never scored: not shown
    open_and_wait(qtbot, window, demo_folder)
    assert window.state.current_run is not None
    assert window.state.current_run.id == scored.id
    assert window.state.scores is not None and len(window.state.scores) == n
