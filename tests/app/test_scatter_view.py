"""The activation-space scatter: colouring, click, hover, lasso / rectangle selection, actions."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QPainter
from PySide6.QtWidgets import QApplication

from app.map_controller import MapController
from app.scatter_items import FastScatter
from app.scatter_view import CATEGORIES, SCORE_BINS, ActivationScatter
from core.activation_maps import MapCache, TSNESettings, points_in_polygon

N = 500
MOVE_INTERVAL_S = 0.012


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [6.0, 1.0], [0.0, 7.0]])
    coords = (centres[np.arange(N) % 3] + rng.normal(0, 1.2, (N, 2))).astype(np.float32)
    ids = (np.arange(N) * 7 + 100).astype(np.int64)  # ids differ from positions on purpose
    labels = rng.choice(np.array([1, 0, -1], dtype=np.int8), N, p=[0.2, 0.6, 0.2])
    scores = rng.uniform(0, 1, N)
    scores[:5] = np.nan  # not scored
    return coords, ids, labels, scores


@pytest.fixture
def view(qtbot, data):
    coords, ids, labels, scores = data
    widget = ActivationScatter()
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_points(coords, ids, names=[f"img_{i}.png" for i in ids])
    widget.set_coloring("label", labels)
    widget.set_values("score", scores)
    QApplication.processEvents()
    return widget


def mouse(widget, kind, pos, button=Qt.MouseButton.LeftButton,
          modifiers=Qt.KeyboardModifier.NoModifier):
    """Send one mouse event to the plot's viewport (QTest's moves carry no held buttons)."""
    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}
    held = Qt.MouseButton.NoButton if kind == "release" else button
    local = QPointF(pos)
    event = QMouseEvent(types[kind], local, widget.mapToGlobal(local),
                        button if kind != "move" else Qt.MouseButton.NoButton, held, modifiers)
    QApplication.sendEvent(widget, event)


def drag_path(view, points, modifiers=Qt.KeyboardModifier.NoModifier):
    """Press at the first data point, move through the rest, release at the last.

    The release comes at the last move's position, so the drawn outline is the full path.
    """
    port = view.plot_widget.viewport()
    screen = [view.view_to_widget(x, y) for x, y in points]
    mouse(port, "press", screen[0], modifiers=modifiers)
    for p in screen[1:]:
        # pyqtgraph drops mouse moves closer than 10 ms apart (its mouseRateLimit).
        time.sleep(MOVE_INTERVAL_S)
        mouse(port, "move", p, modifiers=modifiers)
    mouse(port, "release", screen[-1], modifiers=modifiers)
    QApplication.processEvents()


# -- points and colouring ------------------------------------------------------------------

def test_set_points_draws_every_point_once(view, data):
    coords, ids, *_ = data
    x, y = view.points_item.getData()
    assert len(x) == N
    # Drawing order differs from input order; the set of positions is the same.
    drawn = sorted(zip(x.round(4), y.round(4), strict=True))
    given = sorted(zip(coords[:, 0].astype(float).round(4), coords[:, 1].astype(float).round(4),
                       strict=True))
    assert drawn == given
    np.testing.assert_array_equal(view.image_ids, ids)


@pytest.mark.parametrize("mode, make_values", [
    ("label", lambda rng: rng.choice([1, 0, -1], N)),
    ("prediction", lambda rng: rng.choice([1, 0, -1], N)),
    ("flagged", lambda rng: rng.random(N) < 0.1),
    ("split", lambda rng: rng.choice(np.array(["train", "val", "test", "unlabelled"]), N)),
])
def test_categorical_colourings_put_each_point_in_its_class(view, mode, make_values):
    values = make_values(np.random.default_rng(1))
    view.set_coloring(mode, values)
    coloring = view.coloring
    assert coloring.mode == mode and view.color_mode == mode
    for index, category in enumerate(CATEGORIES[mode]):
        expected = (values.astype(bool) == category.value) if mode == "flagged" \
            else values == category.value
        np.testing.assert_array_equal(coloring.classes == index, expected)
    # The scatter item uses the shared brush objects, one per class, nothing else.
    used = {id(b) for b in view.points_item.data["brush"]}
    assert used <= {id(b) for b in coloring.brushes}
    # One legend row per class present, with its count.
    texts = view.legend.texts()
    for name, count in zip(coloring.names, coloring.counts(), strict=True):
        if count:
            assert any(t.startswith(name) and f"{count:,}" in t for t in texts)
    assert not view.color_bar.isVisible()


def test_rare_classes_are_drawn_on_top(view, data):
    *_, labels, _scores = data
    brushes = view.points_item.data["brush"]
    bad = view.coloring.brushes[0]
    # With 'label' colouring the bad points come last in drawing order.
    n_bad = int((labels == 1).sum())
    assert all(b is bad for b in brushes[-n_bad:])


def test_score_colouring_bins_into_shared_brushes_with_a_colour_bar(view, data):
    *_, scores = data
    view.set_coloring("score")  # values given earlier through set_values
    coloring = view.coloring
    assert len(coloring.brushes) == SCORE_BINS + 1
    finite = np.isfinite(scores)
    np.testing.assert_array_equal(coloring.classes[~finite], SCORE_BINS)
    expected_bins = np.minimum((scores[finite] * SCORE_BINS).astype(int), SCORE_BINS - 1)
    np.testing.assert_array_equal(coloring.classes[finite], expected_bins)
    assert coloring.levels == (0.0, 1.0)
    assert view.color_bar.isVisible()
    assert len({id(b) for b in view.points_item.data["brush"]}) <= SCORE_BINS + 1
    # Back to a categorical mode: the colour bar goes, the legend comes back.
    view.set_coloring("label")
    assert not view.color_bar.isVisible() and view.legend.isVisible()


def test_combo_asks_for_values_it_does_not_have(view, qtbot):
    with qtbot.waitSignal(view.coloring_requested) as signal:
        view.color_combo.setCurrentIndex(view.color_combo.findData("flagged"))
    assert signal.args == ["flagged"]
    assert view.coloring.names == ["no values"]  # grey until the values come


def test_new_points_ask_for_the_current_modes_values(qtbot):
    widget = ActivationScatter()
    qtbot.addWidget(widget)
    requests = []
    widget.coloring_requested.connect(requests.append)
    # The owner answers the request at once, the way the main window will.
    widget.coloring_requested.connect(
        lambda mode: widget.set_coloring(mode, np.zeros(len(widget.image_ids), dtype=int)))
    widget.set_points(np.zeros((4, 2)), np.arange(4))
    assert requests == ["label"] and widget.coloring.counts()[1] == 4  # all "good"
    widget.set_points(np.ones((4, 2)), np.arange(4))  # same ids: values kept, no request
    assert requests == ["label"]


def test_wrong_inputs_are_refused_with_a_message(view):
    with pytest.raises(ValueError, match="unknown colour mode"):
        view.set_coloring("colour")
    with pytest.raises(ValueError, match="values for"):
        view.set_coloring("label", np.zeros(3))
    with pytest.raises(ValueError, match="coordinates for"):
        view.set_points(np.zeros((3, 2)), np.arange(4))
    with pytest.raises(ValueError, match="unique"):
        view.set_points(np.zeros((3, 2)), np.array([1, 1, 2]))


def _render(item, x, y, size=(120, 90)) -> QImage:
    plot = pg.PlotWidget(background="k")
    plot.resize(*size)
    plot.addItem(item)
    plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
    plot.getPlotItem().hideAxis("left")
    plot.getPlotItem().hideAxis("bottom")
    image = QImage(*size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    plot.render(painter)
    painter.end()
    return image


def test_fast_brush_path_renders_exactly_like_pyqtgraphs_own(qtbot):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0.05, 0.95, (2, 300))
    palette = [pg.mkBrush(c) for c in ("#d64545", "#2e9e5b", "#8a94a3")]
    classes = rng.integers(0, 3, 300)
    fast = FastScatter(pxMode=True, pen=None, size=5)
    assert fast.fast
    fast.set_points(x, y, classes, palette)
    reference = pg.ScatterPlotItem(pxMode=True, pen=None, size=5)
    reference.setData(x=x, y=y, brush=[palette[c] for c in classes])
    assert _render(fast, x, y) == _render(reference, x, y)


# -- click, hover, highlight ------------------------------------------------------------

def test_click_on_a_point_emits_its_image_id(view, data, qtbot):
    coords, ids, *_ = data
    index = int(np.argmax(coords[:, 1]))  # the topmost point: nothing else under the cursor
    pos = view.view_to_widget(*coords[index])
    with qtbot.waitSignal(view.point_clicked, timeout=2000) as signal:
        qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert signal.args == [int(ids[index])]
    assert view.highlighted_id == int(ids[index])


def test_click_on_empty_space_emits_nothing(view, qtbot):
    far = view.view_to_widget(-30.0, -30.0)
    view.view_box.setRange(xRange=(-40, 20), yRange=(-40, 20), padding=0)
    far = view.view_to_widget(-35.0, -35.0)
    with qtbot.assertNotEmitted(view.point_clicked):
        qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=far)


def test_nearest_point_respects_the_pixel_radius(view, data):
    coords, *_ = data
    index = int(np.argmin(coords[:, 0]))  # leftmost point
    x, y = coords[index]
    pixel_w, _ = view.view_box.viewPixelSize()
    assert view.nearest_point((x - 3 * pixel_w, y), radius_px=6) == index
    assert view.nearest_point((x - 9 * pixel_w, y), radius_px=6) == -1


def test_hover_shows_file_name_and_score(view, data, qtbot):
    coords, ids, _labels, scores = data
    index = 10
    pos = view.view_to_widget(*coords[index])
    mouse(view.plot_widget.viewport(), "move", pos, button=Qt.MouseButton.NoButton)
    qtbot.waitUntil(view.hover_text.isVisible, timeout=2000)
    html = view.hover_text.textItem.toHtml()
    hovered = view.nearest_point(coords[index], radius_px=8)
    assert f"img_{ids[hovered]}.png" in html
    assert f"{scores[hovered]:.3f}" in html


@pytest.mark.parametrize("corner", ["right", "top", "left", "bottom", "centre"])
def test_hover_label_stays_inside_the_plot_beside_the_colour_bar(view, data, qtbot, corner):
    coords, ids, _labels, _scores = data
    view.resize(560, 500)  # a narrow tab: the label is wider than half the plot
    view.set_coloring("score")  # the colour bar sits right of the plot
    view.set_names([f"a_very_long_file_name_from_the_line_{i}_lot_0712.png" for i in ids])
    qtbot.wait(50)  # the colour bar takes its place in the layout
    index = {"right": np.argmax(coords[:, 0]), "left": np.argmin(coords[:, 0]),
             "top": np.argmax(coords[:, 1]), "bottom": np.argmin(coords[:, 1]),
             "centre": np.argmin(np.abs(coords[:, 0] - coords[:, 0].mean() + 0.5))}[corner]
    mouse(view.plot_widget.viewport(), "move", view.view_to_widget(*coords[index]),
          button=Qt.MouseButton.NoButton)
    qtbot.waitUntil(view.hover_text.isVisible, timeout=2000)
    view.grab()  # pyqtgraph sets the label's pixel transform when it paints
    label = view.hover_text.textItem.sceneBoundingRect()
    plot = view.view_box.sceneBoundingRect()
    assert plot.adjusted(-1, -1, 1, 1).contains(label), (label, plot)
    assert not label.intersects(view.color_bar.sceneBoundingRect())


def test_legend_sits_outside_the_points(view, data):
    coords, ids, labels, _scores = data
    assert view.legend.isVisible() and view.legend.texts()
    legend = view.legend.geometry()
    assert not legend.intersects(view.plot_widget.geometry())
    # Even a point in the top-left corner, where the legend used to be, is not covered.
    view.set_points(np.vstack([coords, [[coords[:, 0].min() - 1, coords[:, 1].max() + 1]]]),
                    np.append(ids, ids.max() + 1))
    corner = view.view_to_widget(coords[:, 0].min() - 1, coords[:, 1].max() + 1)
    assert view.plot_widget.rect().contains(corner)
    assert view.childAt(view.plot_widget.mapTo(view, corner)) is not view.legend


def test_highlight_rings_the_point_and_clears(view, data):
    coords, ids, *_ = data
    view.highlight(int(ids[42]))
    x, y = view.highlight_item.getData()
    assert (x[0], y[0]) == pytest.approx(tuple(coords[42].astype(float)))
    view.highlight(None)
    assert len(view.highlight_item.getData()[0]) == 0
    view.highlight(-12345)  # an id with no point
    assert view.highlighted_id is None


# -- selection ------------------------------------------------------------------------------

def test_lasso_drawn_with_the_mouse_selects_exactly_the_points_inside(view, data, qtbot):
    coords, ids, *_ = data
    view.set_selection_mode("lasso")
    # A concave lasso around part of the right-hand cluster.
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    r = 2.2 + 0.8 * np.sin(3 * t)
    lasso = np.c_[6 + r * np.cos(t), 1 + r * np.sin(t)]
    with qtbot.waitSignal(view.selection_changed) as signal:
        drag_path(view, lasso)
    # The reference: the same polygon as the mouse actually drew it (pixel-rounded).
    drawn = np.array([(p.x(), p.y()) for p in (
        view.view_box.mapSceneToView(view.plot_widget.mapToScene(view.view_to_widget(*v)))
        for v in lasso)])
    expected = ids[points_in_polygon(coords, drawn)]
    assert 10 < len(expected) < N
    np.testing.assert_array_equal(np.sort(signal.args[0]), np.sort(expected))
    np.testing.assert_array_equal(np.sort(view.selected_ids()), np.sort(expected))


def test_select_polygon_agrees_with_qt_path_containment(view, data):
    from PySide6.QtGui import QPainterPath, QPolygonF

    coords, ids, *_ = data
    polygon = np.array([[-9, -3], [-2, -2], [-5, 0.5], [-1, 4], [-8, 3]], dtype=float)
    selected = view.select_polygon(polygon)
    path = QPainterPath()
    path.addPolygon(QPolygonF([QPointF(*p) for p in polygon]))
    path.closeSubpath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    expected = ids[[path.contains(QPointF(float(x), float(y))) for x, y in coords]]
    np.testing.assert_array_equal(np.sort(selected), np.sort(expected))


def test_rectangle_drag_selects_the_box_and_shift_adds(view, data, qtbot):
    coords, ids, *_ = data
    view.set_selection_mode("rectangle")
    with qtbot.waitSignal(view.selection_changed) as first:
        drag_path(view, [(-9.0, -3.0), (-6.0, -1.0), (-4.0, 2.0)])
    corners = [view.view_box.mapSceneToView(view.plot_widget.mapToScene(view.view_to_widget(*c)))
               for c in ((-9.0, -3.0), (-4.0, 2.0))]
    (x0, y0), (x1, y1) = [(c.x(), c.y()) for c in corners]
    inside = ((coords[:, 0] >= min(x0, x1)) & (coords[:, 0] <= max(x0, x1))
              & (coords[:, 1] >= min(y0, y1)) & (coords[:, 1] <= max(y0, y1)))
    np.testing.assert_array_equal(np.sort(first.args[0]), np.sort(ids[inside]))
    with qtbot.waitSignal(view.selection_changed) as second:
        drag_path(view, [(4.0, -1.0), (8.0, 3.0)], modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert set(first.args[0]) < set(second.args[0])  # Shift added to the selection


def test_selection_dims_the_rest_and_draws_the_selected_on_top(view, data):
    *_, ids, _labels, _scores = data[0], data[1], data[2], data[3]
    view.select_ids(ids[:20])
    brushes = view.points_item.data["brush"]
    normal = {id(b) for b in view.coloring.brushes}
    assert all(id(b) in normal for b in brushes[-20:])
    assert all(b.color().alpha() < 60 for b in brushes[:-20])
    view.clear_selection()
    assert all(id(b) in normal for b in view.points_item.data["brush"])


def test_action_buttons_emit_the_selected_ids(view, data, qtbot):
    _coords, ids, *_ = data
    assert not view.action_buttons["flag"].isEnabled()
    view.select_ids(ids[[3, 1, 2]])
    assert view.selection_label.text() == "3 selected"
    for key, signal in (("flag", view.flag_requested), ("unflag", view.unflag_requested),
                        ("label_bad", view.label_bad_requested),
                        ("label_good", view.label_good_requested),
                        ("show_in_list", view.show_in_list_requested)):
        with qtbot.waitSignal(signal) as caught:
            view.action_buttons[key].click()
        np.testing.assert_array_equal(caught.args[0], ids[[1, 2, 3]])


def test_pointer_mode_drag_pans_instead_of_selecting(view, qtbot):
    view.set_selection_mode("pointer")
    before = view.view_box.viewRange()
    with qtbot.assertNotEmitted(view.selection_changed):
        drag_path(view, [(0.0, 0.0), (2.0, 1.0), (4.0, 2.0)])
    assert view.view_box.viewRange() != before


# -- animation and the controller ------------------------------------------------------------

def test_show_partial_moves_points_and_keeps_colours(view, data):
    coords, *_ = data
    brushes_before = list(view.points_item.data["brush"])
    view.show_partial(coords * 0.01)
    x, _y = view.points_item.getData()
    assert np.abs(x).max() < 0.2
    assert [id(b) for b in view.points_item.data["brush"]] == [id(b) for b in brushes_before]
    view.show_partial(np.zeros((3, 2)))  # a stale frame of another size is ignored
    assert len(view.points_item.getData()[0]) == N


def test_progress_row_and_cancel(view, qtbot):
    view.show_progress(50, 200, "t-SNE iteration 50 / 200")
    assert view.progress_row.isVisible() and view.progress_bar.value() == 50
    with qtbot.waitSignal(view.tsne_cancel_requested):
        view.cancel_button.click()
    view.finish_progress()
    assert not view.progress_row.isVisible()


def _controller(qtbot, tmp_path, settings, track=None):
    rng = np.random.default_rng(3)
    emb = (np.repeat(rng.normal(0, 8, (3, 16)), 60, axis=0)
           + rng.normal(0, 1, (180, 16))).astype(np.float32)
    ids = np.arange(180, dtype=np.int64) + 5
    view = ActivationScatter()
    qtbot.addWidget(view)
    view.show()
    controller = MapController(view, settings, parent=view, track=track)
    controller.set_embeddings(ids, emb, cache=MapCache(tmp_path))
    pca_task = controller.task
    qtbot.waitUntil(lambda: pca_task.state == "done", timeout=10000)
    np.testing.assert_array_equal(view.image_ids, ids)  # the PCA map is shown
    return view, controller


def test_controller_animates_tsne_then_caches_the_map(qtbot, tmp_path):
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=30, n_iter=30,
                            step_iters=10, n_jobs=1)
    view, controller = _controller(qtbot, tmp_path, settings)
    frames = []
    original = view.show_partial
    view.show_partial = lambda c: frames.append(c) or original(c)
    view.method_combo.setCurrentIndex(view.method_combo.findData("tsne"))
    task = controller.task
    qtbot.waitUntil(lambda: task.state == "done", timeout=30000)
    assert frames  # the plot animated
    np.testing.assert_array_equal(view.coords, task.result)
    assert len(list((tmp_path / "projections").glob("tsne-*.npy"))) == 1
    assert not view.progress_row.isVisible()
    # Back to PCA and to t-SNE again: both come from memory, no new task.
    view.method_combo.setCurrentIndex(view.method_combo.findData("pca"))
    view.method_combo.setCurrentIndex(view.method_combo.findData("tsne"))
    assert controller.task is None
    np.testing.assert_array_equal(view.coords, task.result)


def test_controller_cancel_falls_back_to_pca_and_ignores_late_frames(qtbot, tmp_path):
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=250, n_iter=2000,
                            step_iters=5, n_jobs=1)
    view, controller = _controller(qtbot, tmp_path, settings)
    pca = view.coords.copy()
    view.method_combo.setCurrentIndex(view.method_combo.findData("tsne"))
    task = controller.task
    try:
        qtbot.waitUntil(view.progress_row.isVisible, timeout=10000)
    finally:
        view.cancel_button.click()  # never leave a long t-SNE running after the test
    qtbot.waitUntil(lambda: task.state == "cancelled", timeout=10000)
    assert view.method == "pca" and not view.progress_row.isVisible()
    np.testing.assert_array_equal(view.coords, pca)
    assert not list((tmp_path / "projections").glob("tsne-*.npy"))  # nothing half-done cached


def test_controller_tracks_its_tasks_and_clear_empties_the_view(qtbot, tmp_path):
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=250, n_iter=2000,
                            step_iters=5, n_jobs=1)
    tracked = []
    view, controller = _controller(qtbot, tmp_path, settings, track=tracked.append)
    assert [t.title for t in tracked] == ["PCA map"]
    view.method_combo.setCurrentIndex(view.method_combo.findData("tsne"))
    task = controller.task
    assert tracked[-1] is task and task.title == "t-SNE map"
    qtbot.waitUntil(view.progress_row.isVisible, timeout=10000)
    controller.clear()
    qtbot.waitUntil(lambda: task.state == "cancelled", timeout=10000)
    assert controller.task is None and not view.progress_row.isVisible()
    assert len(view.image_ids) == 0 and len(view.coords) == 0
    controller.show_method("pca")  # nothing to show: no task, no error
    assert controller.task is None and len(view.image_ids) == 0


def test_axes_name_the_projection_and_tsne_shows_no_coordinates(view):
    bottom, left = view.plot_item.getAxis("bottom"), view.plot_item.getAxis("left")
    assert bottom.labelText == "principal component 1" and bottom.style["showValues"]
    view.method_combo.setCurrentIndex(view.method_combo.findData("tsne"))  # as a user would
    assert (bottom.labelText, left.labelText) == ("t-SNE 1", "t-SNE 2")
    assert not bottom.style["showValues"] and not left.style["showValues"]
    assert bottom.style["tickLength"] == 0
    view.set_method("pca")  # as the controller does, without a signal
    assert left.labelText == "principal component 2" and left.style["showValues"]
