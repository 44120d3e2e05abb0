"""Benchmark: do the heatmaps point at the defect? Pointing game and energy on demo boxes.

Run (makes a demo set and trains a small run when none is given):
    .venv/bin/python tests/benchmarks/bench_explain.py
    .venv/bin/python tests/benchmarks/bench_explain.py --data DEMO --run 3 --methods gradcam

The demo generator writes each defect's box into ``ground_truth.csv`` (bbox_x, bbox_y,
bbox_w, bbox_h). For every bad TEST image (never trained on) and every method:

* **pointing game**: a hit when the heatmap's maximum lies inside the box grown by 4 px;
* **energy in box**: the share of the map's total inside the (grown) box;
* **ms per image** on this machine's CPU (or ``--device cuda``), computing from scratch.

Boxes of defects that concern the whole part (rotated, shifted, two parts, empty pocket,
overexposed) cover 15-35 % of the frame, where a hit is easy and says little: boxes larger
than ``--local-share`` of the frame (default 10 %) are reported apart, and the headline hit
rate is over the local defects only. A "centre" row (a map peaking at the image centre, no
model at all) shows what chance placement scores on the same boxes.

Timings are wall times on a possibly shared machine; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GROW_PX = 4


@dataclass
class Box:
    image_id: int
    kind: str
    x: int
    y: int
    w: int
    h: int


@dataclass
class Score:
    hits: list[bool] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    by_kind: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))


def parse_args(argv=None) -> argparse.Namespace:
    from core.explain_methods import METHODS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None, help="a demo folder with ground_truth.csv")
    p.add_argument("--run", default=None, help="a trained run of DATA (default: train one)")
    p.add_argument("--root", type=Path, default=ROOT / ".bench" / "explain")
    p.add_argument("--n", type=int, default=900, help="demo images when generating (900)")
    p.add_argument("--model", default="designed_resnet", help="model to train when no --run")
    p.add_argument("--image-size", type=int, default=160, help="training rows (160)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-images", type=int, default=80, help="bad test images per method")
    p.add_argument("--local-share", type=float, default=0.10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def prepare(args):
    """(dataset, run): the given ones, or a generated demo set and a freshly trained run."""
    os.environ.setdefault("DIESIGHT_HOME", str(args.root / "home"))
    from core.dataset import open_dataset
    from core.demodata import generate_demo_data
    from core.runs import resolve_run

    data = args.data or args.root / f"demo-{args.n}"
    if not (data / "ground_truth.csv").is_file():
        generate_demo_data(data, n=args.n, bad_fraction=0.3, seed=11)
    dataset = open_dataset(data)
    if args.run is not None:
        return dataset, resolve_run(dataset.workspace, args.run)
    return dataset, train_small(dataset, args)


def train_small(dataset, args):
    from core.training.config import TrainConfig
    from core.training.trainer import train

    config = TrainConfig(model=args.model, image_size=args.image_size, sampler="B",
                         per_class=args.per_class, epochs=args.epochs, batch_size=32,
                         lr=3e-3, device=args.device, num_threads=args.threads,
                         early_stopping_patience=0)
    started = time.perf_counter()
    run = train(dataset, config)
    print(f"trained run {run.id} ({args.model}, {args.image_size} rows) in "
          f"{time.perf_counter() - started:.0f} s: holdout AUC {run.val_auc:.3f}")
    return run


def read_boxes(dataset, truth: Path) -> list[Box]:
    """The bad test images of ``truth`` that have a box, with the dataset's image ids."""
    by_stem = dict(zip(dataset.ids, dataset.image_ids.tolist(), strict=True))
    boxes = []
    with open(truth, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["label"] != "1" or row["split"] != "test" or not row["bbox_w"]:
                continue
            if row["id"] in by_stem:
                boxes.append(Box(by_stem[row["id"]], row["defect_type"],
                                 *(int(row[k]) for k in ("bbox_x", "bbox_y", "bbox_w",
                                                         "bbox_h"))))
    return boxes


def grown_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[max(0, box.y - GROW_PX):box.y + box.h + GROW_PX,
         max(0, box.x - GROW_PX):box.x + box.w + GROW_PX] = True
    return mask


def judge(heat: np.ndarray, box: Box) -> tuple[bool, float]:
    """(pointing-game hit, share of the map's energy inside the grown box)."""
    heat = np.asarray(heat, dtype=np.float32)
    mask = grown_mask(box, heat.shape)
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    total = float(heat.sum())
    return bool(mask[peak]), float(heat[mask].sum() / total) if total > 0 else 0.0


def centre_map(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-(((rows - shape[0] / 2) / (shape[0] / 4)) ** 2
                    + ((cols - shape[1] / 2) / (shape[1] / 4)) ** 2))


def score_maps(maps, boxes: list[Box], local: set[int]) -> tuple[Score, Score]:
    """(local-defect score, whole-part score) of maps aligned with ``boxes``."""
    scores = (Score(), Score())
    for heat, box in zip(maps, boxes, strict=True):
        hit, energy = judge(heat, box)
        target = scores[0] if box.image_id in local else scores[1]
        target.hits.append(hit)
        target.energy.append(energy)
        target.by_kind[box.kind].append(hit)
    return scores


def fmt(score: Score) -> str:
    if not score.hits:
        return "      -          -"
    return f"{100 * np.mean(score.hits):5.1f} % ({len(score.hits):3d})  {np.mean(score.energy):.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from core.explain import explain

    dataset, run = prepare(args)
    boxes = read_boxes(dataset, Path(dataset.root) / "ground_truth.csv")[:args.max_images]
    frame = dataset.image_size[0] * dataset.image_size[1]
    local = {b.image_id for b in boxes if b.w * b.h <= args.local_share * frame}
    ids = np.array([b.image_id for b in boxes], dtype=np.int64)
    print(f"run {run.id} ({run.model}, {run.config.image_size} rows, holdout AUC "
          f"{run.val_auc if run.val_auc is None else round(run.val_auc, 3)}); "
          f"{len(boxes)} bad test images with boxes: {len(local)} local, "
          f"{len(boxes) - len(local)} whole-part (box > {args.local_share:.0%} of the frame)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, torch threads "
          f"{args.threads}, device {args.device}")
    header = (f"{'method':<22}{'hit local':>15}  {'energy':>6}   {'hit whole-part':>15}  "
              f"{'energy':>6}   {'ms/image':>8}")
    print(header)
    print("-" * len(header))
    centre = [centre_map(dataset.image_size)] * len(boxes)
    rows = {"centre (no model)": (*score_maps(centre, boxes, local), 0.0)}
    for method in args.methods.split(","):
        started = time.perf_counter()
        maps = explain(dataset, run, ids, method, device=args.device, store=False,
                       use_cache=False)
        ms = 1000 * (time.perf_counter() - started) / len(ids)
        rows[method] = (*score_maps(maps.maps, boxes, local), ms)
    for name, (loc, whole, ms) in rows.items():
        print(f"{name:<22}{fmt(loc)}   {fmt(whole)}   {ms:8.0f}")
    print_kinds(rows)
    best = max((m for m in rows if m != "centre (no model)"),
               key=lambda m: (np.mean(rows[m][0].hits or [0]), np.mean(rows[m][0].energy or [0])))
    print(f"\nbest localisation for {run.model}: {best} "
          f"({100 * np.mean(rows[best][0].hits):.1f} % of local defects hit, "
          f"{rows[best][2]:.0f} ms per image)")
    return 0


def print_kinds(rows) -> None:
    """Hit rate per defect kind (local and whole-part together), one column per method."""
    methods = [m for m in rows if m != "centre (no model)"]
    kinds = sorted({k for m in methods for s in rows[m][:2] for k in s.by_kind})
    print("\nhits per defect kind: " + "  ".join(f"{m[:12]:>12}" for m in methods))
    for kind in kinds:
        cells = []
        for m in methods:
            hits = rows[m][0].by_kind.get(kind, []) + rows[m][1].by_kind.get(kind, [])
            cells.append(f"{sum(hits):>5}/{len(hits):<6}" if hits else f"{'-':>12}")
        print(f"  {kind:<19}" + "  ".join(f"{c:>12}" for c in cells))


if __name__ == "__main__":
    raise SystemExit(main())
