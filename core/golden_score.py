"""The golden-reference score: how far a part departs from good parts that look like it.

A classifier learns the defect kinds it was shown enough of; a mark of a kind it saw a
handful of times it memorises instead (README, "Why `vertical` fails"). This score needs no
bad examples: each part is compared with the golden reference of ``core.golden`` (the
pixel median of the ``GOLDEN_K`` good training parts whose thumbnails are nearest, each
aligned by phase correlation and brightness-matched), and the absolute difference is divided,
pixel by pixel, by how much those good parts vary there (their robust spread plus a floor of
``SPREAD_FLOOR`` grey levels). A place where good parts differ anyway (edges, texture,
resampling) counts less; a mark where they agree counts more. The score is the largest
ratio inside a border, at ``ROWS`` rows, where a 2–4-pixel mark is still visible.

A run trained with ``golden_weight`` > 0 keeps a **bank** next to its checkpoint
(``GOLDEN_FILE``): at most ``BANK_LIMIT`` of its good training parts at ``ROWS`` rows and
their thumbnails, and the reference that puts the two scores on one scale, measured on the
run's good holdout parts (which chose nothing). The run's defect score is then

    blend = (1 - w) * logit + w * (logit median + logit spread * golden z-score)

where the golden z-score is ``(log golden - its median) / its spread`` on those good parts:
the golden score expressed in the classifier's logit units. A logistic fit on the holdout
(slope > 0) turns the blend into the fused logit, so its probability is a defect
probability again; ranking, the threshold, AUC and exports all work on that one number.
A bank image identical to the part being scored (a training part scored later) is not its
own reference. Why this score, and the weight of the Quick preset: README, "The golden
reference in the Quick preset" (``tests/benchmarks/bench_anomaly.py``, ``bench_recipes.py``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from core.atomic import atomic_write
from core.golden import GOLDEN_K, aligned, matched_brightness, reference_spectrum
from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report

ROWS = 134
BANK_LIMIT = 2000
THUMB_ROWS = 32
BORDER = 4          # pixels left out at each edge (a shifted neighbour repeats its edge there)
BLUR_SIGMA = 1.0
SPREAD_FLOOR = 2.0  # grey levels: a flat area must not turn sensor noise into a large ratio
GOLDEN_FILE = "golden_bank.npz"
# Images per task of the thread pool (numpy's FFT and scipy's filters release the GIL).
CHUNK = 16


@dataclass(frozen=True)
class FusionReference:
    """Where the good holdout parts lie on each score: the scale the two are fused on."""

    weight: float
    logit_median: float
    logit_spread: float
    golden_median: float   # of log(golden score)
    golden_spread: float
    # The blend's calibration on the holdout (a logistic fit, slope > 0): the fused logit
    # is slope * blend + offset, so its probability means what the network's did.
    slope: float = 1.0
    offset: float = 0.0

    def blend(self, logits: np.ndarray, golden: np.ndarray) -> np.ndarray:
        """The weighted mean of the network's logit and the golden score on its scale."""
        z = (np.log(np.asarray(golden, dtype=np.float64)) - self.golden_median) \
            / self.golden_spread
        on_logit_scale = self.logit_median + self.logit_spread * z
        return (1 - self.weight) * np.asarray(logits, dtype=np.float64) \
            + self.weight * on_logit_scale

    def fuse(self, logits: np.ndarray, golden: np.ndarray) -> np.ndarray:
        """The run's defect logit from the network's logits and the golden scores."""
        return self.slope * self.blend(logits, golden) + self.offset


@dataclass
class GoldenBank:
    """Good parts to compare with (uint8 (n, ROWS, c)), their thumbnails, the reference."""

    images: np.ndarray
    thumbnails: np.ndarray
    reference: FusionReference | None = None

    def scores_for(self, dataset, positions: np.ndarray, progress: ProgressFn | None = None,
                   cancel: CancelCheck | None = None) -> np.ndarray:
        """The golden score of each of the dataset's images at ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        return golden_scores(self, len(positions),
                             lambda a, b: reduced_images(dataset, positions[a:b],
                                                         self.images.shape[1:]),
                             progress, cancel)


def reduced(image: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A cached image at ``shape`` (default ``ROWS`` rows, its own aspect ratio), rounded to
    whole grey levels (float32).

    Rounded like the bank's uint8 images, so a part that is also in the bank has exactly
    its bank image's thumbnail and is recognised as itself. A lot from another camera is
    brought to the bank's shape, as the network's input is to the run's.
    """
    image = np.asarray(image, dtype=np.float32)
    shape = shape or bank_shape(image.shape)
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    small = ndimage.zoom(image, factors, order=1) if factors != (1, 1) else image
    return np.clip(np.rint(small), 0, 255).astype(np.float32)


def bank_shape(image_shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) the bank keeps images of ``image_shape`` at."""
    return ROWS, max(1, round(image_shape[1] * ROWS / image_shape[0]))


def reduced_images(dataset, positions: np.ndarray,
                   shape: tuple[int, int] | None = None) -> np.ndarray:
    """``reduced`` of the dataset's images at ``positions``, float32 (m, rows, cols)."""
    ids = dataset.image_ids
    shape = tuple(shape) if shape is not None else bank_shape(dataset.image_size)
    if len(positions) == 0:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack([reduced(dataset.images[int(ids[int(p)])], shape) for p in positions])


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Flattened ``THUMB_ROWS``-row thumbnails at zero mean and unit spread (brightness-free),
    what "looks like" is measured on."""
    small = np.stack([ndimage.zoom(x, THUMB_ROWS / x.shape[0], order=1) for x in images])
    flat = small.reshape(len(small), -1)
    return ((flat - flat.mean(axis=1, keepdims=True))
            / (flat.std(axis=1, keepdims=True) + 1e-6)).astype(np.float32)


def build_bank(dataset, good_positions: np.ndarray, seed: int = 0) -> GoldenBank:
    """A bank of at most ``BANK_LIMIT`` of the good parts at ``good_positions`` (an even
    random draw, so each product keeps its share)."""
    good_positions = np.sort(np.asarray(good_positions, dtype=np.int64))
    if len(good_positions) == 0:
        raise ValueError("a golden bank needs at least one good training image")
    if len(good_positions) > BANK_LIMIT:
        rng = np.random.default_rng(seed)
        good_positions = np.sort(rng.choice(good_positions, BANK_LIMIT, replace=False))
    images = reduced_images(dataset, good_positions)
    return GoldenBank(images.astype(np.uint8), thumbnails(images))


def golden_scores(bank: GoldenBank, count: int, load, progress: ProgressFn | None = None,
                  cancel: CancelCheck | None = None) -> np.ndarray:
    """The golden scores of ``count`` images against ``bank``; ``load(a, b)`` gives images
    a..b-1 as :func:`reduced` makes them (read in chunks: 30,000 at once would not fit)."""
    out = np.empty(count, dtype=np.float64)
    goods = bank.images.astype(np.float32)
    starts = range(0, count, CHUNK)
    throttle = Throttle()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = [pool.submit(_score_chunk, goods, bank.thumbnails, load, s, min(s + CHUNK, count))
                for s in starts]
        try:
            for start, job in zip(starts, jobs, strict=True):
                check_cancel(cancel)
                out[start:start + CHUNK] = job.result()
                done = min(start + CHUNK, count)
                if throttle.ready(done == count):
                    report(progress, "golden", done, count,
                           f"golden reference {done}/{count}")
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
    return out


def _score_chunk(goods, bank_thumbs, load, start: int, stop: int) -> np.ndarray:
    images = load(start, stop)
    queries = thumbnails(images)
    return np.array([_score_one(goods, bank_thumbs, image, query)
                     for image, query in zip(images, queries, strict=True)])


def _score_one(goods: np.ndarray, bank_thumbs: np.ndarray, image: np.ndarray,
               query: np.ndarray) -> float:
    return float(_ratio_map(goods, bank_thumbs, image, query).max())


def _ratio_map(goods: np.ndarray, bank_thumbs: np.ndarray, image: np.ndarray,
               query: np.ndarray) -> np.ndarray:
    """|image - golden| / the good parts' spread, pixel by pixel, 0 in the border."""
    distance = ((bank_thumbs - query) ** 2).sum(axis=1)
    distance[distance == 0] = np.inf  # the part itself, when it is in the bank
    nearest = np.argsort(distance, kind="stable")[:GOLDEN_K]
    nearest = nearest[np.isfinite(distance[nearest])]
    if len(nearest) == 0:
        raise ValueError("the golden bank has no image other than the one being scored")
    spectrum = reference_spectrum(image)
    stack = np.stack([matched_brightness(image, aligned(image, goods[j], spectrum)[0])
                      for j in nearest])
    golden = np.median(stack, axis=0)
    difference = ndimage.gaussian_filter(np.abs(image - golden), BLUR_SIGMA)
    # Robust spread (MAD) of the aligned good parts at each pixel, smoothed, plus the floor.
    spread = 1.4826 * np.median(np.abs(stack - golden), axis=0)
    spread = ndimage.gaussian_filter(spread, 2 * BLUR_SIGMA) + SPREAD_FLOOR
    ratio = np.zeros_like(difference)
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    ratio[inner] = (difference / spread)[inner]
    return ratio


def ratio_maps(bank: GoldenBank, dataset, positions: np.ndarray) -> np.ndarray:
    """Where each image departs from its golden reference (float32 (n, ROWS, c)): the map
    whose maximum is its golden score (the viewer's "golden" heatmap)."""
    images = reduced_images(dataset, np.asarray(positions, dtype=np.int64),
                            bank.images.shape[1:])
    goods = bank.images.astype(np.float32)
    return np.stack([_ratio_map(goods, bank.thumbnails, image, query)
                     for image, query in zip(images, thumbnails(images), strict=True)])


def reference_from(weight: float, logits: np.ndarray, golden: np.ndarray) -> FusionReference:
    """The fusion reference from good parts' logits and golden scores (medians and MADs)."""
    def median_spread(values):
        values = np.asarray(values, dtype=np.float64)
        median = float(np.median(values))
        return median, max(1.4826 * float(np.median(np.abs(values - median))), 1e-6)

    if len(logits) == 0:
        raise ValueError("the fusion reference needs good holdout images")
    return FusionReference(weight, *median_spread(logits),
                           *median_spread(np.log(np.asarray(golden, dtype=np.float64))))


def has_golden(run) -> bool:
    """Whether a run's scores fuse a golden-reference score (its bank was built)."""
    return run.config.golden_weight > 0 and run.checkpoint is not None \
        and bank_path(run.checkpoint).is_file()


def bank_path(checkpoint: Path) -> Path:
    """Where a run keeps its bank: next to its checkpoint (an imported run shares it)."""
    return Path(checkpoint).parent / GOLDEN_FILE


def save_bank(path: Path, bank: GoldenBank) -> None:
    reference = json.dumps(asdict(bank.reference) if bank.reference else None)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, images=bank.images, thumbnails=bank.thumbnails,
                 reference=np.array(reference))


def load_bank(path: Path) -> GoldenBank | None:
    """The bank at ``path``; None when there is none (a run without the golden score)."""
    if not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        reference = json.loads(str(data["reference"]))
        return GoldenBank(data["images"], data["thumbnails"],
                          FusionReference(**reference) if reference else None)


def fit_bank(dataset, train_positions: np.ndarray, holdout_positions: np.ndarray,
             holdout_logits: np.ndarray, holdout_labels: np.ndarray, weight: float,
             seed: int = 0, progress: ProgressFn | None = None) -> tuple[GoldenBank, np.ndarray]:
    """A run's bank (its good training parts) with the fusion reference measured on its good
    holdout parts, and the holdout's fused logits (what its threshold is placed on)."""
    train_positions = np.asarray(train_positions, dtype=np.int64)
    goods = train_positions[np.asarray(dataset.labels)[train_positions] == 0]
    report(progress, "golden", 0, len(holdout_positions),
           f"golden reference: {min(len(goods), BANK_LIMIT)} good training parts")
    bank = build_bank(dataset, goods, seed)
    golden = bank.scores_for(dataset, holdout_positions, progress)
    labels = np.asarray(holdout_labels)
    good = labels == 0
    reference = reference_from(weight, np.asarray(holdout_logits)[good], golden[good])
    slope, offset = _calibration(reference.blend(holdout_logits, golden), labels)
    bank.reference = replace(reference, slope=slope, offset=offset)
    return bank, bank.reference.fuse(holdout_logits, golden)


def _calibration(blend: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, offset) of a logistic fit of the labels on the blend (Platt scaling); the
    identity when the holdout cannot support one (one class only, or a slope <= 0).

    The blend's scale is the network's only for the good parts; a defect the golden
    reference sees has a blend far above any the network gives, so without this its
    probability would not mean a defect rate. Monotone: ranking, AUC and which parts
    a threshold passes stay as they are.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4).fit(np.asarray(blend).reshape(-1, 1), labels)
    slope = float(fit.coef_[0, 0])
    return (slope, float(fit.intercept_[0])) if slope > 0 else (1.0, 0.0)


def load_reference(checkpoint: Path) -> FusionReference | None:
    """Only the fusion reference of a run's bank (without reading its images)."""
    path = bank_path(checkpoint)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        reference = json.loads(str(data["reference"]))
    return FusionReference(**reference) if reference else None


def explain_parts(reference: FusionReference, network_logit: float, golden: float) -> str:
    """One line for the viewer: what a fused score was made of, against the good parts."""
    typical = float(np.exp(reference.golden_median))
    fused = float(reference.fuse([network_logit], [golden])[0])
    return (f"network logit {network_logit:+.2f} (weight {1 - reference.weight:.2g}), golden "
            f"reference {golden:.1f} where good parts reach ≈ {typical:.1f} (weight "
            f"{reference.weight:.2g}) → defect probability {1 / (1 + np.exp(-fused)):.3f}")
