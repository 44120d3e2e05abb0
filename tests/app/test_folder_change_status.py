"""Reopening a folder whose files changed: the status line says what changed, which flags
are on changed pictures and how many images the current run must score again."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scoring_fixtures import IMAGE_SHAPE, make_lot, make_run

from app.runs_view import COLUMN_INDEX
from core.annotations import set_flag
from core.scoring import score_dataset

TIMEOUT_MS = 60_000


def _open(qtbot, window, folder) -> None:
    task = window.open_folder(folder)
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=TIMEOUT_MS):
        pass


def test_reopening_a_changed_folder_says_so_in_the_status_line(qtbot, window, tmp_path):
    data = make_lot(tmp_path / "data")
    _open(qtbot, window, data)
    assert window.statusBar().currentMessage().endswith(": 24 images.")
    dataset = window.state.dataset
    run = make_run(dataset.workspace)
    score_dataset(dataset, run, device="cpu")
    set_flag(dataset.workspace, dataset.image_ids[dataset.relpaths.index("train/bad_1/12.png")],
             True)

    (data / "train/good_0/0.png").unlink()
    Image.fromarray(np.zeros(IMAGE_SHAPE, dtype=np.uint8)).save(data / "train/bad_1/12.png")
    _open(qtbot, window, data)

    message = window.statusBar().currentMessage()
    assert "1 removed, 1 changed, 0 new since the last open" in message, message
    assert "1 flagged image(s) changed since they were flagged" in message, message
    assert f"1 image(s) changed or new since run {run.id} scored them" in message, message
    position = window.state.dataset.relpaths.index("train/bad_1/12.png")
    assert np.isnan(window.state.scores[position])  # no score of the old picture shown
    runs = window.training_panel.runs_view
    runs.refresh()
    scores_column = COLUMN_INDEX["Scores"]
    assert runs.proxy.index(0, scores_column).data() == "partly (1 stale)"
