"""The golden-reference score: how far a part departs from good parts that look like it.

A classifier learns the defect kinds it was shown enough of; a mark of a kind it saw a
handful of times it memorises instead (README, "Why `vertical` fails"). This score needs no
bad examples: each part is compared with its golden reference (the pixel median of the
``GOLDEN_K`` good bank parts whose thumbnails are nearest, each aligned by phase
correlation and brightness-matched, as in ``core.golden``), and the absolute difference is
divided, pixel by pixel, by how much those good parts vary there (their root-mean-square
departure from the golden, smoothed, plus a floor of ``SPREAD_FLOOR`` grey levels). A place
where good parts differ anyway (edges, texture, resampling) counts less; a mark where they
agree counts more. That ratio is taken at each blur of ``SCALES`` (the difference and the
departures blurred alike: a one-pixel scratch is sharpest unblurred, a faint stain stands
out of the noise once blurred), and each scale's largest ratio inside a border is
compared with how large it gets on good parts (the bank's own parts, each scored against
the others, ``NULL_PARTS`` of them): the scale where the part stands out most sets its
score, expressed in the finest scale's units. All at ``ROWS`` rows, where a 2–4-pixel mark
is still visible.

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
from functools import cached_property
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
SCALES = (0.0, 0.5, 1.0)  # Gaussian blurs (sigma, pixels at ROWS rows) of the difference
SPREAD_FLOOR = 1.0  # grey levels: a flat area must not turn sensor noise into a large ratio
NULL_PARTS = 200    # bank parts scored against the rest: how large each scale gets on good
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
        network, golden_part = self.parts(logits, golden)
        return self.logit_median + network + golden_part

    def parts(self, logits: np.ndarray, golden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(network part, golden part) of each blend above the good parts' median: what
        each score adds, in logit units; they sum to ``blend - logit_median``."""
        z = (np.log(np.asarray(golden, dtype=np.float64)) - self.golden_median) \
            / self.golden_spread
        network = (1 - self.weight) * (np.asarray(logits, dtype=np.float64)
                                       - self.logit_median)
        return network, self.weight * self.logit_spread * z

    def network_decides(self, logits: np.ndarray, golden: np.ndarray) -> np.ndarray:
        """bool per score: the network's part weighs more than the golden's (the fused
        heatmap then shows the network's map)."""
        network, golden_part = self.parts(logits, golden)
        return network > golden_part

    def fuse(self, logits: np.ndarray, golden: np.ndarray) -> np.ndarray:
        """The run's defect logit from the network's logits and the golden scores."""
        return self.slope * self.blend(logits, golden) + self.offset


@dataclass
class GoldenBank:
    """Good parts to compare with (uint8 (n, ROWS, c)), their thumbnails, how large each
    scale's ratio gets on good parts, and the fusion reference."""

    images: np.ndarray
    thumbnails: np.ndarray
    # (len(SCALES), 2): median and robust spread of each scale's log peak ratio on good parts.
    scale_reference: np.ndarray | None = None
    reference: FusionReference | None = None

    @cached_property
    def goods(self) -> np.ndarray:
        """The bank's images as float32, converted once (the viewer asks image by image)."""
        return self.images.astype(np.float32)

    def warm_up(self) -> None:
        """Compare one bank part with the others: the first comparison pays for numpy's
        and scipy's lazy set-up (about a second), which a user pressing H should not."""
        _scale_ratios(self.goods, self.thumbnails, self.goods[0], self.thumbnails[0])

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
    random draw, so each product keeps its share), with its scale reference."""
    good_positions = np.sort(np.asarray(good_positions, dtype=np.int64))
    if len(good_positions) < 2:
        raise ValueError("a golden bank needs at least two good training images")
    if len(good_positions) > BANK_LIMIT:
        rng = np.random.default_rng(seed)
        good_positions = np.sort(rng.choice(good_positions, BANK_LIMIT, replace=False))
    images = reduced_images(dataset, good_positions)
    bank = GoldenBank(images.astype(np.uint8), thumbnails(images))
    bank.scale_reference = _scale_reference(bank, seed)
    return bank


def _scale_reference(bank: GoldenBank, seed: int) -> np.ndarray:
    """Median and robust spread of each scale's log peak ratio over ``NULL_PARTS`` bank
    parts, each scored against the others (a part is never its own reference)."""
    rng = np.random.default_rng(seed)
    count = min(NULL_PARTS, len(bank.images))
    chosen = np.sort(rng.choice(len(bank.images), count, replace=False))
    peaks = scale_peaks(bank, count, lambda a, b: bank.goods[chosen[a:b]])
    log_peaks = _log(peaks)
    median = np.median(log_peaks, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(log_peaks - median), axis=0), 1e-6)
    return np.stack([median, spread], axis=1)


def golden_scores(bank: GoldenBank, count: int, load, progress: ProgressFn | None = None,
                  cancel: CancelCheck | None = None) -> np.ndarray:
    """The golden scores of ``count`` images against ``bank``; ``load(a, b)`` gives images
    a..b-1 as :func:`reduced` makes them (read in chunks: 30,000 at once would not fit)."""
    return combined_scales(bank.scale_reference,
                           scale_peaks(bank, count, load, progress, cancel))


def combined_scales(scale_reference: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Ratios per scale (last axis) as one value in the finest scale's units: each scale's
    log ratio as a z-score against good parts; the largest, mapped back onto scale 0."""
    median, spread = scale_reference[:, 0], scale_reference[:, 1]
    standing_out = ((_log(ratios) - median) / spread).max(axis=-1)
    # The border of a map (0 at every scale) stays 0.
    return np.where(ratios.max(axis=-1) > 0, np.exp(median[0] + spread[0] * standing_out), 0)


def _log(ratios: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(ratios, 1e-12))


def scale_peaks(bank: GoldenBank, count: int, load, progress: ProgressFn | None = None,
                cancel: CancelCheck | None = None) -> np.ndarray:
    """The largest ratio at each scale (float64 (count, len(SCALES))) of ``count`` images."""
    out = np.empty((count, len(SCALES)), dtype=np.float64)
    goods = bank.goods
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
    return np.stack([_scale_ratios(goods, bank_thumbs, image, query).max(axis=(1, 2))
                     for image, query in zip(images, queries, strict=True)])


def _scale_ratios(goods: np.ndarray, bank_thumbs: np.ndarray, image: np.ndarray,
                  query: np.ndarray) -> np.ndarray:
    """|image - golden| / the good parts' spread, pixel by pixel, at each of ``SCALES``
    (float32 (len(SCALES), rows, cols)), 0 in the border."""
    stack = _aligned_neighbours(goods, bank_thumbs, image, query)
    golden = np.median(stack, axis=0)
    departures = stack - golden
    difference = image - golden
    ratios = np.zeros((len(SCALES), *image.shape), dtype=np.float32)
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    for i, sigma in enumerate(SCALES):
        # Blurred before the absolute value, so noise averages out and a faint stain does
        # not; divided by the good parts' root-mean-square departure at the same blur,
        # smoothed over the neighbourhood (16 values per pixel are few), plus the floor.
        variance = (ndimage.gaussian_filter(departures, (0, sigma, sigma)) ** 2).mean(axis=0)
        spread = np.sqrt(ndimage.gaussian_filter(variance, max(1.0, 2 * sigma))) + SPREAD_FLOOR
        blurred = np.abs(ndimage.gaussian_filter(difference, sigma))
        ratios[i][inner] = (blurred / spread)[inner]
    return ratios


def _aligned_neighbours(goods: np.ndarray, bank_thumbs: np.ndarray, image: np.ndarray,
                        query: np.ndarray) -> np.ndarray:
    """The ``GOLDEN_K`` bank parts nearest ``image``, each aligned to it and brought to
    its brightness (float32 (k, rows, cols))."""
    distance = ((bank_thumbs - query) ** 2).sum(axis=1)
    distance[distance == 0] = np.inf  # the part itself, when it is in the bank
    nearest = np.argsort(distance, kind="stable")[:GOLDEN_K]
    nearest = nearest[np.isfinite(distance[nearest])]
    if len(nearest) == 0:
        raise ValueError("the golden bank has no image other than the one being scored")
    spectrum = reference_spectrum(image)
    return np.stack([matched_brightness(image, aligned(image, goods[j], spectrum)[0])
                     for j in nearest]).astype(np.float32)


def ratio_maps(bank: GoldenBank, dataset, positions: np.ndarray) -> np.ndarray:
    """Where each image departs from its golden reference (float32 (n, ROWS, c)), the
    scales combined as in its score: the map whose maximum is its golden score (the
    viewer's "golden" heatmap)."""
    images = reduced_images(dataset, np.asarray(positions, dtype=np.int64),
                            bank.images.shape[1:])
    goods = bank.goods
    return np.stack([
        combined_scales(bank.scale_reference,
                        np.moveaxis(_scale_ratios(goods, bank.thumbnails, image, query), 0, -1))
        for image, query in zip(images, thumbnails(images), strict=True)]).astype(np.float32)


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
                 scales=bank.scale_reference, reference=np.array(reference))


def load_bank(path: Path) -> GoldenBank | None:
    """The bank at ``path``; None when there is none (a run without the golden score).

    Raises:
        ValueError: a bank written before the score had its scales (its run's fusion was
            measured on another score, so it cannot be reused).
    """
    if not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "scales" not in data.files:
            raise ValueError(f"{path}: the golden reference of this run was built by an "
                             f"earlier DieSight whose golden score differs; train the run "
                             f"again")
        reference = json.loads(str(data["reference"]))
        return GoldenBank(data["images"], data["thumbnails"], data["scales"],
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
