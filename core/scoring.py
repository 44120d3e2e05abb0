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

Distributed (``diesight score DATA --devices N``, ``core.training.distributed``): the images
are cut into the same batches as in one process, batch i is scored by rank i % N, and rank
0 gathers the results in input order and stores them, so the numbers equal a one-process
pass exactly. Rank 0 reads the checkpoint and sends the weights to the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from core.device import (
    batch_for_free_memory,
    free_cached_memory,
    select_device,
    unless_out_of_memory,
)
from core.golden_score import bank_path, load_bank
from core.metrics import sigmoid
from core.progress import CancelCheck, ProgressFn, Throttle, report
from core.run_model import load_model_from_run
from core.runs import RunRecord
from core.score_store import (  # noqa: F401  (re-exported: the storage half of scoring)
    EMBEDDING_IDS_FILE,
    EMBEDDINGS_FILE,
    NoScoresError,
    ScoreParts,
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
from core.training.distributed import SINGLE, World, current_world
from core.training.predict import place_model, predict

# Images per forward pass on the CPU (on CUDA the batch is measured from the free memory:
# core.device.batch_for_free_memory).
DEFAULT_BATCH_CPU = 64


@dataclass
class ScoreResult:
    """What one scoring pass produced (aligned arrays, ascending image id).

    Attributes:
        run_id: the run (in this dataset's workspace) whose checkpoint scored.
        image_ids: int64 (n,) image ids.
        scores: float64 (n,) defect probabilities, sigmoid of the logit.
        embeddings: float32 (n, D) penultimate activations.
        logits: float64 (n,) prior-corrected logits (what ranking and AUC use): the
            network's, or fused with the golden score (core.golden_score).
        network_logits: float64 (n,) the network's own logits.
        golden: float64 (n,) golden-reference scores; None for a run without them.
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
    network_logits: np.ndarray | None = None
    golden: np.ndarray | None = None

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
        batch_size: images per forward pass (default: as many as half the free GPU memory
            holds, at most 4096, on CUDA; 64 on the CPU).
        device: 'auto', 'cuda' or 'cpu'.
        progress: receives ``Progress('score', done, total, ...)``.
        cancel: checked between batches.
        only_ids: score just these image ids (present in ``dataset``) and merge them into
            the run's stored scores and embeddings instead of replacing them.

    Returns:
        The scores and embeddings of the images scored (also stored in the workspace);
        None on the ranks other than 0 of a distributed run.

    Raises:
        core.progress.Cancelled: when ``cancel`` returned True (nothing is stored).
        core.checkpoint.CheckpointError: the run's checkpoint is missing or unreadable.
        ValueError: the dataset has no images, an id of ``only_ids`` is not present, or a
            bad device / batch size.
    """
    world = current_world()
    world.check_same_images(dataset)
    started = time.perf_counter()
    run, model, config = world.from_main(lambda: _load(dataset, run))
    positions = _positions_to_score(dataset, only_ids)
    image_ids = np.asarray(dataset.image_ids, dtype=np.int64)[positions]
    torch_device = select_device(device)
    place_model(model, torch_device).eval()
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    # Every rank cuts the same batches: the smallest that fits on any of them.
    batch = world.min_int(batch_size or batch_for_free_memory(
        model, config.input_shape, torch_device, DEFAULT_BATCH_CPU))
    gathered = _score_all(dataset, positions, model, config.input_shape, torch_device,
                          batch, progress, cancel, run.logit_offset, world)
    world.check_cancel(cancel)
    if not world.is_main:
        return None
    logits, embeddings = gathered
    _require_finite(run, logits, embeddings)
    network_logits = logits
    logits, golden = _with_golden(dataset, run, config, positions, logits, progress, cancel)
    scores = sigmoid(logits)
    store = store_scores if only_ids is None else merge_scores
    parts = None if golden is None else ScoreParts(network_logits, golden)
    store(dataset.workspace, run.id, image_ids, scores, embeddings, logits=logits, parts=parts)
    seconds = time.perf_counter() - started
    report(progress, "score", len(image_ids), len(image_ids),
           f"{len(image_ids)} images scored in {seconds:.1f} s")
    return ScoreResult(run.id, image_ids, scores, embeddings, str(torch_device), seconds,
                       logits, network_logits, golden)


def _load(dataset, run):
    """(run record, model, config) of ``run`` (rank 0's; sent to the other ranks)."""
    run = as_run(dataset.workspace, run)
    model, config = load_model_from_run(run)
    return run, model, config


class ScoringDiverged(ValueError):
    """A run's model gives NaN or infinite numbers (it diverged in training); nothing is
    stored."""


def _with_golden(dataset, run: RunRecord, config, positions: np.ndarray, logits: np.ndarray,
                 progress: ProgressFn | None, cancel: CancelCheck | None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The run's defect logits: the network's, fused with the golden score when the run
    was trained with a golden weight (core.golden_score); and the golden scores."""
    if config.golden_weight <= 0:
        return logits, None
    bank = load_bank(bank_path(run.checkpoint)) if run.checkpoint else None
    if bank is None or bank.reference is None:
        report(progress, "notice", message=(
            f"Run {run.id} has no golden reference (it was stopped before one was built): "
            f"scored by the network alone."))
        return logits, None
    golden = bank.scores_for(dataset, positions, progress, cancel)
    return bank.reference.fuse(logits, golden), golden


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


def _smaller_batch(batch: int, device: torch.device, progress: ProgressFn | None) -> int:
    if batch == 1:
        raise RuntimeError("Out of GPU memory scoring a single image: free the GPU or score "
                           "on the CPU (--device cpu).")
    free_cached_memory(device)
    smaller = batch // 2
    report(progress, "notice", message=f"Out of GPU memory: scoring in batches of {smaller}.")
    return smaller


def _score_all(dataset, positions: np.ndarray, model, image_size: tuple[int, int],
               device: torch.device, batch: int, progress: ProgressFn | None,
               cancel: CancelCheck | None, logit_offset: float, world: World = SINGLE
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The batched forward passes over ``positions``; returns (prior-corrected logits
    float64 (n,), embeddings float32 (n, D)) aligned with them (on rank 0; None on the
    other ranks, which score their share of the batches)."""
    n = len(positions)
    n_batches = -(-n // batch)
    mine: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    throttle = Throttle(0.25)
    started, forward = time.perf_counter(), batch
    with torch.inference_mode():
        for i in world.rounds(n_batches, cancel):
            if i is None:
                continue
            chunk = positions[i * batch:(i + 1) * batch]
            images = prepare_images(dataset, chunk, image_size, device, None, cancel)
            mine[i], forward = _forward_in_parts(model, images, device, forward,
                                                 logit_offset, progress)
            done = min(n, (i + 1) * batch)
            if world.is_main and throttle.ready(final=done == n):
                rate = done / max(time.perf_counter() - started, 1e-9)
                report(progress, "score", done, n, f"{rate:.0f} images/s", images_per_s=rate)
    parts = world.gather(mine, everyone=False)
    if parts is None:
        return None
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False))


def _forward_in_parts(model, images: torch.Tensor, device: torch.device, forward: int,
                      logit_offset: float, progress: ProgressFn | None
                      ) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """One batch's (logits, embeddings) as numpy, in passes of ``forward`` images, halved
    on an out-of-memory error; returns them and the pass size that worked."""
    logits, embeddings, start = [], [], 0
    while start < len(images):
        part = images[start:start + forward].to(device, non_blocking=True)
        # prepare_images keeps the batch in CPU memory when the GPU is short of room.
        outputs = unless_out_of_memory(partial(predict, model, part, logit_offset))
        if outputs is None:
            forward = _smaller_batch(min(forward, len(part)), device, progress)
            continue
        logits.append(outputs[0].cpu().numpy())
        embeddings.append(outputs[1].cpu().numpy())
        start += len(part)
    return (np.concatenate(logits), np.concatenate(embeddings)), forward
