"""The ranked list's "Heatmaps" option: overlays on the visible thumbnails, and off again."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from ranked_fixtures import state_with_run

from app.ranked_view import COLUMN, RankedView
from core.explain_maps import read_cached

HEAT_TIMEOUT_MS = 60_000


@pytest.fixture
def view(qtbot, demo_copy):
    state, _run, _scores = state_with_run(demo_copy)
    view = RankedView(state)
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    yield view
    view.thumbnails.loader.shutdown()


def decoration(view, row: int):
    return view.model.data(view.model.index(row, COLUMN["thumbnail"]),
                           Qt.ItemDataRole.DecorationRole)


def overlaid_rows(view) -> list[int]:
    heatmaps = view.heatmaps
    return [row for row in range(view.model.rowCount())
            if heatmaps.pixmap(int(view.state.dataset.image_ids[view.model.position_at(row)]))
            is not None]


def test_toggling_draws_overlays_on_the_visible_rows_and_removes_them(qtbot, view):
    heatmaps = view.heatmaps
    assert not heatmaps.enabled and overlaid_rows(view) == []
    visible = heatmaps.visible_ids()
    assert 0 < len(visible) < view.model.rowCount()
    heatmaps.check_box.setChecked(True)
    qtbot.waitUntil(lambda: len(overlaid_rows(view)) == len(visible), timeout=HEAT_TIMEOUT_MS)
    rows = overlaid_rows(view)
    assert rows == list(range(len(visible)))  # the rows on screen, none below them
    pixmap = decoration(view, 0)
    assert isinstance(pixmap, QPixmap) and pixmap is heatmaps.pixmap(visible[0])
    # One batch for the visible rows, kept in the run's cache for the next session.
    state = view.state
    assert sorted(read_cached(state.dataset, state.current_run, visible)) == sorted(visible)
    heatmaps.check_box.setChecked(False)
    assert overlaid_rows(view) == []
    assert decoration(view, 0) is not pixmap


def test_scrolling_computes_the_newly_visible_rows(qtbot, view):
    heatmaps = view.heatmaps
    heatmaps.check_box.setChecked(True)
    first = heatmaps.visible_ids()
    qtbot.waitUntil(lambda: len(overlaid_rows(view)) == len(first), timeout=HEAT_TIMEOUT_MS)
    view.table.scrollToBottom()
    last = heatmaps.visible_ids()
    assert not set(last) & set(first)
    qtbot.waitUntil(lambda: all(heatmaps.pixmap(i) is not None for i in last),
                    timeout=HEAT_TIMEOUT_MS)
    assert np.all([heatmaps.pixmap(i) is not None for i in first])


def test_the_thumbnails_follow_the_method_chosen_in_the_viewer(qtbot, view):
    from app.heatmap_layer import HeatmapLayer
    from app.image_viewer import ImageViewer

    state = view.state
    viewer = ImageViewer(state)
    qtbot.addWidget(viewer)
    layer: HeatmapLayer = viewer.heatmap
    heatmaps = view.heatmaps
    heatmaps.check_box.setChecked(True)
    visible = heatmaps.visible_ids()
    qtbot.waitUntil(lambda: len(overlaid_rows(view)) == len(visible), timeout=HEAT_TIMEOUT_MS)
    default_pixmap = heatmaps.pixmap(visible[0])
    assert heatmaps.source.key()[1] == state.heatmap_method == "integrated-gradients"

    layer.method_box.setCurrentIndex(layer.method_box.findData("gradcam"))
    assert state.heatmap_method == "gradcam" and heatmaps.source.key()[1] == "gradcam"
    qtbot.waitUntil(lambda: len(overlaid_rows(view)) == len(visible), timeout=HEAT_TIMEOUT_MS)
    assert heatmaps.pixmap(visible[0]) is not default_pixmap
    assert sorted(read_cached(state.dataset, state.current_run, visible, "gradcam")) \
        == sorted(visible)
    state.set_heatmap_choice(None)  # back to the run's default, in the viewer's menu too
    assert layer.method_box.currentData() is None
    assert heatmaps.pixmap(visible[0]) is default_pixmap
