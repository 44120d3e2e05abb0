"""The ``diesight train`` command: the starting config plus the flags given, the training
with progress on the terminal, and the run's summary (its arguments are in ``core.cli``)."""

from __future__ import annotations

import sys

from core.cli_common import (
    BusyError,
    CtrlC,
    Silent,
    TerminalProgress,
    distributable,
    is_main_process,
)
from core.progress import Progress


def _train_config(args, workspace):
    """The starting config (defaults / --config / --replay / --resume) plus the flags given."""
    from core.runs import get_run, resolve_run
    from core.training.config import TrainConfig, field_specs
    from core.training.presets import preset

    if args.config:
        config = TrainConfig.load(args.config)
    elif args.replay:
        config = resolve_run(workspace, args.replay).config
        # The replay reuses the run's saved split (_replayed_split): say so in its config.
        config = config.replace(split_seed=config.effective_split_seed)
    elif args.resume is not None:
        config = get_run(workspace, args.resume).config
    elif args.preset:
        config = preset(args.preset).config
    else:
        config = TrainConfig()
    overrides = {spec.name: getattr(args, spec.name) for spec in field_specs()
                 if getattr(args, spec.name) is not None}
    return config.replace(**overrides)


def _replayed_split(args, workspace) -> int | None:
    """The run whose saved held-out ids a --replay reuses (None: draw the split), so
    relabelled images or another --seed do not move images between the sets."""
    from core.runs import resolve_run

    if not args.replay or args.split_seed is not None or args.val_fraction is not None:
        return None
    return resolve_run(workspace, args.replay).id


class _TrainPrinter:
    """Progress for ``diesight train``: a bar for batches, a printed line per epoch/notice."""

    def __init__(self, bar: TerminalProgress) -> None:
        self.bar = bar

    def __call__(self, p: Progress) -> None:
        if p.stage in ("start", "epoch", "notice"):
            self.bar.close()
            print(p.message, file=sys.stdout if p.stage == "epoch" else sys.stderr, flush=True)
        else:
            self.bar(p)


@distributable
def _cmd_train(args) -> int:
    import json

    from core.dataset import open_dataset
    from core.training import train
    from core.training.distributed import main_first
    from core.workspace import Workspace

    main = is_main_process()
    bar = TerminalProgress(stream=None if main else Silent())
    try:
        workspace = Workspace.for_dataset(args.data)
        # The other ranks of a distributed run get rank 0's settings from train().
        config = _train_config(args, workspace) if main else None
        if args.save_config and main:
            from core.atomic import atomic_write

            with atomic_write(args.save_config) as fh:
                fh.write(config.to_json() + "\n")
        heading = "Training with:" if args.resume is None else f"Resuming run {args.resume}:"
        if main:
            print(heading, json.dumps(config.to_dict(), sort_keys=True), file=sys.stderr)
        with CtrlC() as cancel:
            with main_first():  # a distributed run's rank 0 creates the workspace
                dataset = open_dataset(args.data, labels_csv=args.labels, progress=bar,
                                       cancel=cancel)
            bar.close()
            run = train(dataset, config, progress=_TrainPrinter(bar) if main else None,
                        cancel=cancel, resume_run=args.resume,
                        split_from=_replayed_split(args, workspace) if main else None)
    except RuntimeError as exc:
        if "already being trained" not in str(exc):  # core.runs' lock of a live run
            raise
        raise BusyError(f"{exc} Wait for it to finish (or stop it), then resume again."
                        ) from None
    finally:
        bar.close()
    if run is None:  # a rank other than 0: rank 0 reports
        return 0
    return _print_run_summary(run, args.data)


def _print_run_summary(run, data: str) -> int:
    seconds = run.train_seconds or 0.0
    if run.status == "finished" and run.val_auc is not None:
        print(f"Run {run.id} finished in {seconds / 60:.1f} min: best epoch {run.best_epoch}. "
              f"{_holdout_summary(run)} {run.message}\nBest checkpoint: {run.checkpoint}")
        return 0
    if run.status == "finished":
        print(f"Run {run.id} finished: {run.message}")
        return 0
    print(f"Run {run.id} {run.status}: {run.message}\nResume with:  diesight train "
          f"{data} --resume {run.id}", file=sys.stderr)
    return 130


def _num(value, spec: str = "") -> str:
    """A run figure, or "-" when it was never measured (None, NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def _holdout_summary(run) -> str:
    """The run's figures, with how far its escape count can be trusted."""
    from core.metrics import escape_rate_upper_bound

    at = f"at threshold {_num(run.threshold, '.4g')}"
    if run.config.threshold is None:
        at = f"at the holdout's operating point {_num(run.threshold, '.4g')}"
    if run.holdout_bad is None or run.holdout_good is None or run.escapes is None:
        # a run from before the holdout existed, or one whose figures could not be measured
        return (f"val AUC {_num(run.val_auc, '.4f')}, val loss {_num(run.val_loss, '.4f')}, "
                f"escapes {_num(run.escapes)} / false calls {_num(run.false_calls)} {at}.")
    bound = escape_rate_upper_bound(run.escapes, run.holdout_bad)
    return (f"Holdout ({run.holdout_good + run.holdout_bad} images that chose nothing): AUC "
            f"{_num(run.val_auc, '.4f')}, loss {_num(run.val_loss, '.4f')}; {run.escapes} of "
            f"{run.holdout_bad} bad parts escape (escape rate <= {100 * bound:.1f} % at 95 % "
            f"confidence), {_num(run.false_calls)} of {run.holdout_good} good parts are false "
            f"calls, {at}.")
