"""The workstation end to end, as a user drives it: the real MainWindow, offscreen.

Open a folder, train a tiny run from the Training tab, see it in the runs table, sort the
ranked list, compute PCA and t-SNE maps, click a point to open its image, lasso points and
flag them, export the flagged list through the export dialog and read it back; then close
the window, open the folder in a new one, select the run and find the flags still there.
"""

from __future__ import annotations

import csv
import time

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QToolButton

from app.main_window import MainWindow
from core.activation_maps import TSNESettings, points_in_polygon

OPEN_TIMEOUT_MS = 30_000
TRAIN_TIMEOUT_MS = 240_000  # torch import + a one-epoch run + scoring 240 images, 2 busy cores
MAP_TIMEOUT_MS = 60_000
MOVE_INTERVAL_S = 0.012  # pyqtgraph drops mouse moves closer than 10 ms apart
# Few iterations: the map only has to finish, not to be pretty.
TSNE = TSNESettings(perplexity=15, early_exaggeration_iter=50, n_iter=100, step_iters=25,
                    n_jobs=1)


def open_folder(qtbot, window, folder) -> None:
    window.open_workers = 1  # in-process decoding: fast for 240 images, no spawned pool
    task = window.open_folder(folder)
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=OPEN_TIMEOUT_MS):
        pass
    assert task.state == "done" and window.state.dataset is not None


def new_window(qtbot, settings) -> MainWindow:
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(1480, 920)
    window.show()
    qtbot.waitExposed(window)
    return window


def train_tiny_run(qtbot, window) -> int:
    """Set a tiny config in the Training tab's form, press Start, wait for train + score."""
    panel = window.training_panel
    window.tabs.setCurrentWidget(panel)
    form = panel.form
    qtbot.waitUntil(lambda: form.hardware is not None, timeout=TRAIN_TIMEOUT_MS)
    fields = form.widgets
    fields["model"].setCurrentIndex(fields["model"].findData("designed_resnet"))
    fields["image_size"].setValue(64)
    fields["epochs"].setValue(1)
    fields["per_class"].setValue(16)
    fields["batch_size"].setValue(16)
    fields["device"].setCurrentIndex(fields["device"].findData("cpu"))
    config = form.config()
    assert (config.image_size, config.epochs, config.per_class) == (64, 1, 16)
    with qtbot.waitSignal(panel.run_completed, timeout=TRAIN_TIMEOUT_MS) as completed:
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        assert panel.busy
    run_id = completed.args[0]
    qtbot.waitUntil(lambda: not panel.busy, timeout=10_000)
    return run_id


def click_header(qtbot, table, column: int) -> None:
    header = table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(x, header.height() // 2))


def mouse(widget, kind: str, pos: QPoint) -> None:
    """One mouse event with the left button held (QTest's moves carry no held buttons)."""
    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}
    left = Qt.MouseButton.LeftButton
    held = Qt.MouseButton.NoButton if kind == "release" else left
    local = QPointF(pos)
    event = QMouseEvent(types[kind], local, widget.mapToGlobal(local),
                        left if kind != "move" else Qt.MouseButton.NoButton, held,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def draw_lasso(scatter, polygon: np.ndarray) -> np.ndarray:
    """Drag the mouse along ``polygon`` (data coordinates); returns it as drawn (pixels)."""
    # Let pending layout changes land first (a new image in the viewer dock may resize the
    # map), so the screen positions below stay those of the data points during the drag.
    QApplication.processEvents()
    port = scatter.plot_widget.viewport()
    screen = [scatter.view_to_widget(x, y) for x, y in polygon]
    mouse(port, "press", screen[0])
    for point in screen[1:]:
        time.sleep(MOVE_INTERVAL_S)
        mouse(port, "move", point)
    mouse(port, "release", screen[-1])
    QApplication.processEvents()
    view_box = scatter.view_box
    return np.array([(p.x(), p.y()) for p in (
        view_box.mapSceneToView(scatter.plot_widget.mapToScene(s)) for s in screen)])


def lasso_around_right_side(coords: np.ndarray) -> np.ndarray:
    """A many-vertex polygon around the points right of the 70th x percentile."""
    (x0, y0), (x1, y1) = coords.min(axis=0), coords.max(axis=0)
    left = np.quantile(coords[:, 0], 0.7)
    pad_x, pad_y = 0.01 * (x1 - x0), 0.01 * (y1 - y0)
    corners = np.array([(left, y0 - pad_y), (x1 + pad_x, y0 - pad_y), (x1 + pad_x, y1 + pad_y),
                        (left, y1 + pad_y), (left, y0 - pad_y)])
    # Points along each edge, so the drag is a path of many small moves like a hand's.
    return np.concatenate([np.linspace(a, b, 8, endpoint=False)
                           for a, b in zip(corners[:-1], corners[1:], strict=True)])


def wait_for_map(qtbot, tab, method: str) -> None:
    qtbot.waitUntil(lambda: tab.showing_map and tab.controller.task is None
                    and tab.points is not None and tab.scatter.method == method
                    and np.array_equal(tab.scatter.image_ids, tab.points.image_ids),
                    timeout=MAP_TIMEOUT_MS)


def test_train_rank_explore_flag_export_and_reopen(qtbot, settings, demo_copy, tmp_path):
    window = new_window(qtbot, settings)
    open_folder(qtbot, window, demo_copy)
    state = window.state
    dataset = state.dataset
    n = len(dataset.image_ids)

    # -- train a tiny run from the Training tab; it lands in the runs table, scored ------
    run_id = train_tiny_run(qtbot, window)
    runs_view = window.training_panel.runs_view
    qtbot.waitUntil(lambda: runs_view.model.rowCount() == 1, timeout=10_000)
    row = runs_view.row_for(run_id)
    assert row is not None and row.run.status == "finished" and row.run.val_auc is not None
    assert state.current_run is not None and state.current_run.id == run_id
    assert state.scores is not None and np.isfinite(state.scores).all()

    # -- the ranked list: highest score first; a header click sorts the other way ---------
    from app.ranked_view import COLUMN

    ranked = window.ranked
    window.tabs.setCurrentWidget(ranked)
    qtbot.waitUntil(lambda: ranked.model.rowCount() == n, timeout=10_000)
    first = state.scores[ranked.model.positions]
    assert (np.diff(first) <= 0).all()
    click_header(qtbot, ranked.table, COLUMN["score"])
    assert (np.diff(state.scores[ranked.model.positions]) >= 0).all()
    click_header(qtbot, ranked.table, COLUMN["score"])
    assert (np.diff(state.scores[ranked.model.positions]) <= 0).all()

    # -- the activation space: PCA at once, then t-SNE --------------------------------------
    tab = window.activation
    tab.controller.settings = TSNE
    window.tabs.setCurrentWidget(tab)
    wait_for_map(qtbot, tab, "pca")
    scatter = tab.scatter
    assert len(scatter.coords) == n
    np.testing.assert_array_equal(tab.points.image_ids, dataset.image_ids)
    pca = scatter.coords.copy()
    scatter.method_combo.setCurrentIndex(scatter.method_combo.findData("tsne"))
    wait_for_map(qtbot, tab, "tsne")
    tsne = scatter.coords.copy()
    assert not np.allclose(tsne, pca) and np.isfinite(tsne).all()
    scatter.color_combo.setCurrentIndex(scatter.color_combo.findData("score"))
    assert scatter.coloring.mode == "score"

    # -- click a point: the viewer shows that image ------------------------------------------
    target = int(np.argmax(tsne[:, 1]))  # the topmost point: nothing else under the cursor
    QApplication.processEvents()  # pending layout changes first (see draw_lasso)
    qtbot.mouseClick(scatter.plot_widget.viewport(), Qt.MouseButton.LeftButton,
                     pos=scatter.view_to_widget(*tsne[target]))
    position = int(tab.points.positions[target])
    assert state.current_image == position
    np.testing.assert_array_equal(window.viewer.shown_array,
                                  dataset.images[dataset.image_ids[position]])
    assert window.viewer.name_label.text() == dataset.names[position]
    assert scatter.highlighted_id == int(dataset.image_ids[position])

    # -- lasso points and flag them -----------------------------------------------------------
    qtbot.mouseClick(scatter.findChild(QToolButton, "scatterMode_lasso"),
                     Qt.MouseButton.LeftButton)
    assert scatter.selection_mode == "lasso"
    drawn = draw_lasso(scatter, lasso_around_right_side(tsne))
    lassoed = np.flatnonzero(points_in_polygon(tsne, drawn))
    assert 10 < len(lassoed) < n
    np.testing.assert_array_equal(np.sort(scatter.selected_ids()),
                                  np.sort(tab.points.image_ids[lassoed]))
    qtbot.mouseClick(scatter.action_buttons["flag"], Qt.MouseButton.LeftButton)
    flagged_positions = np.sort(tab.points.positions[lassoed])
    np.testing.assert_array_equal(np.flatnonzero(state.flagged), flagged_positions)
    np.testing.assert_array_equal(tsne, scatter.coords)  # flagging recomputes nothing

    # -- export the flagged list through the export dialog and read it back ----------------
    window.export_action.trigger()  # File > Export… opens the dialog without blocking
    dialog = window.export_dialog
    assert dialog.isVisible()
    dialog.set_kind("flagged")
    dialog.include_predicted_check.setChecked(False)  # just the user's flags
    out = tmp_path / "flagged.csv"
    dialog.set_path(out)
    task = dialog.export()
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=30_000):
        pass
    assert task.state == "done", dialog.status_label.text()
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["id"] for r in rows) == sorted(dataset.ids[p] for p in flagged_positions)
    assert all(r["flagged_at"] and r["run"] == str(run_id) for r in rows)
    exported_scores = [float(r["score"]) for r in rows]
    assert exported_scores == sorted(exported_scores, reverse=True)
    dialog.close()

    # -- close; a new window on the same folder finds the run and the flags ----------------
    window.close()
    again = new_window(qtbot, settings)
    open_folder(qtbot, again, demo_copy)
    runs_view = again.training_panel.runs_view
    qtbot.waitUntil(lambda: runs_view.model.rowCount() == 1, timeout=10_000)
    runs_view.select_runs([run_id])
    assert again.state.current_run is not None and again.state.current_run.id == run_id
    np.testing.assert_array_equal(np.flatnonzero(again.state.flagged), flagged_positions)
    tab = again.activation
    tab.controller.settings = TSNE
    again.tabs.setCurrentWidget(tab)
    wait_for_map(qtbot, tab, "pca")
    np.testing.assert_array_equal(np.flatnonzero(tab.values("flagged")), flagged_positions)
    tab.scatter.method_combo.setCurrentIndex(tab.scatter.method_combo.findData("tsne"))
    wait_for_map(qtbot, tab, "tsne")  # from the run's map cache: the same map as before
    np.testing.assert_allclose(tab.scatter.coords, tsne)
    again.close()
