"""The training loop: one call, :func:`train`, turns a dataset and a TrainConfig into a run.

What a run does, in order:

1. Split the labelled images into training and held-out images (stratified; the dataset's
   own labelled 'val' images when it has any), divide the held-out ones into *selection*
   images (choose the epoch) and *holdout* images (report), and save both sets of ids.
   A resumed run, or a replay given ``split_from``, reads the saved ids back instead.
2. Resize the needed images once into a uint8 tensor (on the GPU when it fits); batches
   are built by indexing it, then normalised and augmented on the device.
3. Per epoch: train on the sampler's draws (per-step cosine schedule after a short
   warm-up), validate on the selection images (loss, AUC, escapes and false calls at
   ``config.threshold``, 0.5 when it is left to the operating point), write ``best.pt``
   when the selection AUC improves (ties: lower loss) and ``last.pt`` always, record the
   epoch in the database, and stop early after ``early_stopping_patience`` epochs without
   improvement. While training, the run's row shows the best epoch's selection figures.
4. At the end (finished, or cancelled with a best epoch): score the holdout images with
   ``best.pt`` and record the run's AUC, loss, escapes and false calls from them, at the
   config's threshold or, when it is None, at the operating point placed on the holdout
   (no escapes, ``core.metrics.threshold_for_max_escapes``).

Every score (validation, holdout, and later ``core.scoring``) comes from
``core.training.predict.predict``: fp32, and prior-corrected from the training draws'
class balance to the labelled defect rate, so all of them are the same numbers.

Progress events (``core.progress.Progress``) sent to ``progress``:

* ``'start'``: once; data {run_id, config, device, parameters, train_images, val_images
  (selection + holdout), selection_images, holdout_images, start_epoch}.
* ``'notice'``: a sentence for the user (sampler caps, out-of-memory back-off, early stop).
* ``'prepare'``: images resized so far (from :func:`prepare_images`).
* ``'train'``: done/total batches of the epoch; data {epoch, epochs, batch, loss,
  images_per_s, eta_s} (loss is the epoch's running mean; eta_s for the whole run).
* ``'validate'``: done/total validation batches; data {epoch, epochs}.
* ``'epoch'``: done/total epochs; data {epoch_record: EpochRecord, best_epoch, best_auc,
  improved, run_id} plus the record's fields (for live curves).

Cancellation (``cancel`` is checked before every batch) ends the run with status
'cancelled' — :func:`train` then *returns* the record rather than raising. ``last.pt``
holds the last *finished* epoch: the interrupted epoch is discarded and redone on resume
(its order and augmentation are seeded per epoch, so the redo matches an uninterrupted
run). Cancelling during epoch 1 leaves no ``last.pt``; resuming then starts over.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.checkpoint import CheckpointError, load_checkpoint, load_state_into, save_checkpoint
from core.metrics import (
    confusion_at,
    prior_logit_offset,
    roc_auc,
    sigmoid,
    threshold_for_max_escapes,
)
from core.models import create_model
from core.progress import Cancelled, Throttle, check_cancel, report
from core.runs import (
    EpochRecord,
    RunRecord,
    claim_run,
    commit_epoch,
    create_run,
    delete_epochs_from,
    get_run,
    has_holdout,
    holdout_ids,
    pending_path,
    save_validation_ids,
    settle_checkpoints,
    update_run,
    validation_ids,
)
from core.runs import epochs as recorded_epochs
from core.training.augment import AugmentSettings, augment_batch, settings_for_rows
from core.training.config import TrainConfig, check_prepared_memory
from core.training.data import (
    Split,
    batch_count,
    iterate_batches,
    labelled_bad_share,
    normalise_unit,
    prepare_images,
    split_from_saved_ids,
    split_train_val,
    to_unit,
)
from core.training.predict import place_model, predict
from core.training.samplers import (
    epoch_generator,
    epoch_indices,
    epoch_length,
    positive_weight,
    sampler_notes,
    training_prior,
)

BEST = "best.pt"
LAST = "last.pt"
# Settings a resumed run may change (they do not alter what is learned).
RUNTIME_FIELDS = ("device", "precision", "num_threads")
WARMUP_SHARE = 0.05
MAX_WARMUP_STEPS = 500
FINAL_LR_SHARE = 0.01
# BatchNorm needs two images to normalise over; the out-of-memory back-off stops here.
MIN_MICRO_BATCH = 2
# Per-epoch escapes and false calls are counted here when the run's threshold is left to
# the operating point (which only the holdout, after training, places).
EPOCH_THRESHOLD = 0.5


class TrainingDiverged(ValueError):
    """The run's loss, logits or weights stopped being finite numbers (NaN / inf): the
    learning rate is too high for the data. The run is recorded as failed; nothing from the
    diverged epoch is kept (``best.pt`` and ``last.pt`` hold the last finite epoch)."""


class _Diverged(Exception):
    """Raised inside an epoch; :func:`train` records it and raises TrainingDiverged."""

    def __init__(self, epoch: int, what: str) -> None:
        super().__init__(f"{what} became NaN or infinite in epoch {epoch}")
        self.epoch, self.what = epoch, what


def _finite(value) -> bool:
    """True when a tensor / number / array holds only finite values."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())


def _weights_finite(model: nn.Module) -> bool:
    """Every floating-point weight and buffer (BatchNorm statistics too) is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


# -- device and precision -------------------------------------------------------------------

def select_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; "
                         "use --device cpu or auto.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        # With its index, so it compares equal to the device of the tensors put on it.
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype to train with (None: plain fp32)."""
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU; use fp32 or bf16 on the CPU.")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def configure_device(config: TrainConfig, device: torch.device) -> str:
    """Set threads / cuDNN for ``device``; returns how to describe it (e.g. 'cpu (2 threads)')."""
    dtype = autocast_dtype(config.precision, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
        return f"cuda: {torch.cuda.get_device_name(device)} ({precision})"
    threads = config.num_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    suffix = "" if dtype is None else f", {precision}"
    return f"cpu ({threads} threads{suffix})"


# -- optimisation ---------------------------------------------------------------------------

def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; biases and normalisation weights get no weight decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up over ~5% of the steps, then cosine (or constant)."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(MAX_WARMUP_STEPS, int(total * WARMUP_SHARE))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class GradientStep:
    """One optimizer step on a batch, in micro-batches with gradient accumulation.

    Starts with the whole batch in one pass. On a GPU out-of-memory error it halves the
    micro-batch and redoes the step, accumulating gradients so the effective batch (and
    hence the training dynamics) stays ``config.batch_size``; ``notify`` tells the user.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 *, batch_size: int, dtype: torch.dtype | None, device: torch.device,
                 notify=None) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.micro_batch = batch_size
        self.dtype, self.device = dtype, device
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        self.notify = notify or (lambda message: None)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train on inputs ``x`` / 0-1 targets ``y``; returns the batch's mean loss (tensor)."""
        while True:
            try:
                return self._accumulate(x, y)
            except torch.OutOfMemoryError:
                pass  # back off outside the handler: the traceback pins the failed activations
            self.optimizer.zero_grad(set_to_none=True)
            self._back_off(len(x))

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=x.device)
        for part in micro_slices(len(x), self.micro_batch):
            xb, yb = x[part], y[part]
            with self.autocast():
                logits = self.model(xb)
            loss = self.loss_fn(logits.float(), yb)
            # Weighted by the micro-batch's share, the summed gradients equal the full batch's.
            share = loss * (len(xb) / len(x))
            (self.scaler.scale(share) if self.scaler else share).backward()
            total += share.detach()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return total

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _back_off(self, batch: int) -> None:
        if self.micro_batch <= MIN_MICRO_BATCH:
            raise RuntimeError(f"Out of GPU memory even with {MIN_MICRO_BATCH} images per "
                               f"step: use a smaller --image-size or model, or free the GPU.")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.micro_batch = max(MIN_MICRO_BATCH, self.micro_batch // 2)
        steps = len(micro_slices(batch, self.micro_batch))
        self.notify(f"Out of GPU memory: continuing with micro-batches of {self.micro_batch} "
                    f"and {steps} accumulation steps (effective batch {batch} unchanged).")


def micro_slices(n: int, micro_batch: int) -> list[slice]:
    """Slices of at most ``micro_batch`` (a lone trailing image joins the slice before it:
    BatchNorm cannot train on a single image)."""
    starts = list(range(0, n, micro_batch))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [n], strict=True)]


# -- one epoch ------------------------------------------------------------------------------

@dataclass
class Context:
    """What the epoch functions share: data, device, schedule and the user's callbacks."""

    config: TrainConfig
    device: torch.device
    images: torch.Tensor          # (N, 1, H, W) uint8: training, selection, holdout rows
    targets: torch.Tensor         # (N,) float 0/1 labels of ``images``, on the device
    train_rows: np.ndarray        # rows of ``images`` used for training
    val_rows: np.ndarray          # rows of ``images`` that choose the epoch (selection)
    holdout_rows: np.ndarray      # rows of ``images`` that report (never choose anything)
    train_labels: np.ndarray      # 0/1 labels of the training rows (for the sampler)
    step: GradientStep
    scheduler: torch.optim.lr_scheduler.LambdaLR
    progress: object = None
    cancel: object = None
    channels_last: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    logit_offset: float = 0.0     # the prior correction (core.metrics.prior_logit_offset)

    def inputs(self, batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """uint8 batch -> network input; augmented when a generator is given."""
        x = to_unit(batch)
        if generator is not None:
            x = augment_batch(x, generator, self.augment)
        x = normalise_unit(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def targets_of(self, rows: np.ndarray) -> torch.Tensor:
        return self.targets[torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)]

    def labels_of(self, rows: np.ndarray) -> np.ndarray:
        return self.targets_of(rows).cpu().numpy().astype(np.int64)

    def epoch_order(self, epoch: int) -> np.ndarray:
        cfg = self.config
        picks = epoch_indices(cfg.sampler, self.train_labels, cfg.per_class,
                              epoch_generator(cfg.seed, epoch))
        return self.train_rows[picks]

    def augment_generator(self, epoch: int) -> torch.Generator | None:
        if not self.config.augment:
            return None
        seed = int(torch.randint(2**62, (1,), generator=epoch_generator(self.config.seed,
                                                                          epoch, salt=1)))
        return torch.Generator(device=self.device).manual_seed(seed)


def train_one_epoch(model: nn.Module, ctx: Context, epoch: int) -> tuple[float, float]:
    """Train one epoch; returns (mean training loss, training images per second).

    Raises:
        Cancelled: when ``ctx.cancel`` asks to stop (checked before every batch).
    """
    model.train()
    batch_size, epochs = ctx.config.batch_size, ctx.config.epochs
    order = ctx.epoch_order(epoch)
    if len(order) % batch_size == 1 and len(order) > 1:
        order = order[:-1]  # a last batch of one image: BatchNorm cannot train on it
    generator = ctx.augment_generator(epoch)
    total = batch_count(len(order), batch_size)
    loss_sum, seen = torch.zeros((), device=ctx.device), 0
    throttle, start = Throttle(0.25), time.perf_counter()
    for i, (batch, rows) in enumerate(iterate_batches(ctx.images, order, batch_size,
                                                      ctx.device), start=1):
        check_cancel(ctx.cancel)
        loss = ctx.step(ctx.inputs(batch, generator), ctx.targets_of(rows))
        ctx.scheduler.step()
        loss_sum += loss * len(rows)
        seen += len(rows)
        if throttle.ready(final=i == total):
            elapsed = time.perf_counter() - start
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):  # NaN weights never come back: stop now
                raise _Diverged(epoch, "the training loss")
            speed = seen / elapsed if elapsed > 0 else 0.0
            eta = _eta(ctx, epoch, elapsed, i, total)
            report(ctx.progress, "train", i, total,
                   f"epoch {epoch}/{epochs}  loss {mean_loss:.4f}  {speed:.0f} img/s  "
                   f"ETA {_clock(eta)}", epoch=epoch, epochs=epochs, batch=i,
                   loss=mean_loss, images_per_s=speed, eta_s=eta)
    elapsed = time.perf_counter() - start
    mean_loss = loss_sum.item() / max(1, seen)
    if not math.isfinite(mean_loss):
        raise _Diverged(epoch, "the training loss")
    if not _weights_finite(model):
        raise _Diverged(epoch, "the model's weights")
    return mean_loss, seen / elapsed if elapsed > 0 else 0.0


def evaluate(model: nn.Module, ctx: Context, epoch: int) -> tuple[float, np.ndarray]:
    """Score the selection images; returns (mean BCE loss, prior-corrected logits float64).

    The loss is unweighted (natural class mix) and taken on the corrected logits, so it is
    comparable across samplers.
    """
    throttle = Throttle(0.25)

    def before_batch(i: int, total: int) -> None:
        check_cancel(ctx.cancel)
        if throttle.ready(final=i == total):
            report(ctx.progress, "validate", i, total, f"validating epoch {epoch}",
                   epoch=epoch, epochs=ctx.config.epochs)

    logits = predict_rows(model, ctx, ctx.val_rows, before_batch)
    if not _finite(logits):
        raise _Diverged(epoch, "the validation logits")
    return _loss(logits, ctx, ctx.val_rows), logits.cpu().numpy()


def predict_rows(model: nn.Module, ctx: Context, rows: np.ndarray,
                 before_batch=None) -> torch.Tensor:
    """Prior-corrected logits (float64, on the device) of ``rows`` of ``ctx.images``, through
    the same :func:`core.training.predict.predict` that scoring uses.

    ``before_batch(i, total)`` runs before each batch (cancel checks, progress).
    """
    model.eval()
    # No gradients: twice the batch fits (the micro-batch, after an out-of-memory back-off).
    batch_size = ctx.step.micro_batch * 2
    total = batch_count(len(rows), batch_size)
    logits = []
    for i, (batch, _rows) in enumerate(iterate_batches(ctx.images, rows, batch_size,
                                                       ctx.device), start=1):
        if before_batch is not None:
            before_batch(i, total)
        logits.append(predict(model, batch, ctx.logit_offset)[0])
    return torch.cat(logits)


def _loss(logits: torch.Tensor, ctx: Context, rows: np.ndarray) -> float:
    targets = ctx.targets_of(rows).double()
    return float(nn.functional.binary_cross_entropy_with_logits(logits, targets))


def _eta(ctx: Context, epoch: int, elapsed: float, done: int, total: int) -> float:
    """Seconds left for the whole run (an upper bound: early stopping may end it sooner)."""
    per_batch = elapsed / done
    this_epoch = per_batch * (total - done)
    epoch_time = ctx.epoch_seconds[-1] if ctx.epoch_seconds else per_batch * total * 1.1
    return this_epoch + (ctx.config.epochs - epoch) * epoch_time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


# -- the run --------------------------------------------------------------------------------

@dataclass
class _State:
    """What survives from epoch to epoch (and, through last.pt, across a resume)."""

    start_epoch: int = 1
    best_key: tuple[float, float] = (-math.inf, -math.inf)
    best_epoch: int | None = None
    stale_epochs: int = 0
    history: list[EpochRecord] = field(default_factory=list)


def train(dataset, config: TrainConfig | None = None, *, progress=None, cancel=None,
          resume_run: int | None = None, split_from: int | None = None) -> RunRecord:
    """Train a model on a dataset's labelled images and record the run.

    Args:
        dataset: a ``core.dataset.Dataset``.
        config: the training settings. When resuming it may be None (the run's saved
            config is used) or differ only in device, precision and num_threads.
        progress: callback receiving ``Progress`` events (see the module docstring).
        cancel: returns True to stop; checked before every batch.
        resume_run: id of a cancelled, interrupted or failed run to continue from its
            ``last.pt`` (the next epoch on, optimizer/scheduler/RNG state restored).
        split_from: id of a run whose saved training / selection / holdout ids this new
            run reuses (a replay), whatever the labels or the seed say now. A run without
            saved ids (imported) is ignored: the split is drawn as usual.

    Returns:
        The run's record: status 'finished', or 'cancelled' when ``cancel`` stopped it;
        its AUC, escapes and false calls measured on the holdout (see the module doc).

    Raises:
        ValueError: bad settings, too few labelled images, or a run that cannot resume.
        CheckpointError: the run's last.pt cannot be read.
    """
    workspace = dataset.workspace
    previous_seconds = 0.0
    if resume_run is not None:
        run = _claim_for_resume(workspace, resume_run)
        config = _resume_config(run.config, config)
        run_id, previous_seconds = run.id, run.train_seconds or 0.0
    elif config is None:
        raise ValueError("train() needs a TrainConfig (or resume_run).")
    # Before any run row exists: an image size whose images cannot be held, or too few
    # labelled images to split, is one line and leaves no failed run behind.
    check_prepared_memory(int((np.asarray(dataset.labels) >= 0).sum()), config.image_size)
    if resume_run is None and split_from is None:
        split_train_val(dataset.labels, dataset.splits, config.val_fraction,
                        config.effective_split_seed)
    torch.manual_seed(config.seed)  # weight initialisation
    device = select_device(config.device)
    device_name = configure_device(config, device)
    # A resumed run loads last.pt over the model; one that never finished an epoch has
    # none and starts over, from its --weights like the first time.
    restarts = resume_run is None or not (workspace.run_dir(run_id) / LAST).is_file()
    model = create_model(config.model, weights=config.weights if restarts else None)
    parameters = sum(p.numel() for p in model.parameters())
    if resume_run is None:
        run_id = create_run(workspace, config, device=device_name, parameters=parameters)
    else:
        update_run(workspace, run_id, status="running", message=None, device=device_name)
    started = time.perf_counter()

    def seconds() -> float:
        return previous_seconds + time.perf_counter() - started

    model_ready = False
    try:
        split = _split_for(dataset, config, run_id, resume_run if resume_run is not None
                           else split_from, own=resume_run is not None)
        ctx = _build_context(dataset, config, device, model, split, progress, cancel)
        ctx.logit_offset = _record_priors(workspace, run_id, dataset, ctx)
        state = _State()
        if resume_run is not None:
            state = _restore(model, ctx, workspace.run_dir(run_id) / LAST, run_id, workspace)
        model_ready = True
        _announce(progress, run_id, config, device_name, parameters, split, state, ctx)
        _run_epochs(model, ctx, workspace, run_id, state)
        _calibrate(model, ctx, workspace, run_id)
        update_run(workspace, run_id, status="finished", train_seconds=seconds(),
                   message=_finish_message(state, config))
    except Cancelled:
        if model_ready:
            _calibrate(model, ctx, workspace, run_id)  # a cancelled run can still be used
        update_run(workspace, run_id, status="cancelled", train_seconds=seconds(),
                   message=_stop_message("Cancelled", workspace, run_id))
    except _Diverged as exc:
        if model_ready and (workspace.run_dir(run_id) / BEST).is_file():
            _calibrate(model, ctx, workspace, run_id)  # the last finite best epoch
        message = _diverged_message(exc, config, workspace, run_id)
        _record_failure(workspace, run_id, "failed", seconds(), message)
        raise TrainingDiverged(f"Run {run_id} {message[0].lower()}{message[1:]}") from None
    except BaseException as exc:
        # KeyboardInterrupt (a second Ctrl-C) and the like: the run can still be resumed.
        failed = isinstance(exc, Exception)
        message = _failure_message(exc) if failed else \
            _stop_message(f"Aborted ({type(exc).__name__})", workspace, run_id)
        _record_failure(workspace, run_id, "failed" if failed else "cancelled", seconds(),
                        message)
        raise
    return get_run(workspace, run_id)


def _diverged_message(exc: _Diverged, config: TrainConfig, workspace, run_id: int) -> str:
    """One line: what diverged, and what to do (lower --lr)."""
    run = get_run(workspace, run_id)
    kept = (f"; best.pt keeps epoch {run.best_epoch}" if run.best_epoch is not None
            else "; nothing was kept")
    return (f"Diverged: {exc} (learning rate {config.lr:g} is too high){kept}; lower --lr "
            f"and train again.")


def _failure_message(exc: BaseException) -> str:
    """The run row's message for a failure (a full disk is named as such)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"Disk full: cannot write {exc.filename or 'a checkpoint'}; free some space " \
               f"and resume the run."
    return f"{type(exc).__name__}: {exc}"


def _record_failure(workspace, run_id: int, status: str, seconds: float, message: str) -> None:
    """Record a failed / aborted run; when even that fails (a full disk), the row stays
    'running' and is marked interrupted once this process has ended (core.runs)."""
    try:
        update_run(workspace, run_id, status=status, train_seconds=seconds, message=message)
    except (OSError, sqlite3.Error):
        pass


def _stop_message(what: str, workspace, run_id: int) -> str:
    done = [e.epoch for e in recorded_epochs(workspace, run_id)]
    if not done:
        return f"{what} before epoch 1 finished (nothing kept; resuming starts over)."
    return (f"{what} during epoch {max(done) + 1}; last.pt holds epoch {max(done)}. "
            f"Resume with --resume {run_id}.")


def _claim_for_resume(workspace, run_id: int) -> RunRecord:
    run = get_run(workspace, run_id)
    if run.status not in ("cancelled", "failed"):
        raise ValueError(f"Run {run_id} is '{run.status}'; only cancelled, interrupted or "
                         f"failed runs can be resumed.")
    claim_run(workspace, run_id)
    settle_checkpoints(workspace, run_id)  # what a kill during a commit left
    return run


def _resume_config(saved: TrainConfig, given: TrainConfig | None) -> TrainConfig:
    if given is None:
        return saved
    changed = [name for name, value in given.to_dict().items()
               if name not in RUNTIME_FIELDS and saved.to_dict()[name] != value]
    if changed:
        raise ValueError(f"A resumed run keeps its settings; cannot change "
                         f"{', '.join(changed)} (only {', '.join(RUNTIME_FIELDS)}).")
    return saved.replace(**{name: getattr(given, name) for name in RUNTIME_FIELDS})


def _split_for(dataset, config: TrainConfig, run_id: int, saved_by: int | None,
               own: bool) -> Split:
    """The run's split: read back from run ``saved_by`` when it saved one, else drawn with
    the config's split seed; saved with the run either way (``own``: its own saved ids)."""
    workspace = dataset.workspace
    saved = validation_ids(workspace, saved_by) if saved_by is not None else ()
    if len(saved):
        holdout = holdout_ids(workspace, saved_by) if has_holdout(workspace, saved_by) \
            else None
        split = split_from_saved_ids(dataset.image_ids, dataset.labels, dataset.splits,
                                     saved, holdout, config.effective_split_seed)
        if own and holdout is not None:
            return split
    else:
        split = split_train_val(dataset.labels, dataset.splits, config.val_fraction,
                                config.effective_split_seed)
    ids = np.asarray(dataset.image_ids)
    save_validation_ids(workspace, run_id, ids[split.val], holdout_ids=ids[split.holdout])
    return split


def _record_priors(workspace, run_id: int, dataset, ctx: Context) -> float:
    """Store (once per run) the training prior and the labelled defect rate; returns the
    logit offset between them. A resumed run keeps the priors it started with."""
    run = get_run(workspace, run_id)
    train_prior, defect_rate = run.train_prior, run.defect_rate
    if train_prior is None or defect_rate is None:
        cfg = ctx.config
        train_prior = training_prior(cfg.sampler, ctx.train_labels, cfg.per_class)
        defect_rate = labelled_bad_share(dataset.labels)
        update_run(workspace, run_id, train_prior=train_prior, defect_rate=defect_rate)
    return prior_logit_offset(defect_rate, train_prior)


def _build_context(dataset, config: TrainConfig, device: torch.device, model: nn.Module,
                   split: Split, progress, cancel) -> Context:
    positions = np.concatenate([split.train, split.selection, split.holdout])
    images = prepare_images(dataset, positions, config.input_shape, device, progress, cancel)
    labels = np.asarray(dataset.labels)[positions].astype(np.float32)
    train_labels = labels[: len(split.train)].astype(np.int64)
    channels_last = device.type == "cuda"
    place_model(model, device)
    pos_weight = None
    if config.sampler == "weighted":
        pos_weight = torch.tensor(positive_weight(train_labels), device=device)
    optimizer = build_optimizer(model, config)
    steps = batch_count(epoch_length(config.sampler, train_labels, config.per_class),
                        config.batch_size)
    step = GradientStep(model, nn.BCEWithLogitsLoss(pos_weight=pos_weight), optimizer,
                        batch_size=config.batch_size,
                        dtype=autocast_dtype(config.precision, device), device=device,
                        notify=lambda message: report(progress, "notice", message=message))
    return Context(config=config, device=device, images=images,
                   targets=torch.from_numpy(labels).to(device),
                   train_rows=np.arange(len(split.train)),
                   val_rows=np.arange(len(split.train), len(split.train) + len(split.selection)),
                   holdout_rows=np.arange(len(split.train) + len(split.selection),
                                          len(positions)),
                   train_labels=train_labels, step=step,
                   scheduler=build_scheduler(optimizer, config, steps), progress=progress,
                   cancel=cancel, channels_last=channels_last,
                   augment=settings_for_rows(config.image_size))


def _announce(progress, run_id: int, config: TrainConfig, device_name: str, parameters: int,
              split: Split, state: _State, ctx: Context) -> None:
    resumed = f", resuming at epoch {state.start_epoch}" if state.start_epoch > 1 else ""
    report(progress, "start", message=(
        f"Run {run_id}: {config.model} ({parameters:,} parameters) on {device_name}; "
        f"{len(split.train)} training / {len(split.selection)} selection / "
        f"{len(split.holdout)} holdout images ({split.source}){resumed}"),
        run_id=run_id, config=config.to_dict(), device=device_name, parameters=parameters,
        train_images=len(split.train), val_images=len(split.val),
        selection_images=len(split.selection), holdout_images=len(split.holdout),
        start_epoch=state.start_epoch)
    for note in sampler_notes(config.sampler, ctx.train_labels, config.per_class):
        report(progress, "notice", message=note)


def _run_epochs(model: nn.Module, ctx: Context, workspace, run_id: int, state: _State) -> None:
    config = ctx.config
    for epoch in range(state.start_epoch, config.epochs + 1):
        began = time.perf_counter()
        train_loss, speed = train_one_epoch(model, ctx, epoch)
        val_loss, scores = evaluate(model, ctx, epoch)
        ctx.epoch_seconds.append(time.perf_counter() - began)
        record = _epoch_record(run_id, epoch, train_loss, val_loss, scores, speed, ctx)
        state.history.append(record)
        improved = (record.val_auc, -record.val_loss) > state.best_key
        if improved:
            state.best_key, state.best_epoch, state.stale_epochs = \
                (record.val_auc, -record.val_loss), epoch, 0
        else:
            state.stale_epochs += 1
        _commit_epoch(model, ctx, workspace, run_id, state, record, improved)
        _report_epoch(ctx, record, state, improved, run_id)
        if config.early_stopping_patience and state.stale_epochs >= \
                config.early_stopping_patience:
            report(ctx.progress, "notice", message=(
                f"Early stop after epoch {epoch}: validation AUC has not improved for "
                f"{state.stale_epochs} epochs (best: epoch {state.best_epoch})."))
            break


def _epoch_record(run_id: int, epoch: int, train_loss: float, val_loss: float,
                  logits: np.ndarray, speed: float, ctx: Context) -> EpochRecord:
    labels = ctx.labels_of(ctx.val_rows)
    threshold = EPOCH_THRESHOLD if ctx.config.threshold is None else ctx.config.threshold
    confusion = confusion_at(sigmoid(logits), labels, threshold)
    # AUC by logit: probabilities of very confident parts can round to the same value.
    return EpochRecord(run_id=run_id, epoch=epoch, train_loss=train_loss, val_loss=val_loss,
                       val_auc=roc_auc(logits, labels), escapes=confusion.escapes,
                       false_calls=confusion.false_calls, images_per_s=speed,
                       seconds=ctx.epoch_seconds[-1])


def _commit_epoch(model: nn.Module, ctx: Context, workspace, run_id: int, state: _State,
                  record: EpochRecord, improved: bool) -> None:
    """Keep a finished epoch so that a kill at any moment leaves a run row that describes
    the ``best.pt`` and ``last.pt`` on disk.

    Both checkpoints are first written whole as pending files, then one database
    transaction records the epoch and (when it improved) copies its selection metrics to
    the run row as the best epoch (:func:`_calibrate` replaces them with the holdout's at
    the end), and only then are the pending files renamed into place. A kill before the
    commit leaves pending files that ``core.runs.settle_checkpoints`` drops; after it,
    files it renames. A file that cannot be written (a full disk) fails the run before
    anything changed.
    """
    run_dir = workspace.run_dir(run_id)
    epoch = record.epoch
    names = ([BEST] if improved else []) + [LAST]
    pending = {name: pending_path(run_dir, name, epoch) for name in names}
    try:
        for name in names:
            _save_named(pending[name], run_dir / name, _checkpoint(model, ctx, epoch, state))
        best = {}
        if improved:
            best = dict(best_epoch=epoch, val_auc=record.val_auc, val_loss=record.val_loss,
                        escapes=record.escapes, false_calls=record.false_calls,
                        checkpoint=run_dir / BEST)
        commit_epoch(workspace, record, best)
    except BaseException:
        for path in pending.values():
            path.unlink(missing_ok=True)
        raise
    for name in names:
        os.replace(pending[name], run_dir / name)


def _save_named(path, final, checkpoint: dict) -> None:
    """save_checkpoint to ``path``; an OSError names ``final`` (what the user knows)."""
    try:
        save_checkpoint(path, checkpoint)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from None


def _calibrate(model: nn.Module, ctx: Context, workspace, run_id: int) -> None:
    """Measure ``best.pt`` on the holdout: the run's reported figures and its threshold.

    The holdout chose nothing during training, so its AUC and escapes are not flattered
    by the choice of epoch. Without a configured threshold the run's threshold is the
    operating point: no holdout escapes, placed midway (in logit space) below the lowest
    bad score.
    """
    best = workspace.run_dir(run_id) / BEST
    if not best.is_file():
        return
    load_state_into(model, load_checkpoint(best)["model"], str(best))
    logits_t = predict_rows(model, ctx, ctx.holdout_rows)
    logits, labels = logits_t.cpu().numpy(), ctx.labels_of(ctx.holdout_rows)
    scores = sigmoid(logits)
    threshold = ctx.config.threshold
    if threshold is None:
        threshold = threshold_for_max_escapes(scores, labels, 0)
    confusion = confusion_at(scores, labels, threshold)
    update_run(workspace, run_id, val_auc=roc_auc(logits, labels),
               val_loss=_loss(logits_t, ctx, ctx.holdout_rows), threshold=threshold,
               escapes=confusion.escapes, false_calls=confusion.false_calls,
               holdout_good=int((labels == 0).sum()), holdout_bad=int((labels == 1).sum()))


def _report_epoch(ctx: Context, record: EpochRecord, state: _State, improved: bool,
                  run_id: int) -> None:
    message = (f"epoch {record.epoch}/{ctx.config.epochs}  train loss {record.train_loss:.4f}  "
               f"val loss {record.val_loss:.4f}  val AUC {record.val_auc:.4f}  "
               f"escapes {record.escapes} / false calls {record.false_calls}  "
               f"{record.images_per_s:.0f} img/s{'  *best' if improved else ''}")
    data = record.to_dict()
    data.update(epoch_record=record, epochs=ctx.config.epochs, best_epoch=state.best_epoch,
                best_auc=state.best_key[0], improved=improved, run_id=run_id)
    report(ctx.progress, "epoch", record.epoch, ctx.config.epochs, message, **data)


def _finish_message(state: _State, config: TrainConfig) -> str:
    if not state.history:
        return "Nothing to do: every epoch had already been trained."
    last = state.history[-1].epoch
    stopped = " (early stop)" if last < config.epochs else ""
    return f"Trained {last} of {config.epochs} epochs{stopped}; best epoch {state.best_epoch}."


# -- checkpoints ----------------------------------------------------------------------------

def _checkpoint(model: nn.Module, ctx: Context, epoch: int, state: _State) -> dict:
    rng = {"torch": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return {"model": model.state_dict(), "optimizer": ctx.step.optimizer.state_dict(),
            "scheduler": ctx.scheduler.state_dict(),
            "scaler": ctx.step.scaler.state_dict() if ctx.step.scaler else None,
            "epoch": epoch, "config": ctx.config.to_dict(), "best_auc": state.best_key[0],
            "logit_offset": ctx.logit_offset,
            "best_loss": -state.best_key[1], "best_epoch": state.best_epoch,
            "stale_epochs": state.stale_epochs, "rng": rng,
            "history": [r.to_dict() for r in state.history]}


def _restore(model: nn.Module, ctx: Context, path, run_id: int, workspace) -> _State:
    """Load last.pt into the model/optimizer/scheduler; the state to continue from."""
    state = _State()
    if not path.is_file():
        report(ctx.progress, "notice", message=f"Run {run_id} had not finished an epoch: "
                                               f"starting it again from epoch 1.")
        delete_epochs_from(workspace, run_id, 1)
        return state
    checkpoint = load_checkpoint(path)
    load_state_into(model, checkpoint["model"], str(path))
    try:
        ctx.step.optimizer.load_state_dict(checkpoint["optimizer"])
        ctx.scheduler.load_state_dict(checkpoint["scheduler"])
        if ctx.step.scaler and checkpoint.get("scaler"):
            ctx.step.scaler.load_state_dict(checkpoint["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not hold this run's training state: {exc}") from None
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if ctx.device.type == "cuda" and "cuda" in checkpoint["rng"]:
        torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], ctx.device)
    state.start_epoch = int(checkpoint["epoch"]) + 1
    state.best_key = (checkpoint["best_auc"], -checkpoint["best_loss"])
    state.best_epoch = checkpoint["best_epoch"]
    state.stale_epochs = checkpoint["stale_epochs"]
    state.history = [EpochRecord(**r) for r in checkpoint["history"]]
    delete_epochs_from(workspace, run_id, state.start_epoch)
    return state
