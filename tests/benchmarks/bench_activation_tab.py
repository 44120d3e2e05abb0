"""Benchmark: the Activation space tab's glue at lot size (30,000 images by default).

Run: ``nice -n 10 .venv/bin/python tests/benchmarks/bench_activation_tab.py [--n 30000]``.

Builds a workspace with ``n`` image rows and a run with stored scores and 32-d clustered
embeddings (no pixels: the tab never reads them), then drives the real
:class:`app.activation_tab.ActivationTab` through :class:`app.state.AppState` offscreen:

* run selected -> embeddings loaded (worker) -> PCA map drawn;
* threshold change -> prediction colours recomputed and repainted (no new map);
* click on a point -> ``AppState.current_image_changed`` (point -> position lookup);
* current image set elsewhere -> point ringed on the map;
* lasso of ~10% of the points -> Flag (saved to the workspace) -> flag colours repainted.

Each timing is the median of several repetitions; the widget's own costs (paint, KD-tree,
atlas) are measured by ``bench_scatter.py``. The machine is shared, so numbers are noisy:
the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPEATS = 7


def build_dataset(folder: Path, n: int, seed: int = 0):
    """A Dataset of ``n`` image rows (1x1 pixels) with a real workspace."""
    from core.dataset import Dataset
    from core.folder_layout import Layout
    from core.workspace import Workspace

    rng = np.random.default_rng(seed)
    workspace = Workspace(folder / "workspace", folder / "data")
    ids = np.arange(n, dtype=np.int64)
    labels = np.where(rng.random(n) < 0.1, 1, 0).astype(np.int8)
    splits = np.where(rng.random(n) < 0.8, "train", "test")
    labels[splits == "test"] = -1
    relpaths = [f"{'train/bad_1' if lab == 1 else 'train/good_0'}/{i}.jpg"
                if s == "train" else f"test/all_tests/{i}.jpg"
                for i, lab, s in zip(ids.tolist(), labels.tolist(), splits.tolist(), strict=True)]
    rows = [(int(i), p, 1000, 0, None if lab < 0 else int(lab), s, 275, 267)
            for i, p, lab, s in zip(ids, relpaths, labels.tolist(), splits.tolist(),
                                    strict=True)]
    with workspace.transaction() as con:
        con.executemany("INSERT INTO images (id, relpath, size_bytes, mtime_ns, label, split,"
                        " orig_width, orig_height) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return Dataset(root=folder / "data", workspace=workspace,
                   layout=Layout("kaggle", "synthetic benchmark rows"),
                   images=np.zeros((n, 1, 1), dtype=np.uint8), image_ids=ids,
                   relpaths=relpaths, labels=labels, splits=splits.astype(str))


def scored_run(dataset, dims: int = 32, seed: int = 0):
    """A finished run with scores and clustered embeddings stored for every image."""
    from core.runs import create_run, get_run, update_run
    from core.score_store import store_scores
    from core.training.config import TrainConfig

    rng = np.random.default_rng(seed)
    n = len(dataset.image_ids)
    run_id = create_run(dataset.workspace, TrainConfig(image_size=96), device="cpu",
                        parameters=1)
    update_run(dataset.workspace, run_id, status="finished")
    bad = dataset.labels == 1
    centres = rng.normal(0, 4, (12, dims))
    component = np.where(bad, rng.integers(8, 12, n), rng.integers(0, 8, n))
    embeddings = (centres[component] + rng.normal(0, 1, (n, dims))).astype(np.float32)
    scores = np.clip(np.where(bad, rng.beta(5, 2, n), rng.beta(1.2, 8, n)), 0, 1)
    store_scores(dataset.workspace, run_id, dataset.image_ids, scores, embeddings)
    return get_run(dataset.workspace, run_id)


def median_ms(samples: list[float]) -> str:
    median, worst = 1000 * statistics.median(samples), 1000 * max(samples)
    return f"median {median:7.1f} ms, worst {worst:7.1f} ms"


def wait_until(app, condition, timeout_s: float = 120.0) -> None:
    end = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("condition not met")
        app.processEvents()
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000)
    args = parser.parse_args()

    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from app.activation_tab import ActivationTab
    from app.state import AppState

    app = QApplication.instance() or QApplication([])
    print(f"n = {args.n:,}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (shared machine: noisy)")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dataset = build_dataset(Path(tmp), args.n)
        run = scored_run(dataset)
        second = scored_run(dataset, seed=1)
        print(f"setup (rows, scores, embeddings): {time.perf_counter() - started:.1f} s")
        state = AppState()
        state.set_dataset(dataset)
        tab = ActivationTab(state)
        tab.resize(1000, 760)
        tab.show()
        app.processEvents()

        def map_shown() -> bool:
            return (tab.showing_map and tab.controller.task is None and tab.points is not None
                    and np.array_equal(tab.scatter.image_ids, tab.points.image_ids))

        # The first map imports scikit-learn (seconds on a busy machine): once per session.
        started = time.perf_counter()
        import sklearn.decomposition  # noqa: F401
        print(f"importing scikit-learn (first map of a session): "
              f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        state.set_current_run(run)
        wait_until(app, lambda: tab.points is not None)
        loaded = time.perf_counter() - started
        wait_until(app, map_shown)
        tab.repaint()
        print(f"first run -> embeddings loaded:     {1000 * loaded:7.1f} ms (worker)")
        drawn = time.perf_counter() - started
        print(f"first run -> PCA map drawn:         {1000 * drawn:7.1f} ms"
              " (PCA on a worker; first task of the session)")
        for label, other in (("another run", second), ("back to the first", run)):
            started = time.perf_counter()
            state.set_current_run(other)
            wait_until(app, map_shown)
            tab.repaint()
            print(f"{label + ' -> PCA map drawn:':36s}"
                  f"{1000 * (time.perf_counter() - started):7.1f} ms")

        tab.scatter.set_coloring("prediction")
        samples = []
        for i in range(REPEATS):
            started = time.perf_counter()
            state.set_threshold(0.3 + 0.05 * i)
            tab.scatter.plot_widget.viewport().repaint()
            samples.append(time.perf_counter() - started)
        print(f"threshold -> recoloured + painted:  {median_ms(samples)}")

        port = tab.scatter.plot_widget.viewport()
        rng = np.random.default_rng(1)
        seen = []
        state.current_image_changed.connect(seen.append)
        samples = []
        for index in rng.choice(args.n, REPEATS * 3, replace=False):
            pos = QPointF(tab.scatter.view_to_widget(*tab.scatter.coords[index]))
            seen.clear()
            started = time.perf_counter()
            for kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
                QApplication.sendEvent(port, QMouseEvent(
                    kind, pos, port.mapToGlobal(pos), Qt.MouseButton.LeftButton,
                    Qt.MouseButton.LeftButton if kind == QEvent.Type.MouseButtonPress
                    else Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
            wait_until(app, lambda: bool(seen), 5.0)
            samples.append(time.perf_counter() - started)
        print(f"click -> current image:             {median_ms(samples)}")

        samples = []
        for position in rng.choice(args.n, REPEATS, replace=False):
            started = time.perf_counter()
            state.set_current_image(int(position))
            samples.append(time.perf_counter() - started)
        print(f"current image -> ring on the map:   {median_ms(samples)}")

        coords = tab.scatter.coords
        centre, spread = coords.mean(axis=0), coords.std(axis=0)
        t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
        lasso = centre + 0.6 * spread * np.c_[np.cos(t), np.sin(t)]
        tab.scatter.set_coloring("flagged")
        samples = []
        for flag in (True, False) * ((REPEATS + 1) // 2):
            tab.scatter.select_polygon(lasso)
            button = tab.scatter.action_buttons["flag" if flag else "unflag"]
            started = time.perf_counter()
            button.click()
            tab.scatter.plot_widget.viewport().repaint()
            samples.append(time.perf_counter() - started)
        selected = len(tab.scatter.selected_ids())
        print(f"flag {selected:,} lassoed -> saved + painted: {median_ms(samples)}")
        tab.close()


if __name__ == "__main__":
    main()
