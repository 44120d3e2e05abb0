"""Benchmark: the thumbnail grid over 30,000 images (model reset, filters, scrolling).

Prints (not a test):

* ``set_dataset`` + first layout of the grid with N rows,
* a class filter and back (index array rebuild + model reset + relayout),
* thumbnail throughput of the background loader (thumbnails/s),
* scrolling from top to bottom one page at a time: the GUI thread's time per page
  (paint + model calls; median and worst), and the pages that still showed placeholders,
* how long the last page took to fill in completely.

Goals: every GUI-thread step below ~50 ms (smooth), the page stays responsive while the
loader catches up (placeholders, never a frozen frame).

Usage::

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_thumbnail_grid.py \\
        [--data DIR] [--n 30000]

``--data`` is an opened-before folder of images (default: 300 demo images generated into a
temporary folder); its images are repeated to reach N rows, so the pixels are real but only
the memory of the folder's own cache is used. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))


class RepeatedRows:
    """``images[i]`` is ``base[i % len(base)]``: N rows from a smaller real cache."""

    def __init__(self, base: np.ndarray, n: int) -> None:
        self.base = base
        self.shape = (n, *base.shape[1:])
        self.dtype = base.dtype

    def __getitem__(self, row):
        return self.base[int(row) % len(self.base)]


def tiled_dataset(dataset, n: int):
    """The dataset's images repeated to ``n`` positions (labels and splits repeated too)."""
    reps = np.arange(n) % len(dataset.image_ids)
    rows = dataset.images[dataset.image_ids]
    names = dataset.relpaths
    return replace(dataset, images=RepeatedRows(np.asarray(rows), n),
                   image_ids=np.arange(n, dtype=np.int64),
                   relpaths=[f"{i:06d}_{names[r]}" for i, r in enumerate(reps)],
                   labels=np.asarray(dataset.labels)[reps],
                   splits=np.asarray(dataset.splits)[reps])


def wait_for_layout(app, view) -> tuple[float, float]:
    """Run the event loop until the batched layout placed the last row.

    Returns:
        (seconds in all, the longest single event-loop step).
    """
    model = view.model()
    last = model.index(model.rowCount() - 1)
    start = time.perf_counter()
    worst = 0.0
    while model.rowCount() and view.visualRect(last).isEmpty():
        step = time.perf_counter()
        app.processEvents()
        worst = max(worst, time.perf_counter() - step)
        if time.perf_counter() - start > 60:
            break
    return time.perf_counter() - start, worst


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a folder of images (default: demo data)")
    parser.add_argument("--n", type=int, default=30_000, help="rows in the grid")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("DIESIGHT_HOME", tempfile.mkdtemp(prefix="bench-grid-home-"))

    from PySide6.QtWidgets import QApplication

    from app.state import AppState
    from app.thumbnail_grid import IMAGE_ID_ROLE, ThumbnailGrid
    from core.dataset import open_dataset

    folder = args.data
    if folder is None:
        from core.demodata import generate_demo_data

        folder = Path(tempfile.mkdtemp(prefix="bench-grid-")) / "demo"
        generate_demo_data(folder, n=300, seed=0)
    dataset = tiled_dataset(open_dataset(folder), args.n)
    print(f"grid of {args.n:,} rows from {folder} ({len(dataset.images.base):,} real images)")

    app = QApplication.instance() or QApplication([])
    state = AppState()
    grid = ThumbnailGrid(state)
    grid.resize(1000, 800)
    grid.show()
    app.processEvents()
    view, model = grid.view, grid.model

    start = time.perf_counter()
    state.set_dataset(dataset)
    app.processEvents()
    print(f"set_dataset + first page:      {ms(time.perf_counter() - start)}")
    total, worst = wait_for_layout(app, view)
    print(f"batched layout of all rows:    {ms(total)} (longest GUI step {ms(worst)})")

    start = time.perf_counter()
    grid.set_filters("bad", "all")
    app.processEvents()
    filtered = time.perf_counter() - start
    wait_for_layout(app, view)
    start = time.perf_counter()
    grid.set_filters("all", "all")
    app.processEvents()
    print(f"filter to bad / back to all:   {ms(filtered)} / {ms(time.perf_counter() - start)}"
          f" ({model.rowCount():,} rows)")
    wait_for_layout(app, view)

    loader = model.loader
    start = time.perf_counter()
    for image_id in range(2000, 2400):
        loader.request(image_id)
    loader.wait(60_000)
    app.processEvents()
    print(f"loader throughput:             {400 / (time.perf_counter() - start):,.0f} "
          "thumbnails/s")

    bar = view.verticalScrollBar()
    page = max(1, bar.pageStep())
    steps, placeholders = [], 0
    for value in range(0, bar.maximum() + page, page):
        start = time.perf_counter()
        bar.setValue(min(value, bar.maximum()))
        view.viewport().repaint()
        app.processEvents()
        steps.append(time.perf_counter() - start)
        first = view.indexAt(view.viewport().rect().topLeft())
        if first.isValid() and model.thumbnail(first.data(IMAGE_ID_ROLE)) is None:
            placeholders += 1
    print(f"scroll {len(steps):,} pages:            median {ms(statistics.median(steps))}, "
          f"worst {ms(max(steps))}, total {ms(sum(steps))}")
    print(f"pages still loading when shown: {placeholders:,} of {len(steps):,}")

    start = time.perf_counter()
    deadline = start + 30
    while time.perf_counter() < deadline:
        app.processEvents()
        view.viewport().repaint()
        visible = [view.indexAt(view.viewport().rect().center())]
        if all(model.thumbnail(i.data(IMAGE_ID_ROLE)) is not None for i in visible if i.isValid()):
            break
        time.sleep(0.005)
    print(f"last page filled in:           {ms(time.perf_counter() - start)}")
    loader.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
