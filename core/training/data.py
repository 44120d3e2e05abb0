"""Feeding images to the network: resize once, keep uint8, normalise on the device.

Decoding 30,000 JPEGs every epoch is what makes a naive training loop slow. The dataset
already holds every image decoded in a uint8 cache (``Dataset.images``), so
:func:`prepare_images` resizes the needed images once (antialiased) into one uint8 tensor,
on the GPU when it fits in a share of its free memory. A batch is then a single indexing
operation, converted to float and normalised (and augmented) on the device.

:func:`normalise` is the single definition of the network's input scaling; scoring uses it
too, so a checkpoint always sees images scaled the way it was trained.

Also here: the stratified split of the labelled images into training, selection and holdout
images (:func:`split_train_val`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report
from core.training.config import width_for_rows

# Fixed input scaling (0..1 intensities): the grey-level mean and standard deviation of
# ImageNet (averages of its RGB values), so pretrained weights see familiar statistics.
# Fixed rather than measured per dataset so a checkpoint scores every dataset the same way.
MEAN = 0.449
STD = 0.226

# Share of free GPU memory the image tensor may take; the rest is for the model.
GPU_MEMORY_SHARE = 0.4
# Images resized per step while preparing (bounds the float working memory).
PREPARE_CHUNK = 256


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in 0..1."""
    return batch.float().div_(255.0)


def normalise_unit(x: torch.Tensor) -> torch.Tensor:
    """0..1 float images -> network input (fixed MEAN/STD)."""
    return (x - MEAN) / STD


def normalise(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, H, W) images -> normalised float32 network input.

    ``(pixel / 255 - MEAN) / STD`` with the fixed MEAN = 0.449, STD = 0.226.
    """
    return normalise_unit(to_unit(batch_uint8))


def resolve_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(rows, cols) from a row count (aspect 267:275) or an explicit pair."""
    if isinstance(image_size, int):
        return image_size, width_for_rows(image_size)
    rows, cols = image_size
    return int(rows), int(cols)


def fits_on_gpu(n_bytes: int, device: torch.device) -> bool:
    """True when ``n_bytes`` fit in GPU_MEMORY_SHARE of the device's free memory."""
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return n_bytes <= GPU_MEMORY_SHARE * free


def prepare_images(dataset, positions: np.ndarray, image_size: int | Sequence[int],
                   device: torch.device | str = "cpu", progress: ProgressFn | None = None,
                   cancel: CancelCheck | None = None) -> torch.Tensor:
    """Resize the chosen images from the dataset's uint8 cache into one uint8 tensor.

    Args:
        dataset: a ``core.dataset.Dataset`` (uses ``images`` and ``image_ids``).
        positions: indices into the dataset's per-image arrays (0..n-1).
        image_size: rows (width follows the 267:275 aspect) or (rows, cols).
        device: where the result should live; a CUDA device is used only when the tensor
            fits in 40% of its free memory, otherwise the result stays in (pinned) CPU
            memory and batches are copied over as needed.
        progress: receives stage 'prepare' reports (images done / total).
        cancel: checked between chunks.

    Returns:
        (N, 1, rows, cols) uint8 tensor, row i = image ``positions[i]``.
    """
    device = torch.device(device)
    rows, cols = resolve_size(image_size)
    positions = np.asarray(positions, dtype=np.int64)
    n = len(positions)
    target = device if fits_on_gpu(n * rows * cols, device) else torch.device("cpu")
    out = torch.empty((n, 1, rows, cols), dtype=torch.uint8, device=target)
    # Resizing on the GPU is much faster; on CPU it runs where the result lives.
    work = device if device.type == "cuda" else torch.device("cpu")
    throttle = Throttle(0.2)
    cache_ids = np.asarray(dataset.image_ids)[positions]
    for start in range(0, n, PREPARE_CHUNK):
        check_cancel(cancel)
        stop = min(n, start + PREPARE_CHUNK)
        chunk = _read_rows(dataset.images, cache_ids[start:stop])
        out[start:stop] = _resize_uint8(chunk.to(work), rows, cols).to(target)
        if throttle.ready(final=stop == n):
            report(progress, "prepare", stop, n, f"preparing images {stop}/{n}")
    if target.type == "cpu" and device.type == "cuda":
        out = out.pin_memory()
    return out


def _read_rows(images: np.ndarray, ids: np.ndarray) -> torch.Tensor:
    """(k, 1, H, W) uint8 tensor of cache rows ``ids`` (sorted reads are faster on a memmap)."""
    order = np.argsort(ids, kind="stable")
    block = np.empty((len(ids),) + tuple(images.shape[1:]), dtype=np.uint8)
    block[order] = images[ids[order]]
    return torch.from_numpy(block).unsqueeze(1)


def _resize_uint8(chunk: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    if tuple(chunk.shape[-2:]) == (rows, cols):
        return chunk
    resized = F.interpolate(chunk.float(), size=(rows, cols), mode="bilinear",
                            align_corners=False, antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def iterate_batches(images: torch.Tensor, order: np.ndarray, batch_size: int,
                    device: torch.device) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Yield (uint8 batch on ``device``, the rows of ``images`` in it) in ``order``."""
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield load_batch(images, rows, device), rows


def load_batch(images: torch.Tensor, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``rows`` of ``images`` as one uint8 batch on ``device``."""
    index = torch.from_numpy(np.ascontiguousarray(rows)).to(images.device)
    batch = images.index_select(0, index)
    if batch.device.type != device.type:  # kept in CPU memory: the GPU was short
        batch = batch.pin_memory().to(device, non_blocking=True) \
            if device.type == "cuda" else batch.to(device)
    return batch


def batch_count(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


# -- train / selection / holdout split ------------------------------------------------------

# Share of each class of the held-out images that goes to the holdout (the rest selects).
HOLDOUT_SHARE = 0.5
# Each part of the held-out images needs a good and a bad image.
MIN_HELD_OUT_PER_CLASS = 2
# Salts the generator that divides the held-out images, so the held-out images themselves
# are drawn exactly as before the division existed.
_DIVIDE_SALT = 0x5E1EC7


@dataclass
class Split:
    """Positions (into the dataset's per-image arrays) of the training and held-out images.

    The held-out images are divided in two, stratified: the *selection* images choose the
    best epoch (and early stopping); the *holdout* images, never used for any choice during
    training, give the run's reported figures and its operating point.

    Attributes:
        train: positions of the training images.
        selection: positions of the images that choose the epoch.
        holdout: positions of the images that calibrate and report.
        source: 'val split' when the dataset's own labelled 'val' images were held out,
            'stratified' when they were held out from the train split, 'saved' when the
            split was read back from a run.
    """

    train: np.ndarray
    selection: np.ndarray
    holdout: np.ndarray
    source: str

    @property
    def val(self) -> np.ndarray:
        """Every held-out position (selection and holdout), ascending."""
        return np.sort(np.concatenate([self.selection, self.holdout]))


def split_train_val(labels: np.ndarray, splits: np.ndarray, val_fraction: float,
                    seed: int) -> Split:
    """Choose training, selection and holdout images among the labelled ones.

    Holds out the dataset's labelled 'val' images when there are at least two of each
    class; otherwise ``val_fraction`` of each class of the labelled 'train' images (at
    least two of each), chosen with a generator seeded by ``seed``. The held-out images
    are then divided per class into selection and holdout (:func:`divide_held_out`). Test
    and unlabelled images are never used.

    Raises:
        ValueError: when there are too few labelled good or bad images to train, select
            and calibrate.
    """
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    train_pool = np.flatnonzero((splits == "train") & (labels >= 0))
    val_pool = np.flatnonzero((splits == "val") & (labels >= 0))
    _require_both_classes(labels[train_pool], "the train split", minimum=1)
    if len(val_pool) and _has_both_classes(labels[val_pool], MIN_HELD_OUT_PER_CLASS):
        return divide_held_out(train_pool, val_pool, labels, seed, "val split")
    _require_both_classes(labels[train_pool], "the train split",
                          minimum=MIN_HELD_OUT_PER_CLASS + 1)
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for cls in (0, 1):
        members = train_pool[labels[train_pool] == cls]
        k = min(len(members) - 1,
                max(MIN_HELD_OUT_PER_CLASS, int(round(len(members) * val_fraction))))
        picks = torch.randperm(len(members), generator=generator)[:k].numpy()
        held_out.append(members[picks])
    val = np.sort(np.concatenate(held_out))
    train = np.setdiff1d(train_pool, val, assume_unique=True)
    return divide_held_out(train, val, labels, seed, "stratified")


def divide_held_out(train: np.ndarray, held_out: np.ndarray, labels: np.ndarray, seed: int,
                    source: str) -> Split:
    """Divide held-out positions per class into selection and holdout (HOLDOUT_SHARE of
    each class to the holdout, at least one image of each class in each part)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + _DIVIDE_SALT)
    holdout = []
    for cls in (0, 1):
        members = np.sort(held_out[labels[held_out] == cls])
        k = min(len(members) - 1, max(1, int(round(len(members) * HOLDOUT_SHARE))))
        holdout.append(members[torch.randperm(len(members), generator=generator)[:k].numpy()])
    holdout = np.sort(np.concatenate(holdout))
    selection = np.setdiff1d(held_out, holdout)
    _require_both_classes(labels[selection], "the selection images", minimum=1)
    _require_both_classes(labels[holdout], "the holdout images", minimum=1)
    return Split(train=np.asarray(train), selection=selection, holdout=holdout, source=source)


def split_from_saved_ids(image_ids: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                         val_ids: np.ndarray, holdout_ids: np.ndarray | None = None,
                         seed: int = 0) -> Split:
    """Rebuild a run's split from its saved ids (resume, replay), whatever the labels now.

    Training images are the labelled train-split images that are not held out; held-out
    ids whose images have vanished or lost their label are dropped. ``holdout_ids`` None
    (a run saved before the holdout existed): the saved images are divided now, with
    ``seed``.
    """
    image_ids = np.asarray(image_ids)
    labels = np.asarray(labels)
    in_val = np.isin(image_ids, val_ids) & (labels >= 0)
    train = np.flatnonzero((np.asarray(splits) == "train") & (labels >= 0) & ~in_val)
    _require_both_classes(labels[train], "the training images", minimum=1)
    if holdout_ids is None:
        return divide_held_out(train, np.flatnonzero(in_val), labels, seed, "saved")
    in_holdout = in_val & np.isin(image_ids, holdout_ids)
    selection, holdout = np.flatnonzero(in_val & ~in_holdout), np.flatnonzero(in_holdout)
    _require_both_classes(labels[selection], "the saved selection images", minimum=1)
    _require_both_classes(labels[holdout], "the saved holdout images", minimum=1)
    return Split(train=train, selection=selection, holdout=holdout, source="saved")


def split_from_validation_ids(image_ids: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                              val_ids: np.ndarray) -> Split:
    """:func:`split_from_saved_ids` for a run that saved only its validation ids."""
    return split_from_saved_ids(image_ids, labels, splits, val_ids)


def labelled_bad_share(labels: np.ndarray) -> float:
    """The bad share of the labelled images: the defect rate scores are corrected to."""
    labels = np.asarray(labels)
    labelled = int((labels >= 0).sum())
    return float((labels == 1).sum() / labelled) if labelled else float("nan")


def _has_both_classes(labels: np.ndarray, minimum: int = 1) -> bool:
    return bool((labels == 0).sum() >= minimum and (labels == 1).sum() >= minimum)


def _require_both_classes(labels: np.ndarray, where: str, minimum: int) -> None:
    """Refuse too few labelled images, saying which class is short and by how many."""
    good, bad = int((labels == 0).sum()), int((labels == 1).sum())
    short = [(name, have) for name, have in (("good", good), ("bad", bad)) if have < minimum]
    if not short:
        return
    needs = " and ".join(f"{minimum} {name}" for name, _ in short)
    why = (f" (1 to train on and {minimum - 1} to hold out for choosing the epoch and "
           f"reporting)" if minimum > 1 else "")
    found = ", ".join(f"{have} {name}" for name, have in short)
    more = " and ".join(f"{minimum - have} more {name}" for name, have in short)
    raise ValueError(
        f"Training needs at least {needs} labelled image(s) in {where}{why}; found only "
        f"{found}: label {more} image(s) (or check the labels CSV / folder layout).")
