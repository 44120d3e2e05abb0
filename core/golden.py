"""Compare with good: a golden reference built from the nearest good parts, and the difference.

The golden image of a part is the pixel-wise median of the good training images nearest
to it in the run's embedding space (``core.neighbours``: same product, same look), each
first aligned to the part by phase correlation with sub-pixel precision and brought to its
brightness and contrast (a least-squares gain and offset). The median keeps
what the good parts share and drops what any one of them has alone (noise, a faint mark);
``|image - golden|`` then shows what this part has that good ones do not.

Phase correlation (numpy FFT; no scikit-image): the (partially) normalised cross-power
spectrum of the two images, Hann-windowed against edge effects and Gaussian-weighted so the
correlation peak is smooth, has its maximum at the translation between them; a Gaussian
fit through the peak and its neighbours gives the sub-pixel part. Rotation is not
corrected (parts sit within a degree or two in their pockets; a rotated part is a defect
and should show in the difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

# Gaussian weight on the cross-power spectrum, sigma as a share of the sampling rate:
# lower frequencies carry the shape, the highest only noise and JPEG blocks.
SPECTRUM_SIGMA = 0.12
# Good parts in a golden: 8 leaves the median and the spread noisy. The Evidence pane and
# the golden score (core.golden_score) use the same count, so what is shown is what scored.
GOLDEN_K = 16
# Partial whitening of the cross-power spectrum (1 = classic phase correlation). Full
# whitening weighs every frequency alike, so a small bright defect the size of a lead can
# pull the match onto a lead; 0.3 keeps the sharp peak and lets the large structure (the
# body, the pocket) decide. Measured: 0.03 px error on demo parts, 0.2 px with a particle.
WHITENING = 0.3


@dataclass
class Golden:
    """An image, its golden reference and their absolute difference (float32, same shape).

    Attributes:
        positions: the good images the golden was made of.
        shifts: (k, 2) the (rows, cols) shift applied to each to align it.
    """

    image: np.ndarray
    golden: np.ndarray
    difference: np.ndarray
    positions: np.ndarray
    shifts: np.ndarray


def reference_spectrum(reference: np.ndarray) -> np.ndarray:
    """The windowed spectrum of ``reference``: computed once when many parts are aligned
    to the same image (a golden reference aligns 8)."""
    return np.fft.rfft2(_windowed(reference))


def phase_shift(reference: np.ndarray, moving: np.ndarray,
                spectrum: np.ndarray | None = None) -> tuple[float, float]:
    """The (rows, cols) shift that aligns ``moving`` to ``reference``, to a fraction of a pixel.

    ``scipy.ndimage.shift(moving, phase_shift(reference, moving))`` ≈ ``reference``.
    The first estimate is biased by the window for shifts of several pixels (the content
    moves under it); estimating again after applying it removes most of that bias
    (error ~0.3 px -> ~0.02 px on test parts). ``spectrum``: ``reference_spectrum(reference)``
    when the caller has it.
    """
    spectrum = reference_spectrum(reference) if spectrum is None else spectrum
    first = _correlation_shift(spectrum, moving)
    moved = ndimage.shift(np.asarray(moving, dtype=np.float64), first, order=3, mode="nearest")
    rest = _correlation_shift(spectrum, moved)
    return first[0] + rest[0], first[1] + rest[1]


def _correlation_shift(spectrum: np.ndarray, moving: np.ndarray) -> tuple[float, float]:
    """The shift from the reference's windowed spectrum and a moving image (real FFTs: the
    images are real, so half the spectrum carries everything)."""
    b = _windowed(moving)
    cross = spectrum * np.conj(np.fft.rfft2(b))
    cross /= np.maximum(np.abs(cross), 1e-12) ** WHITENING
    cross *= _spectrum_weight(b.shape)
    surface = np.fft.irfft2(cross, s=b.shape)
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    shift = [p + _subpixel(surface, peak, axis) for axis, p in enumerate(peak)]
    # Past half the size, a shift wraps around: it is the negative one.
    return tuple(float(s - n if s > n / 2 else s)
                 for s, n in zip(shift, surface.shape, strict=True))


def _windowed(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    return (x - x.mean()) * _hann_window(x.shape)


@lru_cache(maxsize=8)
def _hann_window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


@lru_cache(maxsize=8)
def _spectrum_weight(shape: tuple[int, int]) -> np.ndarray:
    """The Gaussian weight over the half spectrum ``rfft2`` gives for an image of ``shape``."""
    fy, fx = np.fft.fftfreq(shape[0]), np.fft.rfftfreq(shape[1])
    return np.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / (2 * SPECTRUM_SIGMA ** 2))


def _subpixel(surface: np.ndarray, peak: tuple[int, int], axis: int) -> float:
    """Offset of the true maximum from ``peak`` along ``axis``: a Gaussian through 3 points."""
    n = surface.shape[axis]
    around = []
    for step in (-1, 0, 1):
        index = list(peak)
        index[axis] = (index[axis] + step) % n
        around.append(surface[tuple(index)])
    left, centre, right = (np.log(max(v, 1e-12)) for v in around)
    denominator = left - 2 * centre + right
    if denominator >= 0:  # not a maximum (flat or noisy): stay on the pixel
        return 0.0
    return float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))


def aligned(reference: np.ndarray, moving: np.ndarray, spectrum: np.ndarray | None = None
            ) -> tuple[np.ndarray, tuple[float, float]]:
    """``moving`` shifted onto ``reference`` (edges repeat the nearest pixel), and the shift."""
    shift = phase_shift(reference, moving, spectrum)
    moved = ndimage.shift(np.asarray(moving, dtype=np.float32), shift, order=1, mode="nearest")
    return moved, shift


def matched_brightness(reference: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """``picture`` with the gain and offset that best match it to ``reference``.

    Lighting and exposure vary from part to part; without this the difference would light
    up the whole part. A least-squares line over all pixels: a defect covers too few of
    them to move it (a part whose exposure itself is wrong shows in the image, not here).
    """
    x = picture.ravel().astype(np.float64)
    y = np.asarray(reference, dtype=np.float64).ravel()
    spread = x.var()
    if spread < 1e-9:
        return np.full_like(picture, y.mean(), dtype=np.float32)
    gain = ((x - x.mean()) * (y - y.mean())).mean() / spread
    return (gain * (picture - x.mean()) + y.mean()).astype(np.float32)


def golden_reference(dataset, position: int, good_positions) -> Golden:
    """The golden image of image ``position`` from the good images at ``good_positions``.

    Raises:
        ValueError: no good images were given.
    """
    good_positions = np.asarray(good_positions, dtype=np.int64)
    if len(good_positions) == 0:
        raise ValueError("a golden reference needs at least one good image")
    image = np.asarray(dataset.images[int(dataset.image_ids[position])], dtype=np.float32)
    spectrum = reference_spectrum(image)
    stack, shifts = [], []
    for good in good_positions:
        moved, shift = aligned(image, dataset.images[int(dataset.image_ids[good])], spectrum)
        stack.append(matched_brightness(image, moved))
        shifts.append(shift)
    golden = np.median(np.stack(stack), axis=0).astype(np.float32)
    return Golden(image, golden, np.abs(image - golden), good_positions,
                  np.asarray(shifts, dtype=np.float32))


def golden_for(index, position: int, k: int = GOLDEN_K) -> Golden | None:
    """The golden of ``position`` from the ``k`` good training images of a
    :class:`core.neighbours.NeighbourIndex` that look most like it; None when it has none.

    "Look like" is measured on small, brightness-normalised thumbnails, not in the run's
    embedding space: a defect model's embedding places parts by how defective they look,
    so the good parts nearest to a bad one there are often other products, and their
    median would be a blur of several products.
    """
    candidates, thumbs = _good_thumbnails(index)
    if len(candidates) == 0:
        return None
    query = _thumbnail(index.dataset.images[int(index.dataset.image_ids[position])])
    distance = ((thumbs - query) ** 2).sum(axis=(1, 2))
    distance[candidates == position] = np.inf
    chosen = candidates[np.argsort(distance, kind="stable")[:k]]
    chosen = chosen[np.isfinite(distance[np.searchsorted(candidates, chosen)])]
    return golden_reference(index.dataset, position, chosen) if len(chosen) else None


THUMB_BLOCK = 8  # 267 x 275 -> 33 x 34: the product's layout survives, noise does not


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """Block means of ``image``, to zero mean and unit spread (brightness-free)."""
    h, w = (s - s % THUMB_BLOCK for s in image.shape)
    blocks = np.asarray(image[:h, :w], dtype=np.float32).reshape(
        h // THUMB_BLOCK, THUMB_BLOCK, w // THUMB_BLOCK, THUMB_BLOCK).mean(axis=(1, 3))
    return (blocks - blocks.mean()) / max(float(blocks.std()), 1e-6)


def _good_thumbnails(index) -> tuple[np.ndarray, np.ndarray]:
    """(positions, thumbnails) of the index's good candidates, computed once per index."""
    cached = getattr(index, "_golden_thumbnails", None)
    if cached is None:
        good = np.sort(index.candidates[index.labels[index.candidates] == 0])
        images = index.dataset.images
        ids = index.dataset.image_ids
        thumbs = np.stack([_thumbnail(images[int(ids[p])]) for p in good]) if len(good) \
            else np.zeros((0, 1, 1), dtype=np.float32)
        cached = index._golden_thumbnails = (good, thumbs)
    return cached
