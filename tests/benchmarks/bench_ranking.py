"""Benchmark: storing scores, ranked queries and CSV exports on a lot of 30,000 images.

Run: ``.venv/bin/python tests/benchmarks/bench_ranking.py [--images 30000] [--repeats 5]``.
Builds a workspace with N image rows (no pixels: ranking and export never read them), one
run with random scores, 1% flagged images and 0.5% relabels, then prints the median time
of storing the scores, of each ranked query and of each export.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.annotations import set_flag, set_user_label
from core.dataset import Dataset, Layout
from core.export import export_flagged, export_scores, export_submission
from core.ranking import FILTERS, ranked_images
from core.runs import create_run, get_run, update_run
from core.score_store import store_scores
from core.training.config import TrainConfig
from core.workspace import Workspace

EMBEDDING_DIM = 32


def build_lot(folder: Path, n: int, seed: int = 0) -> Dataset:
    """A Dataset of ``n`` images (train 70% labelled ~10% bad, test 30%) backed by a workspace."""
    rng = np.random.default_rng(seed)
    workspace = Workspace(folder / "workspace", folder / "lot")
    splits = np.where(rng.random(n) < 0.7, "train", "test")
    labels = np.where(splits == "train", (rng.random(n) < 0.1).astype(np.int8), -1)
    relpaths = [f"{s}/{'bad_1' if lab == 1 else 'good_0' if lab == 0 else 'all_tests'}/{i}.png"
                for i, (s, lab) in enumerate(zip(splits, labels, strict=True))]
    with workspace.transaction() as con:
        con.executemany(
            "INSERT INTO images (id, relpath, size_bytes, mtime_ns, label, split, orig_width,"
            " orig_height) VALUES (?, ?, 0, 0, ?, ?, 275, 267)",
            [(i, relpaths[i], None if labels[i] < 0 else int(labels[i]), str(splits[i]))
             for i in range(n)])
    return Dataset(root=folder / "lot", workspace=workspace,
                   layout=Layout("kaggle", "benchmark rows"),
                   images=np.zeros((n, 1, 1), np.uint8), image_ids=np.arange(n, dtype=np.int64),
                   relpaths=relpaths, labels=labels.astype(np.int8), splits=splits)


def median_seconds(fn, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dataset = build_lot(folder, n)
        workspace = dataset.workspace
        run_id = create_run(workspace, TrainConfig(), device="cpu", parameters=0)
        update_run(workspace, run_id, status="finished")
        run = get_run(workspace, run_id)
        rng = np.random.default_rng(1)
        scores = rng.random(n)
        embeddings = rng.random((n, EMBEDDING_DIM), dtype=np.float32)
        set_flag(workspace, rng.choice(n, n // 100, replace=False), True)
        set_user_label(workspace, rng.choice(n, n // 200, replace=False), 1)

        print(f"{n:,} images, embeddings {n}x{EMBEDDING_DIM} (median of {args.repeats})")
        seconds = median_seconds(
            lambda: store_scores(workspace, run_id, dataset.image_ids, scores, embeddings),
            args.repeats)
        print(f"  store scores + embeddings  {seconds * 1000:8.1f} ms")
        for name in FILTERS:
            seconds = median_seconds(lambda name=name: ranked_images(dataset, run_id,
                                                                     filter=name),
                                     args.repeats)
            rows = len(ranked_images(dataset, run_id, filter=name))
            print(f"  rank filter={name:<14} {seconds * 1000:8.1f} ms  ({rows:,} rows)")
        seconds = median_seconds(lambda: ranked_images(dataset, run_id, split="test"),
                                 args.repeats)
        print(f"  rank split=test            {seconds * 1000:8.1f} ms")
        for label, export in (("flagged", export_flagged), ("scores", export_scores),
                              ("submission", export_submission)):
            path = folder / f"{label}.csv"
            seconds = median_seconds(lambda export=export, path=path: export(dataset, run, path),
                                     args.repeats)
            print(f"  export {label:<19} {seconds * 1000:8.1f} ms  "
                  f"({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
