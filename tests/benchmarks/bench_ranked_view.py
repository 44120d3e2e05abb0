"""Benchmark: the Ranked tab and the threshold bar over 30,000 images (GUI-thread times).

Prints (not a test) the median time of each step a user triggers, each ending with the
model reset and one repaint of the visible rows:

* making a scored run current (rank all images, fill the table),
* each filter (all, bad, good, unlabelled, flagged, disagreements) and a split filter,
* sorting by each column header,
* a selection filter of 2,000 positions (a lasso in the activation space),
* one threshold step while "disagreements" is shown (the slider being dragged), and one
  with the "all" filter (only the prediction column repaints), including the bar's numbers,
* flagging one image (database write + row refresh) under the "all" and "flagged" filters.

Goal: every step well under 100 ms at 30,000 rows. Timings on a shared machine are noisy.

Usage::

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_ranked_view.py [--images 30000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests" / "benchmarks"):
    if str(path) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(path))


def median_ms(app, view, fn, repeats: int) -> float:
    """Median milliseconds of ``fn`` plus the repaint it causes."""
    timings = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        view.table.viewport().repaint()
        app.processEvents()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("DIESIGHT_HOME", tempfile.mkdtemp(prefix="bench-ranked-home-"))

    from bench_ranking import build_lot
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from app.ranked_view import COLUMNS, KIND_FILTERS, RankedView
    from app.state import AppState
    from app.threshold_bar import ThresholdBar
    from core.annotations import set_flag
    from core.runs import create_run, get_run, save_validation_ids, update_run
    from core.score_store import store_scores
    from core.training.config import TrainConfig

    n, repeats = args.images, args.repeats
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_lot(Path(tmp), n)
        workspace = dataset.workspace
        run_id = create_run(workspace, TrainConfig(), device="cpu", parameters=0)
        update_run(workspace, run_id, status="finished", threshold=0.5)
        rng = np.random.default_rng(1)
        store_scores(workspace, run_id, dataset.image_ids, rng.random(n),
                     np.zeros((n, 2), dtype=np.float32))
        labelled = np.flatnonzero(dataset.labels >= 0)
        save_validation_ids(workspace, run_id, rng.choice(labelled, len(labelled) // 5,
                                                          replace=False))
        set_flag(workspace, rng.choice(n, n // 100, replace=False), True)
        run = get_run(workspace, run_id)

        state = AppState()
        state.set_dataset(dataset)
        view = RankedView(state)
        bar = ThresholdBar(state)
        view.resize(1000, 800)
        view.show()
        app.processEvents()
        print(f"Ranked tab over {n:,} images (median of {repeats}, ms incl. repaint)")

        ms = median_ms(app, view, lambda i: state.set_current_run(run if i % 2 == 0 else None),
                       repeats * 2 - 1)
        state.set_current_run(run)
        print(f"  make the run current / drop it  {ms:7.1f}")
        for kind, _ in KIND_FILTERS:
            ms = median_ms(app, view, lambda _i, kind=kind: view.set_filters(kind, "all")
                           if view.kind_filter.currentData() != kind else
                           view.model.apply(), repeats)
            print(f"  filter {kind:<24} {ms:7.1f}  ({view.model.rowCount():,} rows)")
        ms = median_ms(app, view, lambda i: view.set_filters("all", ("test", "validation")[i % 2]),
                       repeats)
        print(f"  split filter test / validation  {ms:7.1f}")
        view.set_filters("all", "all")
        for column, name in enumerate(COLUMNS):
            ms = median_ms(app, view, lambda i, column=column: view.table.sortByColumn(
                column, (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder)[i % 2]),
                repeats)
            print(f"  sort by {name:<23} {ms:7.1f}")
        view.table.sortByColumn(COLUMNS.index("score"), Qt.SortOrder.DescendingOrder)
        picked = rng.choice(n, 2000, replace=False)
        ms = median_ms(app, view, lambda _i: state.request_list_filter(picked), repeats)
        print(f"  selection filter (2,000)        {ms:7.1f}")
        view.clear_selection_filter()
        view.set_filters("disagreements", "all")
        ms = median_ms(app, view, lambda i: bar.slider.setValue(400 + i), repeats)
        print(f"  threshold step, disagreements   {ms:7.1f}  (with the bar's numbers)")
        view.set_filters("all", "all")
        ms = median_ms(app, view, lambda i: bar.slider.setValue(600 + i), repeats)
        print(f"  threshold step, all             {ms:7.1f}")
        view.table.setCurrentIndex(view.model.index(3, 2))
        ms = median_ms(app, view, lambda _i: state.toggle_flag(state.current_image), repeats)
        print(f"  toggle a flag, filter all       {ms:7.1f}  (includes the database write)")
        view.set_filters("flagged", "all")
        view.table.setCurrentIndex(view.model.index(3, 2))
        position = state.current_image
        ms = median_ms(app, view, lambda _i: state.toggle_flag(position), repeats)
        print(f"  toggle a flag, filter flagged   {ms:7.1f}")
        view.thumbnails.loader.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
