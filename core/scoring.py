"""Scoring a dataset with a trained run: a defect probability and an embedding per image.

Every present image (train, validation, test, unlabelled) goes once through the run's best
checkpoint, in batches under ``torch.inference_mode()``, at the run's image size and with
the trainer's own image preparation (``core.training.data``) and the trainer's own forward
pass (``core.training.predict.predict``: fp32, prior-corrected), so the stored scores are
exactly the numbers the trainer validated with. ``forward_with_embedding`` gives the logit
and the penultimate activations from the same pass.

Each image gets its logit (float64, corrected from the training draws' class balance to
the run's labelled defect rate) and its probability, computed from the logit in float64.

Results are stored per run in the workspace: the ``scores`` table (replaced in one
transaction) and ``runs/<id>/embeddings.npy`` + ``embedding_ids.npy`` (atomic writes).
Nothing is written until every image is scored, so a cancelled or failed scoring leaves
the previous scores as they were. With ``only_ids`` just those images are scored and merged
into the run's stored results (a new lot, core.lots, without scoring the rest again).

A run of another dataset scores a new lot too: pass ``'OTHER_DATA@ID'`` as the run and
``core.runs.resolve_run`` imports it into the new lot's workspace first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from core.checkpoint import load_model_from_run
from core.metrics import sigmoid
from core.progress import CancelCheck, ProgressFn, Throttle, check_cancel, report
from core.runs import RunRecord
from core.scores import (  # noqa: F401  (re-exported: the storage half of scoring)
    EMBEDDING_IDS_FILE,
    EMBEDDINGS_FILE,
    NoScoresError,
    aligned_logits,
    aligned_scores,
    as_run,
    has_scores,
    load_embeddings,
    load_logits,
    load_scores,
    merge_scores,
    scored_at,
    store_scores,
)
from core.training.data import prepare_images
from core.training.predict import place_model, predict
from core.training.trainer import select_device

# Inference keeps no activations for a backward pass, so batches can be larger than in
# training; these fit the largest registered model (ResNet-50 at 267x275) comfortably.
DEFAULT_BATCH_CUDA = 256
DEFAULT_BATCH_CPU = 64


@dataclass
class ScoreResult:
    """What one scoring pass produced (aligned arrays, ascending image id).

    Attributes:
        run_id: the run (in this dataset's workspace) whose checkpoint scored.
        image_ids: int64 (n,) image ids.
        scores: float64 (n,) defect probabilities, sigmoid of the logit.
        embeddings: float32 (n, D) penultimate activations.
        logits: float64 (n,) prior-corrected logits (what ranking and AUC use).
        device: the torch device used.
        seconds: wall time of the pass (image preparation and network).
    """

    run_id: int
    image_ids: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    device: str = "cpu"
    seconds: float = 0.0
    logits: np.ndarray | None = None

    @property
    def images_per_s(self) -> float:
        return len(self.image_ids) / self.seconds if self.seconds > 0 else 0.0


def score_dataset(dataset, run: RunRecord | int | str, *, batch_size: int | None = None,
                  device: str = "auto", progress: ProgressFn | None = None,
                  cancel: CancelCheck | None = None,
                  only_ids: np.ndarray | list[int] | None = None) -> ScoreResult:
    """Score every present image of ``dataset`` with ``run``'s best checkpoint and store it.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run: a run record, its id, 'latest', or 'OTHER_DATA@ID' / 'OTHER_DATA@latest'
            (a run of another dataset, imported into this workspace).
        batch_size: images per forward pass (default: 256 on CUDA, 64 on the CPU).
        device: 'auto', 'cuda' or 'cpu'.
        progress: receives ``Progress('score', done, total, ...)``.
        cancel: checked between batches.
        only_ids: score just these image ids (present in ``dataset``) and merge them into
            the run's stored scores and embeddings instead of replacing them.

    Returns:
        The scores and embeddings of the images scored (also stored in the workspace).

    Raises:
        core.progress.Cancelled: when ``cancel`` returned True (nothing is stored).
        core.checkpoint.CheckpointError: the run's checkpoint is missing or unreadable.
        ValueError: the dataset has no images, an id of ``only_ids`` is not present, or a
            bad device / batch size.
    """
    run = as_run(dataset.workspace, run)
    positions = _positions_to_score(dataset, only_ids)
    image_ids = np.asarray(dataset.image_ids, dtype=np.int64)[positions]
    torch_device = select_device(device)
    batch = batch_size or (DEFAULT_BATCH_CUDA if torch_device.type == "cuda"
                           else DEFAULT_BATCH_CPU)
    if batch < 1:
        raise ValueError(f"batch size must be at least 1, got {batch}")

    started = time.perf_counter()
    model, config = load_model_from_run(run)
    place_model(model, torch_device).eval()
    logits, embeddings = _score_all(dataset, positions, model, config.input_shape,
                                    torch_device, batch, progress, cancel, run.logit_offset)
    check_cancel(cancel)
    _require_finite(run, logits, embeddings)
    scores = sigmoid(logits)
    store = store_scores if only_ids is None else merge_scores
    store(dataset.workspace, run.id, image_ids, scores, embeddings, logits=logits)
    seconds = time.perf_counter() - started
    report(progress, "score", len(image_ids), len(image_ids),
           f"{len(image_ids)} images scored in {seconds:.1f} s")
    return ScoreResult(run.id, image_ids, scores, embeddings, str(torch_device), seconds,
                       logits)


class ScoringDiverged(ValueError):
    """A run's model gives NaN or infinite numbers (it diverged in training); nothing is
    stored."""


def _require_finite(run: RunRecord, logits: np.ndarray, embeddings: np.ndarray) -> None:
    """Refuse to store scores or embeddings that are not finite numbers (checked before
    anything is written, so the previous scores and embeddings stay as they were)."""
    bad = ~np.isfinite(logits) | ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        raise ScoringDiverged(
            f"Run {run.id}'s model gives NaN or infinite scores for {int(bad.sum()):,} of "
            f"{len(bad):,} images (it diverged in training); nothing was stored. Train "
            f"again with a lower --lr.")


def _positions_to_score(dataset, only_ids) -> np.ndarray:
    """Every position, or the positions of ``only_ids`` (ascending, each once)."""
    if only_ids is None:
        if len(dataset.image_ids) == 0:
            raise ValueError(f"{dataset.root} has no readable images to score")
        return np.arange(len(dataset.image_ids))
    wanted = np.unique(np.asarray(only_ids, dtype=np.int64))
    positions = dataset.positions(wanted)
    if (positions < 0).any():
        missing = wanted[positions < 0][:5].tolist()
        raise ValueError(f"image id(s) {missing} are not present in {dataset.root}")
    if len(positions) == 0:
        raise ValueError("no images to score (only_ids is empty)")
    return positions


def _forward_unless_out_of_memory(model, images: torch.Tensor, logit_offset: float):
    """(logits, embeddings) from :func:`predict`, or None when the GPU ran out of memory.

    Returning instead of handling the error here lets the failed pass's activations, which
    the exception's traceback still references, be freed before the caller retries.
    """
    try:
        return predict(model, images, logit_offset)
    except torch.OutOfMemoryError:
        return None


def _smaller_batch(batch: int, device: torch.device, progress: ProgressFn | None) -> int:
    if batch == 1:
        raise RuntimeError("Out of GPU memory scoring a single image: free the GPU or score "
                           "on the CPU (--device cpu).")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    smaller = batch // 2
    report(progress, "notice", message=f"Out of GPU memory: scoring in batches of {smaller}.")
    return smaller


def _score_all(dataset, positions: np.ndarray, model, image_size: tuple[int, int],
               device: torch.device, batch: int, progress: ProgressFn | None,
               cancel: CancelCheck | None, logit_offset: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """The batched forward passes over ``positions``; returns (prior-corrected logits
    float64 (n,), embeddings float32 (n, D)) aligned with them."""
    n = len(positions)
    logits = np.empty(n, dtype=np.float64)
    embeddings = np.empty((n, model.embedding_dim), dtype=np.float32)
    throttle = Throttle(0.25)
    started, start = time.perf_counter(), 0
    with torch.inference_mode():
        while start < n:
            check_cancel(cancel)
            stop = min(start + batch, n)
            images = prepare_images(dataset, positions[start:stop], image_size, device,
                                    None, cancel)
            # prepare_images keeps the batch in CPU memory when the GPU is short of room.
            outputs = _forward_unless_out_of_memory(
                model, images.to(device, non_blocking=True), logit_offset)
            if outputs is None:
                batch = _smaller_batch(batch, device, progress)
                continue
            batch_logits, batch_embeddings = outputs
            logits[start:stop] = batch_logits.cpu().numpy()
            embeddings[start:stop] = batch_embeddings.cpu().numpy()
            start = stop
            if throttle.ready(final=stop == n):
                rate = stop / max(time.perf_counter() - started, 1e-9)
                report(progress, "score", stop, n, f"{rate:.0f} images/s", images_per_s=rate)
    return logits, embeddings
