"""The training run: one call, :func:`train`, turns a dataset and a TrainConfig into a run.

The inner loop (one epoch, one validation pass, the optimizer step) is
``core.training.loop``; running it in several processes is ``core.training.distributed``
(rank 0 alone writes the workspace; see there); device, precision and threads come from
``core.device``.

What a run does, in order:

1. Split the labelled images into training and held-out images (stratified; the dataset's
   own labelled 'val' images when it has any), divide the held-out ones into *selection*
   images (choose the epoch) and *holdout* images (report), and save both sets of ids.
   A resumed run, or a replay given ``split_from``, reads the saved ids back instead.
2. Resize the needed images once into a uint8 tensor (on the GPU when it fits); batches
   are built by indexing it, then normalised and augmented on the device.
3. Per epoch: train on the sampler's draws (torch's per-step schedulers: LinearLR warm-up,
   then CosineAnnealingLR or constant, ``core.training.loop``), validate on the selection
   images (loss, AUC, escapes and false calls at ``config.threshold``, 0.5 when it is left
   to the operating point), write ``best.pt`` when the selection AUC improves (ties: lower
   loss) and ``last.pt`` always, record the epoch in the database, and stop early after
   ``early_stopping_patience`` epochs without improvement. While training, the run's row
   shows the best epoch's selection figures.
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
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.checkpoint import CheckpointError, load_checkpoint, load_state_into, save_checkpoint
from core.device import (  # noqa: F401  (select_device, autocast_dtype: re-exported)
    autocast_dtype,
    channels_last,
    compile_model,
    configure_device,
    select_device,
)
from core.golden_score import GOLDEN_FILE, fit_bank, save_bank
from core.metrics import (
    confusion_at,
    prior_logit_offset,
    roc_auc,
    sigmoid,
    threshold_for_max_escapes,
)
from core.models import create_model
from core.progress import Cancelled, report
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
from core.training.augment import settings_for_rows
from core.training.config import TrainConfig, check_prepared_memory
from core.training.data import (
    Split,
    batch_count,
    labelled_bad_share,
    prepare_images,
    split_from_saved_ids,
    split_train_val,
)
from core.training.distributed import World, current_world, wrap_for_training
from core.training.loop import (  # noqa: F401  (re-exported: the loop's public names)
    Context,
    Diverged,
    GradientStep,
    build_optimizer,
    build_scheduler,
    evaluate,
    finite,
    loss_of,
    micro_slices,
    predict_rows,
    train_one_epoch,
)
from core.training.predict import place_model
from core.training.samplers import (
    epoch_length,
    positive_weight,
    sampler_notes,
    training_prior,
)

BEST = "best.pt"
LAST = "last.pt"
# Settings a resumed run may change (they do not alter what is learned).
RUNTIME_FIELDS = ("device", "precision", "num_threads", "compile", "sync_batchnorm")
# Per-epoch escapes and false calls are counted here when the run's threshold is left to
# the operating point (which only the holdout, after training, places).
EPOCH_THRESHOLD = 0.5


class TrainingDiverged(ValueError):
    """The run's loss, logits or weights stopped being finite numbers (NaN / inf): the
    learning rate is too high for the data. The run is recorded as failed; nothing from the
    diverged epoch is kept (``best.pt`` and ``last.pt`` hold the last finite epoch)."""


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
          resume_run: int | None = None, split_from: int | None = None) -> RunRecord | None:
    """Train a model on a dataset's labelled images and record the run.

    Args:
        dataset: a ``core.dataset.Dataset``.
        config: the training settings. When resuming it may be None (the run's saved
            config is used) or differ only in RUNTIME_FIELDS (device, precision, threads,
            compile, sync_batchnorm); the number of processes may change too.
        progress: callback receiving ``Progress`` events (see the module docstring).
        cancel: returns True to stop; checked before every batch.
        resume_run: id of a cancelled, interrupted or failed run to continue from its
            ``last.pt`` (the next epoch on, optimizer/scheduler/RNG state restored).
        split_from: id of a run whose saved training / selection / holdout ids this new
            run reuses (a replay), whatever the labels or the seed say now. A run without
            saved ids (imported) is ignored: the split is drawn as usual.

    In a distributed run (``core.training.distributed``) every rank calls this; rank 0's
    arguments count (the others may pass None) and only rank 0 writes the workspace and
    reports progress.

    Returns:
        The run's record: status 'finished', or 'cancelled' when ``cancel`` stopped it;
        its AUC, escapes and false calls measured on the holdout (see the module doc).
        None on the other ranks of a distributed run.

    Raises:
        ValueError: bad settings, too few labelled images, or a run that cannot resume.
        CheckpointError: the run's last.pt cannot be read.
    """
    world = current_world()
    progress = progress if world.is_main else None
    workspace = dataset.workspace
    world.check_same_images(dataset)
    config, resume_run, split_from, previous_seconds, restarts = world.from_main(
        lambda: _settings(dataset, config, resume_run, split_from, world))
    torch.manual_seed(config.seed)  # weight initialisation
    device = select_device(config.device)
    device_name = configure_device(device, config.precision, config.num_threads,
                                   world.local_size)
    if world.distributed:
        device_name += f" x {world.size} processes"
    # A resumed run loads last.pt over the model; one that never finished an epoch has
    # none and starts over, from its --weights like the first time.
    model = create_model(config.model, weights=config.weights if restarts else None)
    parameters = sum(p.numel() for p in model.parameters())
    run_id = world.from_main(lambda: _open_run(workspace, config, resume_run, device_name,
                                               parameters))
    started = time.perf_counter()

    def seconds() -> float:
        return previous_seconds + time.perf_counter() - started

    model_ready, state = False, _State()
    try:
        split = world.from_main(lambda: _split_for(
            dataset, config, run_id, resume_run if resume_run is not None else split_from,
            own=resume_run is not None))
        ctx = _build_context(dataset, config, device, model, split, progress, cancel)
        ctx.logit_offset = world.from_main(
            lambda: _record_priors(workspace, run_id, dataset, ctx))
        if resume_run is not None:
            state = _restore(model, ctx, workspace.run_dir(run_id) / LAST, run_id, workspace)
        model_ready = True
        if world.is_main:
            _announce(progress, run_id, config, device_name, parameters, split, state, ctx)
        _run_epochs(model, ctx, workspace, run_id, state)
        _calibrate(model, ctx, workspace, run_id, golden_from=(dataset, split))
        _on_main(world, lambda: update_run(workspace, run_id, status="finished",
                                           train_seconds=seconds(),
                                           message=_finish_message(state, config)))
    except Cancelled:
        if model_ready:
            _calibrate(model, ctx, workspace, run_id)  # a cancelled run can still be used
        _on_main(world, lambda: update_run(
            workspace, run_id, status="cancelled", train_seconds=seconds(),
            message=_stop_message("Cancelled", workspace, run_id)))
    except Diverged as exc:
        if model_ready and state.best_epoch is not None:
            _calibrate(model, ctx, workspace, run_id)  # the last finite best epoch
        if not world.is_main:
            raise TrainingDiverged(str(exc)) from None
        message = _diverged_message(exc, config, workspace, run_id)
        _record_failure(workspace, run_id, "failed", seconds(), message)
        raise TrainingDiverged(f"Run {run_id} {message[0].lower()}{message[1:]}") from None
    except BaseException as exc:
        # KeyboardInterrupt (a second Ctrl-C), Stopped and the like: the run can still be
        # resumed.
        if world.is_main:
            failed = isinstance(exc, Exception)
            message = _failure_message(exc, run_id) if failed else \
                _stop_message(f"Aborted ({type(exc).__name__})", workspace, run_id)
            _record_failure(workspace, run_id, "failed" if failed else "cancelled",
                            seconds(), message)
        raise
    return get_run(workspace, run_id) if world.is_main else None


def _on_main(world: World, work) -> None:
    if world.is_main:
        work()


def _settings(dataset, config: TrainConfig | None, resume_run: int | None,
              split_from: int | None, world: World) -> tuple:
    """Rank 0's checks before any run row exists: (config, resume_run, split_from,
    previous seconds, restarts from scratch). An image size whose images cannot be held,
    or too few labelled images to split, is one line and leaves no failed run behind."""
    workspace = dataset.workspace
    previous_seconds = 0.0
    if resume_run is not None:
        run = _claim_for_resume(workspace, resume_run)
        config = _resume_config(run.config, config)
        previous_seconds = run.train_seconds or 0.0
    elif config is None:
        raise ValueError("train() needs a TrainConfig (or resume_run).")
    check_prepared_memory(int((np.asarray(dataset.labels) >= 0).sum()), config.image_size)
    if resume_run is None and split_from is None:
        split_train_val(dataset.labels, dataset.splits, config.val_fraction,
                        config.effective_split_seed)
    restarts = resume_run is None or not (workspace.run_dir(resume_run) / LAST).is_file()
    return config, resume_run, split_from, previous_seconds, restarts


def _open_run(workspace, config: TrainConfig, resume_run: int | None, device_name: str,
              parameters: int) -> int:
    if resume_run is None:
        return create_run(workspace, config, device=device_name, parameters=parameters)
    update_run(workspace, resume_run, status="running", message=None, device=device_name)
    return resume_run


def _diverged_message(exc: Diverged, config: TrainConfig, workspace, run_id: int) -> str:
    """One line: what diverged, and what to do (lower --lr)."""
    run = get_run(workspace, run_id)
    kept = (f"; best.pt keeps epoch {run.best_epoch}" if run.best_epoch is not None
            else "; nothing was kept")
    return (f"Diverged: {exc} (learning rate {config.lr:g} is too high){kept}; lower --lr "
            f"and train again.")


def _failure_message(exc: BaseException, run_id: int) -> str:
    """The run row's message for a failure (a full disk, a lost peer are named as such)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"Disk full: cannot write {exc.filename or 'a checkpoint'}; free some space " \
               f"and resume the run."
    if isinstance(exc, torch.distributed.DistError):
        return (f"Another process of this distributed run failed or was stopped "
                f"({type(exc).__name__}); resume with --resume {run_id}.")
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
    """Images, optimizer, schedule and the step; ``model`` is placed on ``device`` and, in
    a distributed run, wrapped in DDP (``ctx.trained``; ``model`` stays the plain one)."""
    world = current_world()
    positions = np.concatenate([split.train, split.selection, split.holdout])
    # A cancel during preparation would be seen by some ranks only: ranks agree from the
    # first batch on.
    images = prepare_images(dataset, positions, config.input_shape, device, progress,
                            None if world.distributed else cancel)
    labels = np.asarray(dataset.labels)[positions].astype(np.float32)
    train_labels = labels[: len(split.train)].astype(np.int64)
    place_model(model, device)
    notify = lambda message: report(progress, "notice", message=message)  # noqa: E731
    trained = wrap_for_training(model, device, world, config.sync_batchnorm)
    if config.compile:
        trained = compile_model(trained, device, static_shapes=not world.distributed,
                                notify=notify)
    pos_weight = None
    if config.sampler == "weighted":
        pos_weight = torch.tensor(positive_weight(train_labels), device=device)
    optimizer = build_optimizer(model, config, device)
    steps = batch_count(epoch_length(config.sampler, train_labels, config.per_class),
                        config.batch_size)
    step = GradientStep(trained, nn.BCEWithLogitsLoss(pos_weight=pos_weight), optimizer,
                        batch_size=config.batch_size,
                        dtype=autocast_dtype(config.precision, device), device=device,
                        notify=notify, world_size=world.size)
    return Context(config=config, device=device, images=images,
                   targets=torch.from_numpy(labels).to(device),
                   train_rows=np.arange(len(split.train)),
                   val_rows=np.arange(len(split.train), len(split.train) + len(split.selection)),
                   holdout_rows=np.arange(len(split.train) + len(split.selection),
                                          len(positions)),
                   train_labels=train_labels, step=step,
                   scheduler=build_scheduler(optimizer, config, steps), progress=progress,
                   cancel=cancel, channels_last=channels_last(device),
                   augment=settings_for_rows(config.image_size), world=world,
                   trained=trained)


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
        if ctx.world.is_main:
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


def _calibrate(model: nn.Module, ctx: Context, workspace, run_id: int,
               golden_from: tuple | None = None) -> None:
    """Measure ``best.pt`` on the holdout: the run's reported figures and its threshold.

    The holdout chose nothing during training, so its AUC and escapes are not flattered
    by the choice of epoch. Without a configured threshold the run's threshold is the
    operating point: no holdout escapes, placed midway (in logit space) below the lowest
    bad score. With a golden weight and ``golden_from`` = (dataset, split), the run's
    golden bank is built first and every figure is of the fused score (core.golden_score);
    a cancelled run skips it (the user asked to stop) and scores with the network alone.
    """
    best = workspace.run_dir(run_id) / BEST
    # Only rank 0's machine holds the file: it sends the weights to the others.
    weights = ctx.world.broadcast(load_checkpoint(best)["model"] if ctx.world.is_main
                                  and best.is_file() else None)
    if weights is None:
        return
    load_state_into(model, weights, str(best))
    logits_t = predict_rows(model, ctx, ctx.holdout_rows)
    if not ctx.world.is_main:
        return
    logits, labels = logits_t.cpu().numpy(), ctx.labels_of(ctx.holdout_rows)
    bank = workspace.run_dir(run_id) / GOLDEN_FILE
    bank.unlink(missing_ok=True)  # a bank from before (a resumed run) is rebuilt or dropped
    if ctx.config.golden_weight > 0 and golden_from is not None:
        logits = _fit_golden(ctx, logits, labels, bank, *golden_from)
    scores = sigmoid(logits)
    threshold = ctx.config.threshold
    if threshold is None:
        threshold = threshold_for_max_escapes(scores, labels, 0)
    confusion = confusion_at(scores, labels, threshold)
    update_run(workspace, run_id, val_auc=roc_auc(logits, labels),
               val_loss=loss_of(logits_t, ctx, ctx.holdout_rows), threshold=threshold,
               escapes=confusion.escapes, false_calls=confusion.false_calls,
               holdout_good=int((labels == 0).sum()), holdout_bad=int((labels == 1).sum()))


def _fit_golden(ctx: Context, logits: np.ndarray, labels: np.ndarray, path, dataset,
                split: Split) -> np.ndarray:
    """Build and save the run's golden bank; the holdout's fused logits."""
    golden, fused = fit_bank(dataset, split.train, split.holdout, logits, labels,
                             ctx.config.golden_weight, ctx.config.seed, ctx.progress)
    save_bank(path, golden)
    return fused


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
            "stale_epochs": state.stale_epochs, "rng": rng, "world_size": ctx.world.size,
            "history": [r.to_dict() for r in state.history]}


def _restore(model: nn.Module, ctx: Context, path, run_id: int, workspace) -> _State:
    """Load last.pt into the model/optimizer/scheduler; the state to continue from.

    Rank 0 reads the file and sends it to the other ranks, which may have another world
    size than the run that wrote it (the plan is the same; see ``samplers.rank_share``).
    """
    world = ctx.world

    def read() -> dict | None:
        if not path.is_file():
            report(ctx.progress, "notice", message=f"Run {run_id} had not finished an "
                                                   f"epoch: starting it again from epoch 1.")
            delete_epochs_from(workspace, run_id, 1)
            return None
        return load_checkpoint(path)

    checkpoint = world.from_main(read)
    state = _State()
    if checkpoint is None:
        return state
    load_state_into(model, checkpoint["model"], str(path))
    try:
        ctx.step.optimizer.load_state_dict(checkpoint["optimizer"])
        _load_scheduler(ctx.scheduler, checkpoint["scheduler"])
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
    if world.is_main:
        delete_epochs_from(workspace, run_id, state.start_epoch)
    return state


def _load_scheduler(scheduler, saved: dict) -> None:
    """Restore the schedule; a checkpoint from before torch's schedulers were used (a
    LambdaLR state) is continued by stepping the new schedule to the same step."""
    if "lr_lambdas" not in saved:
        scheduler.load_state_dict(saved)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(int(saved["last_epoch"])):
            scheduler.step()
