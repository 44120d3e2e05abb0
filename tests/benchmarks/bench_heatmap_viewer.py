"""Benchmark: how long from pressing H to the heatmap on screen, in the real viewer.

Run (on a scored demo set with a trained run, e.g. the one bench_explain.py makes):
    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_heatmap_viewer.py \
        --data .bench/explain/demo-900 --run 1 --images 20

For each of ``--images`` images: make it current, press H (the shortcut's own slot, as a
key press would), wait until the overlay is painted, press H again. Printed: the first
press (the run's model was loaded on a worker when the run became current), then the
median and the slowest of the others, in ms, with the load average (the machine may be
shared). Goal: < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
GOAL_MS = 150


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", default="latest")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--home", type=Path, default=ROOT / ".bench" / "explain" / "home")
    p.add_argument("--method", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("DIESIGHT_HOME", str(args.home))
    from PySide6.QtWidgets import QApplication

    from app.image_viewer import ImageViewer
    from app.state import AppState
    from core.dataset import open_dataset
    from core.runs import resolve_run

    app = QApplication.instance() or QApplication([])
    dataset = open_dataset(args.data)
    state = AppState()
    state.set_dataset(dataset)
    state.set_current_run(resolve_run(dataset.workspace, args.run))
    viewer = ImageViewer(state)
    viewer.resize(460, 600)
    viewer.show()
    if args.method:
        viewer.heatmap.method_box.setCurrentIndex(viewer.heatmap.method_box.findData(args.method))
    # The viewer loads the run's model on a worker as soon as the run is current.
    started = time.perf_counter()
    # Wait for the chosen method's explainer (choosing one starts preparing it anew).
    while not _prepared(viewer) and time.perf_counter() - started < 60:
        settle(app, 0.05)
    print(f"model ready {1000 * (time.perf_counter() - started):.0f} ms after the run "
          "became current (on a worker; the window stays usable)")
    times = [press_h(app, viewer, state, position)
             for position in range(0, len(dataset.image_ids),
                                   max(1, len(dataset.image_ids) // args.images))][:args.images]
    rest = times[1:]
    print(f"run {state.current_run.id} ({state.current_run.model}, "
          f"{state.current_run.config.image_size} rows), method {viewer.heatmap.method()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"first H: {times[0]:.0f} ms")
    print(f"next {len(rest)} images: median {statistics.median(rest):.0f} ms, slowest "
          f"{max(rest):.0f} ms (goal < {GOAL_MS} ms: "
          f"{'met' if statistics.median(rest) < GOAL_MS else 'NOT met'})")
    return 0


def _prepared(viewer) -> bool:
    explainer = viewer.heatmap._explainer
    return explainer is not None and explainer.method == viewer.heatmap.method()


def settle(app, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.01)


def press_h(app, viewer, state, position: int) -> float:
    state.set_current_image(position)
    app.processEvents()
    shown = []
    viewer.heatmap.shown.connect(lambda: shown.append(time.perf_counter()))
    started = time.perf_counter()
    viewer.heatmap.toggle_button.toggle()  # what the H shortcut calls
    while not shown:
        app.processEvents()
        time.sleep(0.001)
    app.processEvents()  # the repaint
    elapsed = 1000 * (time.perf_counter() - started)
    viewer.heatmap.shown.disconnect()
    viewer.heatmap.toggle_button.toggle()
    return elapsed


if __name__ == "__main__":
    raise SystemExit(main())
