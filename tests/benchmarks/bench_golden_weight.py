"""Experiment: which golden weight, chosen on the whole suite, not on one style?

For finished runs of the recipe suite (``bench_recipes.py``; by default the Quick runs of
seeds 0/1/2 of the data-seed-1 ``3000`` sets), it builds each run's golden bank as training
would (``core.golden_score``: the run's good training parts, its seed), scores the run's
holdout and the TEST images with the current golden score, and fuses them with the run's
stored network logits at each weight of ``--weights``, the fusion reference measured on
the run's good holdout parts exactly as in training. Printed per style: the test AUC of
each weight, mean over the runs [worst run], and the share of defects escaping at 2 %
false calls (mean over the runs); the mean over the styles; and the weight the
rule picks: the highest mean over the styles among the weights that leave no style's mean
below its network alone (weight 0). The fused logit's Platt calibration is monotone, so it
changes no AUC and is left out. With ``--stored`` the runs are golden runs and their own
stored parts (network logit and golden score of every image) are fused instead: the same
runs at another weight, with nothing recomputed.

Run (the data sets and runs exist after ``bench_recipes.py --preset quick --sizes 3000``):
    DIESIGHT_HOME=.bench/recipes/home .venv/bin/python tests/benchmarks/bench_golden_weight.py \\
        .bench/recipes/data/mixed-3000=1,2,3 .bench/recipes/data/single-3000=1,2,3 \\
        .bench/recipes/data/vertical-3000=1,2,7
    (fresh data, golden runs of bench_recipes.py --data-seed 3 --root .bench/confirm3:)
    DIESIGHT_HOME=.bench/confirm3/home .venv/bin/python tests/benchmarks/bench_golden_weight.py \
        --stored .bench/confirm3/data/{mixed,single,vertical}-3000-d3=1,2,3
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

WEIGHTS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ESCAPE_AT = 0.02  # false-call rate the escapes are counted at


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", metavar="FOLDER=RUN,RUN",
                        help="a suite data set (with ground_truth.csv) and its runs")
    parser.add_argument("--weights", default=",".join(map(str, WEIGHTS)))
    parser.add_argument("--stored", action="store_true",
                        help="fuse the golden runs' stored parts instead of building banks")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    table = {}
    for item in args.sets:
        folder, _, runs = item.partition("=")
        table[Path(folder).name] = [style_run(Path(folder), int(r), weights, args.stored)
                                    for r in runs.split(",")]
    print_table(table, weights)


def style_run(folder: Path, run_id: int, weights: list[float],
              stored: bool) -> list[tuple[float, float]]:
    """(test AUC, share escaping at 2 % false calls) of the run's fused score per weight."""
    from core.dataset import open_dataset
    from core.evaluation import operating_point
    from core.golden_score import reference_from
    from core.metrics import roc_auc
    from core.runs import get_run, holdout_ids

    started = time.perf_counter()
    dataset = open_dataset(folder)
    run = get_run(dataset.workspace, run_id)
    test, test_labels = _test_images(dataset, folder)
    holdout = dataset.positions(holdout_ids(dataset.workspace, run.id))
    logits, golden = (_stored_parts if stored else _fresh_parts)(dataset, run, holdout, test)
    good = holdout[dataset.labels[holdout] == 0]
    results = []
    for weight in weights:
        fused = reference_from(weight, logits[good], golden[good]).blend(logits[test],
                                                                          golden[test])
        escapes = operating_point(fused, test_labels, ESCAPE_AT).escapes.value
        results.append((roc_auc(fused, test_labels), escapes))
    print(f"{folder.name} run {run.id} (seed {run.config.seed}): network {results[0][0]:.3f}, "
          f"golden {roc_auc(np.log(golden[test]), test_labels):.3f}, "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return results


def _fresh_parts(dataset, run, holdout: np.ndarray, test: np.ndarray):
    """The run's network logits and, for its holdout and test images, golden scores from a
    bank built as its training would build it (NaN elsewhere)."""
    from core.golden_score import build_bank
    from core.runs import validation_ids

    held_out = dataset.positions(validation_ids(dataset.workspace, run.id))
    labelled = np.flatnonzero((dataset.splits == "train") & (dataset.labels >= 0))
    train = np.setdiff1d(labelled, held_out)
    bank = build_bank(dataset, train[dataset.labels[train] == 0], run.config.seed)
    golden = np.full(len(dataset.image_ids), np.nan)
    golden[holdout] = bank.scores_for(dataset, holdout)
    golden[test] = bank.scores_for(dataset, test)
    return _network_logits(dataset, run.id), golden


def _stored_parts(dataset, run, holdout: np.ndarray, test: np.ndarray):
    """A golden run's stored network logits and golden scores."""
    from core.score_store import aligned_parts

    parts = aligned_parts(dataset, run.id)
    if parts is None:
        raise SystemExit(f"run {run.id} of {dataset.root} has no golden parts (--stored)")
    return parts.network_logits, parts.golden


def _network_logits(dataset, run_id: int) -> np.ndarray:
    """The network's own logit of every image (a golden run keeps it beside the fused one)."""
    from core.score_store import aligned_logits, aligned_parts

    parts = aligned_parts(dataset, run_id)
    return aligned_logits(dataset, run_id) if parts is None else parts.network_logits


def _test_images(dataset, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions and labels of the TEST images, from the answer key."""
    with open(folder / "ground_truth.csv", newline="") as handle:
        truth = {row["id"]: row for row in csv.DictReader(handle)}
    rows = [truth[Path(p).stem] for p in dataset.relpaths]
    test = np.array([i for i, row in enumerate(rows) if row["split"] == "test"])
    return test, np.array([int(rows[i]["label"]) for i in test])


def print_table(table: dict[str, list[list[tuple[float, float]]]],
                weights: list[float]) -> None:
    print("\ntest AUC per weight: mean over runs [worst run]; escaping at 2 % false calls")
    print(f"{'style':<18}" + "".join(f"{w:>22.2g}" for w in weights))
    means = {}
    for style, runs in table.items():
        values = np.array(runs)  # (runs, weights, 2)
        means[style] = values[:, :, 0].mean(axis=0)
        cells = zip(means[style], values[:, :, 0].min(axis=0), values[:, :, 1].mean(axis=0),
                    strict=True)
        print(f"{style:<18}" + "".join(f"{m:>9.3f} [{low:.3f}] {e:>4.0%}"
                                        for m, low, e in cells))
    overall = np.mean(list(means.values()), axis=0)
    print(f"{'mean of styles':<18}" + "".join(f"{m:>22.3f}" for m in overall))
    allowed = [i for i in range(len(weights))
               if all(means[s][i] >= means[s][0] for s in means)]
    best = max(allowed, key=lambda i: overall[i])
    print(f"\nrule (highest mean, no style below its network alone): weight {weights[best]:g} "
          f"(mean {overall[best]:.3f})")


if __name__ == "__main__":
    main()
