"""The viewer's heatmap overlay: H toggles it, it follows the image, zoom and pan."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from ranked_fixtures import state_with_run

from app.heatmap_layer import SHORT_NAMES
from app.image_viewer import ImageViewer


@pytest.fixture
def viewer(qtbot, demo_copy):
    state, _run, _scores = state_with_run(demo_copy)
    viewer = ImageViewer(state)
    qtbot.addWidget(viewer)
    viewer.show()
    state.set_current_image(3)
    return viewer


def shown_map(viewer) -> np.ndarray:
    return np.asarray(viewer.heatmap.item.image)


def test_h_toggles_the_overlay_for_the_current_image(qtbot, viewer):
    layer = viewer.heatmap
    assert not layer.item.isVisible()
    with qtbot.waitSignal(layer.shown, timeout=20000):
        qtbot.keyClick(viewer, Qt.Key.Key_H)
    assert layer.enabled and layer.item.isVisible()
    assert shown_map(viewer).shape == viewer.shown_array.shape
    assert 0 <= shown_map(viewer).min() and shown_map(viewer).max() <= 1
    # Same view box as the image: zooming the image zooms the overlay with it.
    assert layer.item.getViewBox() is viewer.view_box
    assert layer.status_label.text().startswith(SHORT_NAMES[layer.method()] + " · peak")
    qtbot.keyClick(viewer, Qt.Key.Key_H)
    assert not layer.enabled and not layer.item.isVisible()


def test_overlay_follows_the_current_image_and_reads_out(qtbot, viewer):
    layer = viewer.heatmap
    with qtbot.waitSignal(layer.shown, timeout=20000):
        layer.toggle_button.setChecked(True)
    first = shown_map(viewer).copy()
    with qtbot.waitSignal(layer.shown, timeout=20000):
        viewer.state.set_current_image(40)
    assert layer._shown_key[2] == int(viewer.state.dataset.image_ids[40])
    assert not np.array_equal(first, shown_map(viewer))
    # Going back is served from memory, at once.
    with qtbot.waitSignal(layer.shown, timeout=1000):
        viewer.state.set_current_image(3)
    assert np.array_equal(first, shown_map(viewer))
    y, x = np.unravel_index(int(np.argmax(first)), first.shape)
    scene = viewer.view_box.mapViewToScene(QPointF(x + 0.5, y + 0.5))
    viewer._on_mouse_move(scene)
    assert viewer.pixel_label.text().endswith("heat 1.00")


def test_method_choice_recomputes_and_no_run_hides(qtbot, viewer):
    layer = viewer.heatmap
    with qtbot.waitSignal(layer.shown, timeout=20000):
        layer.toggle_button.setChecked(True)
    with qtbot.waitSignal(layer.shown, timeout=20000):
        layer.method_box.setCurrentIndex(layer.method_box.findData("gradcam"))
    assert layer.status_label.text().startswith("Grad-CAM ·")
    viewer.state.set_current_run(None)
    assert not layer.item.isVisible() and layer.status_label.text() == "needs a run"
