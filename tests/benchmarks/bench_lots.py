"""Benchmark: a new lot beside a dataset — reopen cost, adding it, scoring only the lot.

Prints (not a test):

* reopening the unchanged dataset before and after a lot is registered (median of a few;
  the lot adds one folder walk per open),
* adding the lot (walk + decode of its images into the dataset's cache),
* scoring only the lot's images (merged into the run's scores) against scoring every
  image, with an untrained run at the tests' small input size (the ratio is the point).

Goals: reopen with a lot < 1 s for 30,000 + 30,000 images; scoring only the lot costs
about lot / (dataset + lot) of a full pass.

Usage::

    python tests/benchmarks/bench_lots.py [--n 3000] [--lot-n 3000] [--workers N]

Timings on a shared machine are noisy: run it twice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:  # run as a script from a checkout
        sys.path.insert(0, str(path))

GOAL_REOPEN_S = 1.0


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def median_reopen(root: Path, rounds: int = 5) -> float:
    from core.dataset import open_dataset

    return statistics.median(timed(open_dataset, root)[0] for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="dataset images (3000)")
    parser.add_argument("--lot-n", type=int, default=3000, help="lot images (3000)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-lots-") as tmp:
        os.environ["DIESIGHT_HOME"] = str(Path(tmp) / "home")
        from scoring_fixtures import make_run

        from core.dataset import open_dataset
        from core.demodata import generate_demo_data
        from core.lots import add_lot, lot_image_ids
        from core.scoring import score_dataset

        data, lot = Path(tmp) / "data", Path(tmp) / "lot"
        print(f"generating {args.n:,} + {args.lot_n:,} demo images ...", flush=True)
        generate_demo_data(data, n=args.n, seed=1, workers=args.workers)
        generate_demo_data(lot, n=args.lot_n, seed=2, workers=args.workers)

        first_s, dataset = timed(open_dataset, data, workers=args.workers)
        print(f"first open of the dataset:   {first_s:7.2f} s ({len(dataset):,} images)")
        before_s = median_reopen(data)
        print(f"reopen without a lot:        {before_s:7.3f} s (median of 5)")

        add_s, updated = timed(add_lot, dataset, lot, "bench", workers=args.workers)
        lot_ids = lot_image_ids(updated, "bench")
        print(f"add_lot (walk + decode):     {add_s:7.2f} s ({len(lot_ids):,} images, "
              f"{len(lot_ids) / add_s:,.0f}/s)")
        after_s = median_reopen(data)
        verdict = "ok" if after_s < GOAL_REOPEN_S else "SLOW"
        print(f"reopen with the lot:         {after_s:7.3f} s (median of 5; goal < "
              f"{GOAL_REOPEN_S:.0f} s: {verdict})")

        run = make_run(updated.workspace)
        full_s, _ = timed(score_dataset, updated, run, device="cpu")
        lot_s, _ = timed(score_dataset, updated, run, device="cpu", only_ids=lot_ids)
        share = len(lot_ids) / len(updated)
        print(f"score every image:           {full_s:7.2f} s ({len(updated):,} images, "
              "64-row input, CPU)")
        print(f"score only the lot (merge):  {lot_s:7.2f} s ({lot_s / full_s:.2f} of a full "
              f"pass; the lot is {share:.2f} of the images)")


if __name__ == "__main__":
    main()
