"""The dataset panel's count table and its empty state."""

from __future__ import annotations

from app.dataset_panel import DatasetPanel, count_rows
from app.state import AppState


def test_count_rows_orders_splits_and_adds_totals():
    counts = {"test": {"good": 0, "bad": 0, "unlabelled": 5},
              "train": {"good": 10, "bad": 2, "unlabelled": 0},
              "val": {"good": 0, "bad": 0, "unlabelled": 0},
              "holdout": {"good": 1, "bad": 1, "unlabelled": 0}}
    rows = count_rows(counts)
    # the empty val split is left out
    assert [split for split, _ in rows] == ["train", "test", "holdout", "total"]
    assert rows[0][1] == [10, 2, 0, 12]
    assert rows[-1][1] == [11, 3, 5, 19]


def test_panel_shows_a_hint_until_a_dataset_is_open(qtbot):
    panel = DatasetPanel(AppState())
    qtbot.addWidget(panel)
    panel.show()
    assert panel.empty_label.isVisible()
    assert "Open Folder" in panel.empty_label.text()
    assert not panel.details.isVisible()
