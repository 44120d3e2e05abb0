"""The Evidence dock: nearest training images (click opens one) and the golden comparison."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from ranked_fixtures import state_with_run

from app.evidence_panel import EvidencePanel
from core.score_store import load_scores, store_scores


@pytest.fixture
def panel(qtbot, demo_copy):
    state, run, _scores = state_with_run(demo_copy)
    dataset = state.dataset
    # Embeddings on a line, so the nearest images of position p are p +- 1, p +- 2, ...
    ids, scores = load_scores(dataset.workspace, run.id)
    embeddings = np.zeros((len(ids), 2), dtype=np.float32)
    embeddings[:, 0] = dataset.positions(ids)
    store_scores(dataset.workspace, run.id, ids, scores, embeddings)
    state.reload_scores()
    panel = EvidencePanel(state)
    qtbot.addWidget(panel)
    panel.resize(460, 420)
    panel.show()
    return panel


def train_position(state, label: int, skip: int = 0) -> int:
    trained = np.flatnonzero((state.dataset.splits == "train") & (state.labels == label))
    return int(trained[len(trained) // 2 + skip])


def test_neighbours_show_label_score_and_click_opens_one(qtbot, panel):
    state = panel.state
    start = train_position(state, 1)
    with qtbot.waitSignal(panel.updated, timeout=20000):
        state.set_current_image(start)
    shown = [t.neighbour for t in panel.tiles]
    assert all(n is not None for n in shown)
    assert [n.distance for n in shown] == sorted(n.distance for n in shown)
    assert all(n.position != start and state.dataset.splits[n.position] == "train"
               for n in shown)
    first = panel.tiles[0]
    assert first.text() == f"{'B' if shown[0].label else 'G'} {shown[0].score:.2f}"
    assert "label bad" in first.toolTip() or "label good" in first.toolTip()
    with qtbot.waitSignal(panel.updated, timeout=20000):
        qtbot.mouseClick(first, Qt.MouseButton.LeftButton)
    assert state.current_image == shown[0].position
    assert panel.shown_key == (state.current_run.id, shown[0].position)
    assert all(t.neighbour.position != shown[0].position for t in panel.tiles)


def test_golden_and_difference_follow_the_current_image(qtbot, panel):
    state = panel.state
    for skip in (0, 5):
        position = train_position(state, 1, skip)
        with qtbot.waitSignal(panel.updated, timeout=20000):
            state.set_current_image(position)
        image = np.asarray(state.dataset.images[int(state.dataset.image_ids[position])])
        shown = np.asarray(panel.image_item.image)
        golden = np.asarray(panel.golden_item.image)
        assert np.array_equal(shown, image.astype(np.float32))
        assert golden.shape == image.shape and not np.array_equal(golden, shown)
        assert np.allclose(panel.difference_item.image, np.abs(shown - golden))
        assert "nearest training images are bad" in panel.status_label.text()


def test_no_run_says_so(qtbot, panel):
    panel.state.set_current_run(None)
    assert all(t.neighbour is None for t in panel.tiles)
    assert panel.status_label.text().startswith("Choose a trained, scored run")
