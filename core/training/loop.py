"""One epoch of training and one pass of validation: the inner loop :func:`train` drives.

``train_one_epoch`` takes the sampler's order for the epoch in global batches of
``config.batch_size``; in a distributed run every rank augments the whole global batch with
the epoch's generator (so the images do not depend on the world size) and trains on its own
contiguous share (``core.training.samplers.rank_share``), while DistributedDataParallel
averages the gradients. Each rank's loss is weighted by its share of the global batch, so
the averaged gradient is exactly the one-process gradient of the whole batch.

``evaluate`` and ``predict_rows`` split the batches round-robin over the ranks and gather
the logits in order (``core.training.distributed.World``), so every rank holds the same
validation numbers and takes the same decisions.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.device import autocast, halved_batch, unless_out_of_memory
from core.progress import Throttle, report
from core.training.augment import AugmentSettings, augment_batch
from core.training.config import TrainConfig
from core.training.data import batch_count, load_batch, normalise_unit, to_unit
from core.training.distributed import World
from core.training.predict import predict
from core.training.samplers import (
    epoch_generator,
    epoch_indices,
    rank_share,
    trimmed_order,
)

WARMUP_SHARE = 0.05
MAX_WARMUP_STEPS = 500
FINAL_LR_SHARE = 0.01
# BatchNorm needs two images to normalise over; the out-of-memory back-off stops here.
MIN_MICRO_BATCH = 2


class Diverged(Exception):
    """Raised inside an epoch; :func:`train` records it and raises TrainingDiverged."""

    def __init__(self, epoch: int, what: str) -> None:
        super().__init__(f"{what} became NaN or infinite in epoch {epoch}")
        self.epoch, self.what = epoch, what


def finite(value) -> bool:
    """True when a tensor / number / array holds only finite values."""
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())


def weights_finite(model: nn.Module) -> bool:
    """Every floating-point weight and buffer (BatchNorm statistics too) is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


# -- optimisation ---------------------------------------------------------------------------

def build_optimizer(model: nn.Module, config: TrainConfig,
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD; biases and normalisation weights get no weight decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    fused = device is not None and device.type == "cuda"
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule from torch's schedulers: a linear warm-up over ~5% of the steps
    (LinearLR), then cosine annealing to FINAL_LR_SHARE of the peak (CosineAnnealingLR) or
    the constant peak (ConstantLR), chained by SequentialLR."""
    sched = torch.optim.lr_scheduler
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(MAX_WARMUP_STEPS, int(total * WARMUP_SHARE))
    if config.schedule == "constant":
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        main = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup),
                                       eta_min=config.lr * FINAL_LR_SHARE)
    if warmup == 0:
        return main
    warm = sched.LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0,
                          total_iters=warmup)
    return sched.SequentialLR(optimizer, [warm, main], milestones=[warmup])


class GradientStep:
    """One optimizer step on a batch, in micro-batches with gradient accumulation.

    Starts with the whole batch in one pass. On a GPU out-of-memory error it halves the
    micro-batch and redoes the step, accumulating gradients so the effective batch (and
    hence the training dynamics) stays ``config.batch_size``; ``notify`` tells the user.
    Under DDP only the last micro-batch synchronises gradients (``no_sync`` before it).
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                 *, batch_size: int, dtype: torch.dtype | None, device: torch.device,
                 notify=None, world_size: int = 1) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.micro_batch = batch_size
        self.dtype, self.device, self.world_size = dtype, device, world_size
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        self.notify = notify or (lambda message: None)

    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 global_count: int | None = None) -> torch.Tensor:
        """Train on inputs ``x`` / 0-1 targets ``y``, this rank's share of a global batch of
        ``global_count`` images (default: ``len(x)``, one process). Returns this rank's part
        of the global batch's mean loss (a tensor; the ranks' parts sum to the mean)."""
        global_count = global_count or len(x)
        while True:
            loss = unless_out_of_memory(lambda: self._accumulate(x, y, global_count))
            if loss is not None:
                return loss
            self.optimizer.zero_grad(set_to_none=True)
            self._back_off(len(x))

    def _accumulate(self, x: torch.Tensor, y: torch.Tensor, global_count: int) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=x.device)
        parts = micro_slices(len(x), self.micro_batch)
        for k, part in enumerate(parts):
            xb, yb = x[part], y[part]
            last = k == len(parts) - 1
            with nullcontext() if last or not hasattr(self.model, "no_sync") \
                    else self.model.no_sync():
                with autocast(self.device, self.dtype):
                    logits = self.model(xb)
                loss = self.loss_fn(logits.float(), yb)
                # Weighted by its share of the global batch, the summed (and, under DDP,
                # rank-averaged: hence world_size) gradients equal the whole batch's.
                share = loss * (len(xb) / global_count)
                scaled = share * self.world_size
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += share.detach()
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return total

    def _back_off(self, batch: int) -> None:
        self.micro_batch = halved_batch(
            self.micro_batch, MIN_MICRO_BATCH, self.device,
            "use a smaller --image-size or model, or free the GPU")
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
    scheduler: torch.optim.lr_scheduler.LRScheduler
    progress: object = None
    cancel: object = None
    channels_last: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    logit_offset: float = 0.0     # the prior correction (core.metrics.prior_logit_offset)
    world: World = field(default_factory=World)
    trained: nn.Module | None = None  # what the step trains: DDP / compiled, or the model

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
        return trimmed_order(self.train_rows[picks], cfg.batch_size, self.world.size)

    def augment_generator(self, epoch: int) -> torch.Generator | None:
        if not self.config.augment:
            return None
        seed = int(torch.randint(2**62, (1,), generator=epoch_generator(self.config.seed,
                                                                          epoch, salt=1)))
        return torch.Generator(device=self.device).manual_seed(seed)


def train_one_epoch(model: nn.Module, ctx: Context, epoch: int) -> tuple[float, float]:
    """Train one epoch; returns (mean training loss, training images per second, all ranks).

    Raises:
        Cancelled: when ``ctx.cancel`` asks to stop (checked before every batch).
    """
    (ctx.trained if ctx.trained is not None else model).train()
    world, batch_size, epochs = ctx.world, ctx.config.batch_size, ctx.config.epochs
    order = ctx.epoch_order(epoch)
    generator = ctx.augment_generator(epoch)
    total = batch_count(len(order), batch_size)
    loss_sum, seen = torch.zeros((), device=ctx.device), 0
    throttle, start = Throttle(0.25), time.perf_counter()
    for i, begin in enumerate(range(0, len(order), batch_size), start=1):
        world.check_cancel(ctx.cancel)
        rows = order[begin:begin + batch_size]
        share = rank_share(len(rows), world.rank, world.size)
        x = ctx.inputs(load_batch(ctx.images, rows, ctx.device), generator)[share]
        loss = ctx.step(x, ctx.targets_of(rows[share]), len(rows))
        ctx.scheduler.step()
        loss_sum += loss * len(rows)
        seen += len(rows)
        if throttle.ready(final=i == total) and world.is_main:
            elapsed = time.perf_counter() - start
            # This rank's part, scaled: the exact mean over the ranks comes at the end.
            mean_loss = loss_sum.item() * world.size / seen
            if not math.isfinite(mean_loss) and not world.distributed:
                raise Diverged(epoch, "the training loss")  # NaN weights never come back
            speed = seen / elapsed if elapsed > 0 else 0.0
            eta = _eta(ctx, epoch, elapsed, i, total)
            report(ctx.progress, "train", i, total,
                   f"epoch {epoch}/{epochs}  loss {mean_loss:.4f}  {speed:.0f} img/s  "
                   f"ETA {_clock(eta)}", epoch=epoch, epochs=epochs, batch=i,
                   loss=mean_loss, images_per_s=speed, eta_s=eta)
    elapsed = time.perf_counter() - start
    mean_loss = world.sum(loss_sum).item() / max(1, seen)
    if not math.isfinite(mean_loss):
        raise Diverged(epoch, "the training loss")
    world.sync_buffers(model)
    if not weights_finite(model):
        raise Diverged(epoch, "the model's weights")
    world.check_in_sync(model)
    return mean_loss, seen / elapsed if elapsed > 0 else 0.0


def evaluate(model: nn.Module, ctx: Context, epoch: int) -> tuple[float, np.ndarray]:
    """Score the selection images; returns (mean BCE loss, prior-corrected logits float64).

    The loss is unweighted (natural class mix) and taken on the corrected logits, so it is
    comparable across samplers.
    """
    throttle = Throttle(0.25)

    def before_batch(i: int, total: int) -> None:
        if throttle.ready(final=i == total):
            report(ctx.progress, "validate", i, total, f"validating epoch {epoch}",
                   epoch=epoch, epochs=ctx.config.epochs)

    logits = predict_rows(model, ctx, ctx.val_rows, before_batch, ctx.cancel)
    if not finite(logits):
        raise Diverged(epoch, "the validation logits")
    return loss_of(logits, ctx, ctx.val_rows), logits.cpu().numpy()


def predict_rows(model: nn.Module, ctx: Context, rows: np.ndarray,
                 before_batch=None, cancel=None) -> torch.Tensor:
    """Prior-corrected logits (float64, on the device) of ``rows`` of ``ctx.images``, through
    the same :func:`core.training.predict.predict` that scoring uses; the batches are
    shared among the ranks and the logits gathered on every rank, in order.

    ``before_batch(i, total)`` runs before each of this rank's batches (progress);
    ``cancel`` is checked (and agreed between the ranks) before each round.
    """
    model.eval()
    # No gradients: twice the batch fits (the micro-batch, after an out-of-memory back-off).
    batch_size = ctx.world.min_int(ctx.step.micro_batch * 2)
    total = batch_count(len(rows), batch_size)
    mine = {}
    for i in ctx.world.rounds(total, cancel):
        if i is None:
            continue
        if before_batch is not None:
            before_batch(i + 1, total)
        batch = load_batch(ctx.images, rows[i * batch_size:(i + 1) * batch_size], ctx.device)
        mine[i] = predict(model, batch, ctx.logit_offset)[0].cpu()
    parts = ctx.world.gather(mine)
    return torch.cat(parts).to(ctx.device) if parts else \
        torch.empty(0, dtype=torch.float64, device=ctx.device)


def loss_of(logits: torch.Tensor, ctx: Context, rows: np.ndarray) -> float:
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
