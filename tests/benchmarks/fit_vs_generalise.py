"""Does a run fit its training defects, and does that carry over to the test images?

For finished, scored runs of a recipe-suite data set (``bench_recipes.py``), prints the AUC
on the selection images (which chose the epoch), the holdout, the test and the training
images, and per defect kind the AUC of that kind against the good images of the same part
(training or test). A kind near 1.0 on training and near 0.5 on test is memorised, not learnt.

Run (the runs' workspace lives under the benchmark's home):
    DIESIGHT_HOME=.bench/recipes/home .venv/bin/python tests/benchmarks/fit_vs_generalise.py \\
        .bench/recipes/data/vertical-3000 1 11
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a suite data set (with ground_truth.csv)")
    parser.add_argument("runs", type=int, nargs="+", help="run ids in its workspace")
    args = parser.parse_args(argv)

    from core.dataset import open_dataset

    dataset = open_dataset(args.folder)
    with open(args.folder / "ground_truth.csv", newline="") as handle:
        truth = {row["id"]: row for row in csv.DictReader(handle)}
    pairs = zip(dataset.image_ids, dataset.relpaths, strict=True)
    rows = {int(i): truth[Path(p).stem] for i, p in pairs}
    for run_id in args.runs:
        report_run(dataset.workspace, run_id, rows)


def report_run(workspace, run_id: int, rows: dict[int, dict]) -> None:
    from core.scores import load_scores

    from core.runs import holdout_ids, selection_ids

    ids, values = load_scores(workspace, run_id)
    scores = dict(zip(ids.tolist(), values.tolist(), strict=True))
    if not scores:
        print(f"run {run_id}: no scores (score it first)")
        return
    selection = set(selection_ids(workspace, run_id).tolist())
    holdout = set(holdout_ids(workspace, run_id).tolist())
    test = {i for i in scores if rows[i]["split"] == "test"}
    train = set(scores) - selection - holdout - test
    parts = {"selection": selection, "holdout": holdout, "test": test, "train": train}
    print(f"run {run_id}: " + "  ".join(
        f"{name} {_auc(scores, rows, part):.3f}" for name, part in parts.items()))
    for name in ("train", "test"):
        print(f"  {name:5} per kind: {_per_kind(scores, rows, parts[name])}")


def _auc(scores: dict, rows: dict, part: set[int]) -> float:
    from core.metrics import roc_auc

    chosen = [i for i in part if i in scores]
    if not chosen:
        return float("nan")
    labels = np.array([int(rows[i]["label"]) for i in chosen], dtype=np.int64)
    return roc_auc(np.array([scores[i] for i in chosen]), labels)


def _per_kind(scores: dict, rows: dict, part: set[int]) -> str:
    goods = {i for i in part if rows[i]["label"] == "0"}
    kinds = sorted({rows[i]["defect_type"] for i in part} - {"none"})
    texts = []
    for kind in kinds:
        bad = {i for i in part if rows[i]["defect_type"] == kind}
        texts.append(f"{kind} {_auc(scores, rows, goods | bad):.2f} ({len(bad)})")
    return ", ".join(texts)


if __name__ == "__main__":
    main()
