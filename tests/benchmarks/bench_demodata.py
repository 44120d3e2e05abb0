"""Benchmark: how fast ``generate_demo_data`` writes a demo set (target: 30,000 images < 3 min).

Usage:
    .venv/bin/python tests/benchmarks/bench_demodata.py [--n 30000] [--workers W] [--seed S]
                                                        [--brightness-auc]
                                                        [--style NAME | --all-styles]

Writes into a temporary folder (deleted afterwards) and prints images/s and the total time, plus
the load average before and after, because on a shared machine other jobs skew the numbers.
``--brightness-auc`` also prints how well mean image brightness alone separates bad from good
(ROC AUC; near 0.5 means exposure gives the defects away no more than chance). A style
whose AUC is far from 0.5 is a bad style: a recipe could pass it on brightness alone.
``--all-styles`` runs every registered demo style in turn and ends with a table of them.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from core.demodata import FOLDERS, GROUND_TRUTH_NAME, generate_demo_data
from core.demostyles import DEFAULT_STYLE, STYLES
from core.progress import Progress


def _load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def brightness_auc(root: Path) -> float:
    """ROC AUC of mean pixel value as a defect score, over the whole written set."""
    with open(root / GROUND_TRUTH_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = [int(r["label"]) for r in rows]
    means = [np.asarray(Image.open(root / FOLDERS[r["split"], int(r["label"])] / f"{r['id']}.jpg"))
             .mean() for r in rows]
    return float(roc_auc_score(labels, means))


def _progress(p: Progress, last: list[float]) -> None:
    now = time.monotonic()
    if now - last[0] >= 10 or p.done == p.total:
        last[0] = now
        print(f"  {p.done}/{p.total} {p.message}", file=sys.stderr)


def run_style(args: argparse.Namespace, style: str) -> float | None:
    """Writes one set of ``style``, prints its speed; returns its brightness AUC if asked."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-demodata-"))
    last = [0.0]
    try:
        start = time.perf_counter()
        summary = generate_demo_data(tmp / "demo", n=args.n, bad_fraction=args.bad_fraction,
                                     seed=args.seed, workers=args.workers, style=style,
                                     progress=lambda p: _progress(p, last))
        total = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (tmp / "demo").rglob("*.jpg"))
        auc = brightness_auc(tmp / "demo") if args.brightness_auc else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"style: {style}  images: {summary.images}  workers: {args.workers or 'auto'}  "
          f"total: {total:.1f} s  rate: {summary.images / total:.0f} images/s  "
          f"disk: {size / 2**20:.0f} MiB")
    if auc is not None:
        print(f"mean-brightness ROC AUC (bad vs good, all {summary.images} images): {auc:.4f}")
    return auc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30000, help="images to write (default 30000)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-fraction", type=float, default=0.1)
    parser.add_argument("--brightness-auc", action="store_true",
                        help="also print the ROC AUC of mean brightness as a defect score")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--style", choices=list(STYLES), default=DEFAULT_STYLE,
                       help=f"demo style to write (default {DEFAULT_STYLE})")
    which.add_argument("--all-styles", action="store_true", help="every style in turn")
    args = parser.parse_args(argv)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPUs available: {cpus}; load average before (1/5/15 min): {_load()}")
    styles = list(STYLES) if args.all_styles else [args.style]
    aucs = {style: run_style(args, style) for style in styles}
    print(f"load average after: {_load()}")
    if len(styles) > 1 and args.brightness_auc:
        print("style      mean-brightness AUC")
        for style, auc in aucs.items():
            print(f"{style:<10} {auc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
