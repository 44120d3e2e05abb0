"""The activation map's hover preview: the hovered image, and its heatmap beside it."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF
from ranked_fixtures import state_with_run
from test_activation_tab import make_tab, store_run_scores, wait_for_map

from core.explain import explain
from core.explain_methods import default_method

HEAT_TIMEOUT_MS = 30_000


def hover(qtbot, tab, index: int) -> None:
    scatter = tab.scatter
    x, y = scatter.coords[index]
    scatter._on_mouse_moved(scatter.view_box.mapViewToScene(QPointF(float(x), float(y))))
    qtbot.waitUntil(lambda: scatter._hovered_id is not None, timeout=2000)


def shown_tab(qtbot, folder):
    state, run, _scores = state_with_run(folder)
    store_run_scores(state.dataset, run)  # embeddings that spread the points apart
    tab = make_tab(qtbot, state)
    wait_for_map(qtbot, tab)
    return state, run, tab


def test_hover_shows_the_image_then_its_computed_heatmap(qtbot, demo_copy):
    state, _run, tab = shown_tab(qtbot, demo_copy)
    preview = tab.hover_preview
    assert not preview.isVisible()
    target = int(np.argmax(tab.scatter.coords[:, 1]))  # the topmost point: nothing near it
    hover(qtbot, tab, target)
    image_id = int(tab.scatter.image_ids[target])
    assert tab.scatter._hovered_id == image_id
    assert preview.isVisible() and preview.image_id == image_id
    assert not preview.image_label.pixmap().isNull()
    # Not cached: computed on a worker, the GUI keeps running meanwhile.
    assert preview.heat_label.text() == "heatmap: computing…"
    qtbot.waitUntil(lambda: preview.showing_heatmap, timeout=HEAT_TIMEOUT_MS)
    plain = preview.image_label.pixmap().toImage()
    heat = preview.heat_label.pixmap().toImage()
    assert plain.size() == heat.size() and plain != heat
    tab.scatter._on_mouse_moved(QPointF(-50, -50))  # off the plot
    qtbot.waitUntil(lambda: not preview.isVisible(), timeout=2000)


def test_a_cached_heatmap_shows_at_once(qtbot, demo_copy):
    state, run, tab = shown_tab(qtbot, demo_copy)
    target = int(np.argmin(tab.scatter.coords[:, 1]))
    image_id = int(tab.scatter.image_ids[target])
    explain(state.dataset, run, [image_id], default_method(run))
    hover(qtbot, tab, target)
    assert tab.hover_preview.image_id == image_id
    assert tab.hover_preview.showing_heatmap  # no worker: read from the run's cache
    assert not tab.hover_preview.source.tasks.busy
