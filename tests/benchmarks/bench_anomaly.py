"""Experiment: do good-only anomaly scores (no network trained) catch what the classifier misses?

For each recipe-suite data set (``bench_recipes.py``) it scores the test images with scores
that only compare a part with good training parts, and prints per style the test AUC of
each score alone, of its weighted rank-average fusion with each finished Quick run of the suite's
workspace (``--runs``, default 1 2 3 = seeds 0/1/2 on `mixed` and `single`; on `vertical`
the Quick seeds are runs 1 2 7), the AUC per defect kind (each kind against the test
good parts) and the seconds per test image:

- ``golden max`` / ``golden p99.9``: the golden reference of ``core.golden`` (median of the
  ``GOLDEN_K`` nearest good training parts, nearest by a 32-pixel thumbnail, each aligned by
  phase correlation and brightness-matched), at ``ROWS`` rows; the score is the maximum or
  the 99.9th percentile of the Gaussian-blurred absolute difference inside a border;
  ``golden z`` divides that difference by the robust spread of the aligned good parts at
  each pixel (a place where good parts differ anyway counts less).
- ``patch kNN``: PatchCore on fixed features: every 8x8 patch (stride ``PATCH_STRIDE``) of the
  image at ``ROWS`` rows, its pixels projected on the first ``PCA_DIMS`` principal components
  of good patches, plus its position (so a patch is compared with good patches near the same
  place); the score is the largest distance of a patch to its nearest patch in a memory
  bank subsampled from the good training parts.

Run (the data sets and the Quick runs exist after ``bench_recipes.py --preset quick``):
    DIESIGHT_HOME=.bench/recipes/home .venv/bin/python tests/benchmarks/bench_anomaly.py \\
        .bench/recipes/data/{mixed,single}-3000 --golden-only
    (same, .bench/recipes/data/vertical-3000 --runs 1 2 7 --golden-only --rows 0: full resolution)
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROWS = 134
GOLDEN_K = 8
BORDER = 4                  # pixels of the golden difference left out (shifted edges repeat)
BLUR_SIGMA = 1.0
SPREAD_FLOOR = 2.0          # grey levels added to the good parts' spread (golden z)
PATCH = 8
PATCH_STRIDE = 4
PCA_DIMS = 16
POSITION_WEIGHT = 2.0       # distance of one patch stride in position, in feature units
BANK_IMAGES = 300
BANK_SIZE = 40_000
FUSION_WEIGHTS = (0.5, 0.3, 0.15)  # rank weight of the anomaly score against the classifier's
SURFACE_KINDS = ("particle", "stain", "chipped_edge", "cracked_body", "bulged_body",
                 "solder_blob", "scratch")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="suite data sets (ground_truth.csv)")
    parser.add_argument("--runs", type=int, nargs="*", default=[1, 2, 3],
                        help="classifier runs to fuse with (default 1 2 3, the Quick seeds)")
    parser.add_argument("--rows", type=int, default=ROWS,
                        help=f"rows the images are compared at (default {ROWS}; 0: as cached)")
    parser.add_argument("--spread-floor", type=float, default=SPREAD_FLOOR,
                        help=f"grey levels added to the good spread (default {SPREAD_FLOOR})")
    parser.add_argument("--golden-only", action="store_true", help="skip the patch kNN score")
    args = parser.parse_args(argv)
    for folder in args.folders:
        report_style(folder, args.runs, args.rows, not args.golden_only, args.spread_floor)


def report_style(folder: Path, run_ids: list[int], rows_wanted: int, with_knn: bool,
                 spread_floor: float) -> None:
    from core.dataset import open_dataset

    dataset = open_dataset(folder)
    with open(folder / "ground_truth.csv", newline="") as handle:
        truth = {row["id"]: row for row in csv.DictReader(handle)}
    rows = [truth[Path(p).stem] for p in dataset.relpaths]
    split = np.array([r["split"] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    kinds = np.array([r["defect_type"] for r in rows])
    good_train = np.flatnonzero((split == "train") & (labels == 0))
    test = np.flatnonzero(split == "test")
    images = _resized(dataset, np.concatenate([good_train, test]), rows_wanted)
    goods, tests = images[:len(good_train)], images[len(good_train):]

    print(f"\n{folder.name}: {len(goods)} good training parts, {len(tests)} test "
          f"({labels[test].sum()} bad), {images.shape[1]}x{images.shape[2]} px", flush=True)
    scores, seconds = {}, {}
    started = time.perf_counter()
    golden = golden_scores(goods, tests, spread_floor)
    scores["golden max"], scores["golden p99.9"], scores["golden z"] = golden
    per_image = (time.perf_counter() - started) / len(tests)
    seconds["golden max"] = seconds["golden p99.9"] = seconds["golden z"] = per_image
    if with_knn:
        started = time.perf_counter()
        scores["patch kNN"] = patch_knn_scores(goods, tests)
        seconds["patch kNN"] = (time.perf_counter() - started) / len(tests)

    classifier = _classifier_scores(dataset, run_ids, test)
    test_labels, test_kinds = labels[test], kinds[test]
    for name, runs in classifier.items():
        print(f"  {name:14} AUC {_auc(runs, test_labels):.3f}")
    for name, values in scores.items():
        print(f"  {name:14} AUC {_auc(values, test_labels):.3f}  ({seconds[name]:.3f} s/image)")
        for weight in FUSION_WEIGHTS:
            fused = [_auc(_rank_fusion(c, values, weight), test_labels)
                     for c in classifier.values()]
            print(f"    fused, weight {weight:.2f}, with {', '.join(classifier)}: "
                  + " / ".join(f"{a:.3f}" for a in fused))
    _print_per_kind(scores, classifier, test_labels, test_kinds)


def _resized(dataset, positions: np.ndarray, rows: int) -> np.ndarray:
    height, _ = dataset.image_size
    factor = rows / height if rows else 1.0
    out = []
    for position in positions:
        image = np.asarray(dataset.images[int(dataset.image_ids[position])], dtype=np.float32)
        out.append(ndimage.zoom(image, factor, order=1) if factor != 1 else image)
    return np.stack(out)


def golden_scores(goods: np.ndarray, tests: np.ndarray,
                  spread_floor: float = SPREAD_FLOOR) -> tuple[np.ndarray, ...]:
    """Max and 99.9th percentile of the blurred |image - golden| of every test image, and
    the max of that difference divided by how much the aligned good parts vary there."""
    from core.golden import aligned, matched_brightness

    bank = _thumbnails(goods)
    queries = _thumbnails(tests)
    peak, high, standard = (np.empty(len(tests)) for _ in range(3))
    for i, image in enumerate(tests):
        nearest = np.argsort(((bank - queries[i]) ** 2).sum(axis=1))[:GOLDEN_K]
        stack = [matched_brightness(image, aligned(image, goods[j])[0]) for j in nearest]
        stack = np.stack(stack)
        golden = np.median(stack, axis=0)
        difference = ndimage.gaussian_filter(np.abs(image - golden), BLUR_SIGMA)
        inner = difference[BORDER:-BORDER, BORDER:-BORDER]
        peak[i], high[i] = inner.max(), np.percentile(inner, 99.9)
        # Robust spread of the good parts at each pixel (MAD), smoothed, with a floor so a
        # flat area does not turn sensor noise into a large ratio.
        spread = 1.4826 * np.median(np.abs(stack - golden), axis=0)
        spread = ndimage.gaussian_filter(spread, 2 * BLUR_SIGMA) + spread_floor
        standard[i] = (difference / spread)[BORDER:-BORDER, BORDER:-BORDER].max()
    return peak, high, standard


def _thumbnails(images: np.ndarray) -> np.ndarray:
    small = np.stack([ndimage.zoom(x, 32 / x.shape[0], order=1) for x in images])
    flat = small.reshape(len(small), -1)
    return (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-6)


def patch_knn_scores(goods: np.ndarray, tests: np.ndarray, seed: int = 0) -> np.ndarray:
    """Largest distance of a test patch to its nearest good patch (PatchCore on pixels)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(goods), size=min(BANK_IMAGES, len(goods)), replace=False)
    bank_patches, bank_places = _patches(goods[chosen])
    keep = rng.choice(len(bank_patches), size=min(BANK_SIZE, len(bank_patches)), replace=False)
    pca = PCA(n_components=PCA_DIMS, random_state=seed).fit(bank_patches[keep])
    bank = np.hstack([pca.transform(bank_patches[keep]), bank_places[keep]])
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(bank)
    scores = np.empty(len(tests))
    for start in range(0, len(tests), 50):
        patches, places = _patches(tests[start:start + 50])
        features = np.hstack([pca.transform(patches), places])
        distance, _ = index.kneighbors(features)
        per_image = distance[:, 0].reshape(len(tests[start:start + 50]), -1)
        scores[start:start + 50] = per_image.max(axis=1)
    return scores


def _patches(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n·p, PATCH²) patch pixels, brightness-normalised per image, and (n·p, 2) positions."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (PATCH, PATCH), axis=(1, 2))
    windows = windows[:, ::PATCH_STRIDE, ::PATCH_STRIDE]
    n, rows, cols = windows.shape[:3]
    means = images.mean(axis=(1, 2))[:, None, None, None, None]
    spreads = images.std(axis=(1, 2))[:, None, None, None, None] + 1e-6
    pixels = ((windows - means) / spreads).reshape(n * rows * cols, PATCH * PATCH)
    grid = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), axis=-1)
    places = np.broadcast_to(grid * POSITION_WEIGHT, (n, rows, cols, 2)).reshape(-1, 2)
    return pixels.astype(np.float32), places.astype(np.float32)


def _classifier_scores(dataset, run_ids: list[int], test: np.ndarray) -> dict[str, np.ndarray]:
    from core.score_store import aligned_scores

    found = {}
    for run_id in run_ids:
        try:
            values = aligned_scores(dataset, run_id)[test]
        except Exception as error:  # a run that is missing or never scored: report and go on
            print(f"  run {run_id}: no scores ({error})")
            continue
        if not np.isnan(values).any():
            found[f"run {run_id}"] = values
    return found


def _rank_fusion(classifier: np.ndarray, anomaly: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Weighted mean of the two scores' ranks (``weight`` on the anomaly score)."""
    from scipy.stats import rankdata

    return (1 - weight) * rankdata(classifier) + weight * rankdata(anomaly)


def _auc(values: np.ndarray, labels: np.ndarray) -> float:
    from core.metrics import roc_auc

    return roc_auc(np.asarray(values, dtype=np.float64), labels)


def _print_per_kind(scores, classifier, labels, kinds) -> None:
    good = labels == 0
    present = sorted(set(kinds[labels == 1]))
    columns = dict(scores)
    if classifier:
        first = next(iter(classifier))
        columns[first] = classifier[first]
        for name, values in scores.items():
            columns[f"{first}+{name}"] = _rank_fusion(classifier[first], values)
    print("  per kind (AUC against the test good parts; * surface kinds):")
    for kind in present:
        bad = kinds == kind
        chosen = good | bad
        mark = "*" if kind in SURFACE_KINDS else " "
        cells = "  ".join(f"{name} {_auc(v[chosen], labels[chosen]):.2f}"
                          for name, v in columns.items())
        print(f"   {mark}{kind:13} ({bad.sum():2}) {cells}")


if __name__ == "__main__":
    main()
