"""The ``diesight`` command line: headless front door to the same core the GUI uses.

Each subcommand is one ``_add_<name>`` (its arguments) and one ``_cmd_<name>`` (its work,
which only calls core functions and prints). ``app.entry`` sends every subcommand here and
opens the GUI when there is none.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

from core.progress import Cancelled, Progress


class TerminalProgress:
    """Progress on stderr, fed by core's progress callback.

    On a terminal, a one-line bar redrawn in place. Redirected to a file or a pipe (a batch
    job's log), plain lines instead: a stage's first and last report and at most one line
    every ``log_interval`` seconds between, so the log stays readable. Notices (say, an
    out-of-memory back-off) are always printed on a line of their own.
    """

    def __init__(self, stream=None, width: int = 30, log_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.on_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_interval = log_interval
        self._stage = None
        self._last_line_at = 0.0

    def __call__(self, p: Progress) -> None:
        if p.stage == "notice":
            self.close()
            self._write_line(p.message)
        elif self.on_terminal:
            self._redraw(p)
        else:
            self._log(p)

    def _redraw(self, p: Progress) -> None:
        if p.stage != self._stage and self._stage is not None:
            self.stream.write("\n")
        self._stage = p.stage
        self.stream.write(("\r" + self._describe(p))[:160].ljust(60))
        self.stream.flush()

    def _log(self, p: Progress) -> None:
        now = time.monotonic()
        finished = bool(p.total) and p.done >= p.total
        if p.stage != self._stage or finished or now - self._last_line_at >= self.log_interval:
            self._stage, self._last_line_at = p.stage, now
            self._write_line(self._describe(p))

    def _describe(self, p: Progress) -> str:
        if not p.total:
            return f"{p.stage:>8} {p.message}"
        filled = int(self.width * min(1.0, p.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{p.stage:>8} [{bar}] {p.done}/{p.total} {p.message}".rstrip()

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._stage is not None and self.on_terminal:
            self.stream.write("\n")
            self.stream.flush()
        self._stage = None


class _Silent:
    """A stream that drops what is written (the progress of ranks other than 0)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class CtrlC:
    """Turns the first Ctrl-C into a cooperative cancel; a second one kills as usual."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        sys.stderr.write("\nStopping after the current step (Ctrl-C again to abort)...\n")

    def __call__(self) -> bool:
        return self.event.is_set()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diesight",
        description="DieSight visual inspection. Without a command, opens the GUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for --devices N: relaunched
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except Cancelled:
        print("Cancelled.", file=sys.stderr)
        return EXIT_CANCELLED


# --- subcommands -------------------------------------------------------------------------

_PARSERS: list = []


# --- results: models, score, runs, export, flag ----------------------------------------
# These commands import core lazily: torch takes seconds to import, and `diesight --help`
# or `diesight runs` should not wait for it.

RUN_HELP = (
    "which run: an id, 'latest' (the newest run of DATA with a checkpoint; the default), or "
    "OTHER_DATA@ID / OTHER_DATA@latest for a run trained on another dataset folder (it is "
    "imported into DATA's workspace first, e.g. to score a new lot)")

RUN_NAMING_EPILOG = """\
Naming a run:
  --run 3                    run 3 of DATA
  --run latest               the newest run of DATA (the default)
  --run /data/lot1@2         run 2 trained on the folder /data/lot1
  --run /data/lot1@latest    the newest run of /data/lot1
A run from another folder is imported into DATA's workspace (status 'imported') and keeps
using its checkpoint in /data/lot1's workspace; importing it again reuses the same entry.
"""


# Exit codes, the same for every command (tests/faults/test_fault_exit_codes.py):
EXIT_OK = 0
EXIT_BUG = 1          # an unexpected error: Python's own exit code for a traceback
EXIT_USER_ERROR = 2   # what was asked cannot be done: a bad option value, folder, file, CSV,
#                       checkpoint or run, a damaged, full or read-only workspace, a run that
#                       another process is training; one line on stderr says why
EXIT_CANCELLED = 130  # Ctrl-C (a run stopped this way can be resumed)


class BusyError(Exception):
    """Another DieSight process holds what this command needs."""


def _user_errors(command):
    """Print a clear one-line message for the errors a user can cause, not a traceback,
    and exit with EXIT_USER_ERROR."""
    import functools

    @functools.wraps(command)
    def wrapper(args) -> int:
        try:
            return command(args)
        except Exception as exc:
            if not isinstance(exc, _user_error_types()):
                raise
            print(f"diesight {args.command}: {_user_message(exc, args)}", file=sys.stderr)
            for skipped in getattr(exc, "skipped", None) or []:  # DatasetError's files
                print(f"  {skipped.relpath}: {skipped.reason}", file=sys.stderr)
            return EXIT_USER_ERROR
    return wrapper


def _distributable(command):
    """``--devices N``: core.training.distributed runs the command in N processes."""
    import functools

    @functools.wraps(command)
    def wrapper(args) -> int:
        from core.training.distributed import run_command

        return run_command(command, args)
    return wrapper


def _is_main_process() -> bool:
    """False on the ranks other than 0 of a distributed run (they print nothing)."""
    import os

    return int(os.environ.get("RANK", 0)) == 0


DEVICES_HELP = ("processes on this machine, one per GPU (torch.distributed; default 1); "
                "under torchrun the launcher decides")


def _user_error_types() -> tuple[type[Exception], ...]:
    # Imported only once something failed: core.checkpoint brings torch, which
    # `diesight runs` would otherwise not need.
    import sqlite3

    from core.checkpoint import CheckpointError
    from core.dataset import DatasetError
    from core.recovery import WorkspaceError

    return (ValueError, LookupError, OSError, DatasetError, CheckpointError, WorkspaceError,
            BusyError, sqlite3.DatabaseError)


def _user_message(exc: Exception, args) -> str:
    """The one line shown for a user error: core.errors' policy, shared with the app."""
    from core.errors import user_message

    return (user_message(exc, getattr(args, "data", None))
            or " ".join(str(exc).split()) or type(exc).__name__)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]],
           right: Sequence[str] = ()) -> str:
    """A plain-text table; the columns named in ``right`` (numbers) are right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if h in right else c.ljust(w)
                       for c, w, h in zip(row, widths, headers, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _open_dataset_cli(args, progress, cancel):
    from core.dataset import open_dataset

    return open_dataset(args.data, labels_csv=args.labels, progress=progress, cancel=cancel)


def _open_dataset_with_bar(args):
    """Open DATA with a progress bar; Ctrl-C stops the opening cleanly."""
    bar = TerminalProgress()
    with CtrlC() as cancel:
        try:
            return _open_dataset_cli(args, bar, cancel)
        finally:
            bar.close()


def _add_data_arguments(p) -> None:
    p.add_argument("data", metavar="DATA", help="the dataset folder")
    p.add_argument("--labels", metavar="CSV", default=None,
                   help="labels for images the folders leave unlabelled (as given to scan)")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models that can be trained",
                       description="The model registry: parameter counts, embedding sizes and "
                                   "the seed study's parameter counts beside them.")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from core.models import list_models

    rows = [(m.name, f"{m.parameter_count:,}", m.embedding_dim,
             f"{m.seed_parameter_count:,}" if m.seed_parameter_count else "-", m.description)
            for m in list_models()]
    print(_table(("model", "parameters", "embedding", "seed parameters", "description"), rows,
                 right=("parameters", "embedding", "seed parameters")))
    return 0


_PARSERS.append(_add_models)


LOT_EPILOG = """\
Scoring a new lot:
  diesight score DATA --run 3 --lot /data/lot8
      adds /data/lot8 to DATA as lot 'lot8' and scores only its images: they join DATA's
      ranked list, exports and activation space as unlabelled images of split 'lot lot8'
      (DATA's other scores stay as they were). Later opens of DATA include the lot.
  diesight score /data/lot8 --run DATA@3
      opens /data/lot8 as a dataset of its own (its own workspace, ranked list and plots)
      and scores it with DATA's run 3.
"""


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score", help="score every image of a dataset (or a new lot) with a trained run",
        description="Score every image of DATA (train, validation, test, unlabelled) with a\n"
                    "run's best checkpoint: a defect probability and an embedding per image,\n"
                    "stored in DATA's workspace for ranking, plots and export. With --lot,\n"
                    "add a new folder to DATA as a lot and score just its images.",
        epilog=RUN_NAMING_EPILOG + "\n" + LOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--run", default="latest", help=RUN_HELP)
    p.add_argument("--lot", metavar="FOLDER", default=None,
                   help="add FOLDER to DATA as a lot (unlabelled production images) and score "
                        "only its images, merged into the run's scores")
    p.add_argument("--lot-name", metavar="NAME", default=None,
                   help="with --lot: the lot's name (default: the folder's name)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default: chosen from the free GPU "
                        "memory on CUDA, 64 on the CPU)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where to run the network (default: auto, CUDA when available)")
    p.add_argument("--devices", metavar="N", type=int, default=None, help=DEVICES_HELP)
    p.add_argument("--top", type=int, default=10, help="how many top scores to list (10)")
    p.set_defaults(func=_cmd_score)


@_user_errors
@_distributable
def _cmd_score(args) -> int:
    from core.runs import resolve_run
    from core.scoring import score_dataset
    from core.training.distributed import main_first

    if args.lot_name is not None and args.lot is None:
        raise ValueError("--lot-name needs --lot FOLDER")
    main = _is_main_process()
    if args.lot is not None and not main:
        raise ValueError("--lot scores in one process; leave out --devices")
    bar = TerminalProgress() if main else None
    new_lot = None
    with CtrlC() as cancel:
        try:
            with main_first():  # a distributed run's rank 0 creates the workspace
                dataset = _open_dataset_cli(args, bar, cancel)
            # Rank 0 resolves the run and sends its weights to the other ranks.
            run = resolve_run(dataset.workspace, args.run) if main else None
            if args.lot is not None:
                new_lot = _score_lot_cli(args, dataset, run, bar, cancel)
                dataset, result = new_lot.dataset, new_lot.result
            else:
                result = score_dataset(dataset, run, batch_size=args.batch_size,
                                       device=args.device, progress=bar, cancel=cancel)
        finally:
            if bar is not None:
                bar.close()
    if result is None:  # a rank other than 0: rank 0 reports
        return 0
    if new_lot is not None:
        print(f"Added lot {new_lot.lot.name!r} to {dataset.root}: {len(result.image_ids):,} "
              f"images from {new_lot.lot.folder} (split {new_lot.lot.split!r}, unlabelled); "
              "the other images' scores are unchanged.")
    print(_score_summary(dataset, run, result, args.top))
    return 0


def _score_lot_cli(args, dataset, run, progress, cancel):
    """``score --lot``: add the lot to DATA and score its images (core.lots.NewLot)."""
    from core.lots import score_new_lot

    return score_new_lot(dataset, run, args.lot, args.lot_name, batch_size=args.batch_size,
                         device=args.device, progress=progress, cancel=cancel)


def _score_summary(dataset, run, result, top: int) -> str:
    """Count, score distribution and the top-scored files of a scoring pass."""
    import numpy as np

    from core.export import run_threshold

    scores = result.scores
    source = f", imported from {run.source}" if run.source else ""
    threshold = run_threshold(run)
    called = int(np.count_nonzero(scores >= threshold))
    q = np.quantile(scores, [0, 0.25, 0.5, 0.75, 1])
    lines = [
        f"Scored {len(scores):,} images with run {run.id} ({run.model}{source}) on "
        f"{result.device} in {result.seconds:.1f} s ({result.images_per_s:.0f} images/s).",
        f"Scores: min {q[0]:.4f}  25% {q[1]:.4f}  median {q[2]:.4f}  75% {q[3]:.4f}  "
        f"max {q[4]:.4f}  mean {scores.mean():.4f}",
    ]
    counts, edges = np.histogram(scores, bins=10, range=(0.0, 1.0))
    widest = max(int(counts.max()), 1)
    for count, low, high in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "#" * int(round(40 * count / widest))
        lines.append(f"  {low:.1f}-{high:.1f} {count:>7,} {bar}".rstrip())
    lines.append(f"At threshold {threshold:g}: {called:,} images called defective "
                 f"({100 * called / len(scores):.1f}%).")
    # The result may cover only some images (a lot): map its ids to dataset positions.
    positions = dataset.positions(result.image_ids)
    order = np.lexsort((result.image_ids, -scores))[:top]
    rows = [(rank, f"{scores[i]:.6f}",
             {1: "bad", 0: "good"}.get(int(dataset.labels[positions[i]]), "-"),
             dataset.splits[positions[i]], dataset.relpaths[positions[i]])
            for rank, i in enumerate(order.tolist(), 1)]
    lines += ["", f"Top {len(rows)} highest scores:",
              _table(("rank", "score", "label", "split", "file"), rows, right=("rank", "score"))]
    return "\n".join(lines)


_PARSERS.append(_add_score)


def _add_runs(sub) -> None:
    p = sub.add_parser(
        "runs", help="list the training runs of a dataset",
        description="The runs of DATA as the seed study's results table: model, parameters, "
                    "sampler (draws per class + B bootstrap / S without replacement), "
                    "validation AUC, escapes/false calls at the run's threshold, time, "
                    "device, status and date.")
    p.add_argument("data", metavar="DATA", help="the dataset folder")
    p.set_defaults(func=_cmd_runs)


@_user_errors
def _cmd_runs(args) -> int:
    from pathlib import Path

    from core.runs import list_runs
    from core.workspace import Workspace, workspace_dir_for

    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise ValueError(f"{args.data} is not a folder")
    if not workspace_dir_for(root).is_dir():
        print(f"No runs yet for {args.data}: train one with `diesight train {args.data}`.")
        return 0
    workspace = Workspace.for_dataset(root)
    runs = list_runs(workspace)
    if not runs:
        print(f"No runs yet for {args.data}: train one with `diesight train {args.data}`.")
        return 0
    print(_table(("id", "model", "parameters", "sampler", "val AUC", "escapes/false calls",
                  "time", "device", "status", "scored", "date"),
                 [_run_row(workspace, run) for run in runs],
                 right=("id", "parameters", "val AUC", "escapes/false calls", "time")))
    return 0


def _run_row(workspace, run) -> tuple:
    from core.scores import has_scores

    config = run.config
    sampler = (f"{config.per_class}{config.sampler}" if config.sampler in ("B", "S")
               else config.sampler)
    errors = ("-" if run.escapes is None or run.false_calls is None
              else f"{run.escapes}/{run.false_calls}")
    return (run.id, run.model, f"{run.parameters:,}" if run.parameters else "-", sampler,
            "-" if run.val_auc is None else f"{run.val_auc:.5f}", errors,
            _duration(run.train_seconds), run.device or "-", run.status,
            "yes" if has_scores(workspace, run.id) else "no",
            (run.created_at or "")[:16].replace("T", " "))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


_PARSERS.append(_add_runs)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's flagged defects, scores or a Kaggle submission as CSV",
        description="Export a run's results of DATA as CSV files, each written atomically\n"
                    "(an interrupted export leaves the previous file as it was). Scores are\n"
                    "written at full precision.",
        epilog=RUN_NAMING_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--run", default="latest", help=RUN_HELP)
    p.add_argument("--flagged", metavar="CSV",
                   help="flagged-defect list: id, path, score, label, run, model, threshold, "
                        "flagged_at (the user's flags plus images scoring >= the threshold)")
    p.add_argument("--only-user-flags", action="store_true",
                   help="with --flagged: list only the images the user flagged")
    p.add_argument("--evidence", metavar="DIR",
                   help="with --flagged: also write each flagged image's heatmap overlay "
                        "and a contact sheet of them (contact-sheet.png) into DIR")
    p.add_argument("--scores", metavar="CSV",
                   help="every image: id, path, split, label, score, prediction")
    p.add_argument("--submission", metavar="CSV",
                   help="Kaggle submission: id,label with one row per test/unlabelled image "
                        "(label = defect probability)")
    p.add_argument("--threshold", type=float, default=None,
                   help="defect threshold (default: the run's own, else 0.5)")
    p.set_defaults(func=_cmd_export)


@_user_errors
def _cmd_export(args) -> int:
    from core import export
    from core.runs import resolve_run
    from core.scores import NoScoresError, has_scores, no_scores_message

    if not (args.flagged or args.scores or args.submission):
        raise ValueError("nothing to export: give --flagged, --scores and/or --submission")
    if args.evidence and not args.flagged:
        raise ValueError("--evidence goes with --flagged (the overlays of the flagged list)")
    dataset = _open_dataset_with_bar(args)
    run = resolve_run(dataset.workspace, args.run)
    if not has_scores(dataset.workspace, run.id):
        raise NoScoresError(no_scores_message(run.id, args.data))
    if args.flagged:
        count = export.export_flagged(dataset, run, args.flagged, args.threshold,
                                      include_predicted=not args.only_user_flags)
        print(f"Wrote {count:,} flagged images to {args.flagged}")
        if args.evidence:
            _export_evidence(args, dataset, run)
    if args.scores:
        count = export.export_scores(dataset, run, args.scores, args.threshold)
        print(f"Wrote {count:,} scores to {args.scores}")
    if args.submission:
        count = export.export_submission(dataset, run, args.submission)
        print(f"Wrote {count:,} submission rows to {args.submission}")
    return 0


def _export_evidence(args, dataset, run) -> None:
    from core.evidence_export import SHEET_NAME, export_flagged_evidence

    bar = TerminalProgress()
    with CtrlC() as cancel:
        try:
            count = export_flagged_evidence(dataset, run, args.evidence, args.threshold,
                                            include_predicted=not args.only_user_flags,
                                            progress=bar, cancel=cancel)
        finally:
            bar.close()
    print(f"Wrote {count:,} heatmap overlays and {SHEET_NAME} to {args.evidence}")


_PARSERS.append(_add_export)


# --- evaluate --------------------------------------------------------------------------------

EVALUATE_EPILOG = """\
The truth CSV needs the columns id,label (label 0/1 or good/bad); defect_type, severity and
split are used when present (diesight demo-data writes such a ground_truth.csv). An id is
an image's file name without extension, as in `diesight export --submission`, so the
unlabelled test/all_tests images are evaluated too. Truth rows that name no image, or an
image without a score, are counted and reported, not fatal.
"""


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="judge a run's scores against a truth CSV (AUC, escapes, recall)",
        description="Evaluate a run's stored scores of DATA against the true labels of a CSV:\n"
                    "ROC AUC with a bootstrap 95 % interval, escapes at 1/2/5 % false calls\n"
                    "with Wilson 95 % intervals, the confusion at the threshold, and recall\n"
                    "per defect kind and severity band.",
        epilog=EVALUATE_EPILOG + "\n" + RUN_NAMING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--run", default="latest", help=RUN_HELP)
    p.add_argument("--truth", metavar="CSV", required=True,
                   help="the answer key: id,label[,defect_type,severity,split]")
    p.add_argument("--split", metavar="S", default=None,
                   help="only images of split S (train, val, test, unlabelled, 'lot NAME'), "
                        "by DATA's folders or the CSV's split column")
    p.add_argument("--threshold", type=float, default=None,
                   help="threshold for the confusion and recall (default: the run's, else 0.5)")
    p.add_argument("--bootstrap", metavar="N", type=int, default=2000,
                   help="bootstrap rounds for the AUC interval (default 2000; 0: none)")
    p.add_argument("--json", metavar="OUT", default=None,
                   help="also write every number (and the ROC curve) as JSON to OUT")
    p.set_defaults(func=_cmd_evaluate)


@_user_errors
def _cmd_evaluate(args) -> int:
    import json

    from core.atomic import atomic_write
    from core.evaluation import evaluate_run, read_truth_csv
    from core.runs import resolve_run
    from core.scores import NoScoresError, has_scores, no_scores_message

    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be 0 or more")
    truth = read_truth_csv(args.truth)  # a bad CSV fails before the folder is opened
    dataset = _open_dataset_with_bar(args)
    run = resolve_run(dataset.workspace, args.run)
    if not has_scores(dataset.workspace, run.id):
        raise NoScoresError(no_scores_message(run.id, args.data))
    result = evaluate_run(dataset, run, truth, args.split, args.threshold,
                          n_boot=args.bootstrap)
    for warning in result.warnings:
        print(f"diesight evaluate: warning: {warning}", file=sys.stderr)
    print(result.format_text())
    if args.json:
        with atomic_write(args.json) as fh:
            json.dump(result.to_dict(), fh, indent=1)
            fh.write("\n")
        print(f"Wrote {args.json}")
    return 0


_PARSERS.append(_add_evaluate)


def _add_flag(sub) -> None:
    p = sub.add_parser("flag", help="flag (or --unflag) images by id or path, for scripts",
                       description="Flag images of DATA as defects, saved at once in DATA's "
                                   "workspace (the same flags the GUI sets).")
    _add_data_arguments(p)
    p.add_argument("images", metavar="ID", nargs="+",
                   help="an image's id (file name without extension) or its path in DATA")
    p.add_argument("--unflag", action="store_true", help="remove the flags instead")
    p.set_defaults(func=_cmd_flag)


@_user_errors
def _cmd_flag(args) -> int:
    from core.annotations import set_flag

    dataset = _open_dataset_with_bar(args)
    image_ids = _image_ids_for(dataset, args.images)
    set_flag(dataset.workspace, image_ids, not args.unflag)
    print(f"{'Unflagged' if args.unflag else 'Flagged'} {len(set(image_ids))} image(s).")
    return 0


def _image_ids_for(dataset, names: Sequence[str]) -> list[int]:
    """Image ids for ids (file stems) or relative paths; unknown or ambiguous names fail."""
    by_path = {p: i for p, i in zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True)}
    by_stem: dict[str, list[int]] = {}
    for stem, image_id in zip(dataset.ids, dataset.image_ids.tolist(), strict=True):
        by_stem.setdefault(stem, []).append(image_id)
    found, unknown = [], []
    for name in names:
        key = name.replace("\\", "/")
        if key in by_path:
            found.append(by_path[key])
        elif len(by_stem.get(name, [])) == 1:
            found.append(by_stem[name][0])
        elif name in by_stem:
            raise ValueError(f"id {name!r} names {len(by_stem[name])} files; give its path")
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"no such image in {dataset.root}: {shown}")
    return found


_PARSERS.append(_add_flag)


# --- explain -------------------------------------------------------------------------------

def _add_explain(sub) -> None:
    from core.explain_methods import METHODS

    p = sub.add_parser(
        "explain", help="write defect heatmaps (where the evidence is) as PNGs",
        description="For each chosen image of DATA, write where the run's evidence for\n"
                    "'bad' lies: ID.png (the map at the image's own size, 16-bit grey,\n"
                    "65535 = the image's strongest evidence) and ID-overlay.png (the map\n"
                    "over the image). Maps are cached in the run's workspace folder.",
        epilog="Methods:\n" + "\n".join(f"  {k:<22}{v}" for k, v in METHODS.items())
               + "\n\n" + RUN_NAMING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_arguments(p)
    p.add_argument("--run", default="latest", help=RUN_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--split", metavar="S", help="every image of split S")
    which.add_argument("--ids", metavar="FILE",
                       help="the images named in FILE, one id (file stem) or path per line")
    which.add_argument("--top", metavar="N", type=int,
                       help="the N highest-scored images of the run (default: 20)")
    p.add_argument("--method", choices=tuple(METHODS), default=None,
                   help="attribution method (default: the one measured best for the model)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the PNGs")
    p.add_argument("--opacity", type=float, default=0.6, help="overlay opacity (0.6)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per pass (default: 64 on CUDA, 8 on the CPU)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.set_defaults(func=_cmd_explain)


@_user_errors
def _cmd_explain(args) -> int:
    from core.explain import explain
    from core.explain_files import write_heatmap_pngs
    from core.runs import resolve_run

    bar = TerminalProgress()
    with CtrlC() as cancel:
        try:
            dataset = _open_dataset_cli(args, bar, cancel)
            run = resolve_run(dataset.workspace, args.run)
            image_ids = _explain_selection(args, dataset, run)
            maps = explain(dataset, run, image_ids, args.method, batch_size=args.batch_size,
                           device=args.device, progress=bar, cancel=cancel)
        finally:
            bar.close()
    written = write_heatmap_pngs(dataset, maps, args.out, args.opacity)
    print(f"Wrote {written:,} heatmaps ({maps.method}, run {run.id}) and their overlays to "
          f"{args.out} ({maps.computed:,} computed, {len(image_ids) - maps.computed:,} "
          f"from the cache, {maps.seconds:.1f} s).")
    return 0


def _explain_selection(args, dataset, run):
    """The image ids chosen by --split, --ids or --top (default: the top 20)."""
    import numpy as np

    if args.split is not None:
        chosen = dataset.image_ids[dataset.splits == args.split]
        if len(chosen) == 0:
            known = ", ".join(sorted(set(dataset.splits.tolist())))
            raise ValueError(f"no images of split {args.split!r} (splits: {known})")
        return chosen
    if args.ids is not None:
        from core.explain_files import read_id_list

        return np.asarray(_image_ids_for(dataset, read_id_list(args.ids)), dtype=np.int64)
    return _top_scored(dataset, run, 20 if args.top is None else args.top, args.data)


def _top_scored(dataset, run, n: int, data: str):
    import numpy as np

    from core.scores import NoScoresError, aligned_logits, has_scores, no_scores_message

    if n < 1:
        raise ValueError("--top must be at least 1")
    if not has_scores(dataset.workspace, run.id):
        raise NoScoresError(no_scores_message(run.id, data))
    logits = aligned_logits(dataset, run.id)
    scored = np.flatnonzero(~np.isnan(logits))
    order = scored[np.argsort(-logits[scored], kind="stable")][:n]
    return dataset.image_ids[order]


_PARSERS.append(_add_explain)


# --- train ---------------------------------------------------------------------------------

# CLI flag -> TrainConfig field, for the flags that override the starting config.
_TRAIN_FLAGS = {
    "model": "model", "sampler": "sampler", "per_class": "per_class", "epochs": "epochs",
    "image_size": "image_size", "batch_size": "batch_size", "lr": "lr",
    "optimizer": "optimizer", "weight_decay": "weight_decay", "schedule": "schedule",
    "device": "device", "precision": "precision", "seed": "seed",
    "val_fraction": "val_fraction", "patience": "early_stopping_patience",
    "threshold": "threshold", "threads": "num_threads", "augment": "augment",
    "weights": "weights", "split_seed": "split_seed", "compile": "compile",
    "sync_batchnorm": "sync_batchnorm",
}


def _add_train(sub) -> None:
    from core.training.config import DEVICES, OPTIMIZERS, PRECISIONS, SAMPLERS, SCHEDULES

    p = sub.add_parser(
        "train", help="train a model on a folder's labelled images",
        description="Train a model on DATA's labelled images. Settings start from the "
                    "defaults, a saved config (--config) or an earlier run (--replay); the "
                    "flags given override them. Ctrl-C stops cleanly and keeps the last "
                    "finished epoch; --resume continues from there.")
    p.add_argument("data", metavar="DATA", help="the image folder")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--config", metavar="JSON", help="start from a saved TrainConfig file")
    start.add_argument("--replay", metavar="RUN",
                       help="start from a run's config: ID, latest, or OTHER_DATA@ID")
    start.add_argument("--resume", metavar="ID", type=int,
                       help="continue a cancelled or interrupted run from its last epoch")
    start.add_argument("--preset", choices=_preset_names(),
                       help="start from the app's preset: " + "; ".join(
                           f"{key} = {title}" for key, title in _preset_names().items()))
    p.add_argument("--model", help="designed_resnet, stratified, resnet18 or resnet50")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="B: balanced bootstrap (default); S: balanced without replacement; "
                        "shuffle; weighted: shuffle + class-weighted loss")
    p.add_argument("--per-class", type=int, help="draws per class per epoch (B, S)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-size", type=int, help="input rows (width keeps the 267:275 ratio)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int,
                   help="seed for the held-out images only (default: --seed); with --replay, "
                        "draw a new split instead of reusing the run's saved one")
    p.add_argument("--val-fraction", type=float, help="share of each class for validation")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--threshold", type=float, help="score that calls a part bad")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   default=None, help="train without augmentation")
    p.add_argument("--weights", metavar="FILE", help="local pretrained weights for the model")
    p.add_argument("--labels", metavar="CSV", help="labels for images the folders leave "
                                                   "unlabelled")
    p.add_argument("--save-config", metavar="JSON", help="also write the config used here")
    p.add_argument("--devices", metavar="N", type=int, default=None, help=DEVICES_HELP)
    p.add_argument("--compile", action="store_const", const=True, default=None,
                   help="train through torch.compile (CUDA graphs on one GPU)")
    p.add_argument("--sync-batchnorm", action="store_const", const=True, default=None,
                   help="with --devices on GPUs: BatchNorm statistics over the global batch")
    p.set_defaults(func=_cmd_train)


def _preset_names() -> dict[str, str]:
    from core.training.presets import PRESETS

    return {key: p.title for key, p in PRESETS.items()}


def _train_config(args, workspace):
    """The starting config (defaults / --config / --replay / --resume) plus the flags given."""
    from core.runs import get_run, resolve_run
    from core.training.config import TrainConfig
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
    overrides = {field: getattr(args, flag) for flag, field in _TRAIN_FLAGS.items()
                 if getattr(args, flag) is not None}
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


@_user_errors
@_distributable
def _cmd_train(args) -> int:
    import json

    from core.dataset import open_dataset
    from core.training import train
    from core.training.distributed import main_first
    from core.workspace import Workspace

    main = _is_main_process()
    bar = TerminalProgress(stream=None if main else _Silent())
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


_PARSERS.append(_add_train)


def _add_scan(sub) -> None:
    p = sub.add_parser("scan", help="open an image folder and report its layout, counts and "
                                    "skipped files (decodes new images into the cache)")
    p.add_argument("data", metavar="DATA", help="the image folder")
    p.add_argument("--labels", metavar="CSV", default=None,
                   help="CSV of file names (or paths, or ids) and labels for images the "
                        "folders leave unlabelled")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: all CPUs)")
    p.set_defaults(func=_cmd_scan)


@_user_errors
def _cmd_scan(args) -> int:
    from core.dataset import open_dataset, summary_lines

    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    bar = TerminalProgress()
    try:
        with CtrlC() as cancel:
            dataset = open_dataset(args.data, labels_csv=args.labels, progress=bar,
                                   cancel=cancel, workers=args.workers)
    finally:
        bar.close()
    print("\n".join(summary_lines(dataset)))
    return 0


_PARSERS.append(_add_scan)


def _add_repair(sub) -> None:
    p = sub.add_parser(
        "repair", help="rebuild a damaged workspace database, keeping flags and labels",
        description="Check DATA's workspace database; when it is damaged, move it aside as "
                    "diesight.sqlite.damaged-<time>, keep every table that can still be read, "
                    "rebuild the rest from the folder and restore flags and labels from the "
                    "annotations journal. A healthy database is left as it is (--force "
                    "rebuilds it anyway).")
    _add_data_arguments(p)
    p.add_argument("--force", action="store_true", help="rebuild even a healthy database")
    p.set_defaults(func=_cmd_repair)


@_user_errors
def _cmd_repair(args) -> int:
    from core.recovery import repair_workspace

    bar = TerminalProgress()
    try:
        with CtrlC() as cancel:
            report = repair_workspace(args.data, labels_csv=args.labels, force=args.force,
                                      progress=bar, cancel=cancel)
    finally:
        bar.close()
    print("\n".join(report.lines()))
    return EXIT_OK


_PARSERS.append(_add_repair)


# --- demo-data -------------------------------------------------------------------------------

class _StyleHelpFormatter(argparse.HelpFormatter):
    """Lists the demo styles only when help is shown: the registry imports the renderers
    (numpy, PIL, scipy: about 0.7 s), which no other command should wait for at start-up."""

    def _get_help_string(self, action) -> str:
        if action.dest != "style":
            return super()._get_help_string(action)
        from core.demostyles import DEFAULT_STYLE, STYLES

        return f"demo style (default {DEFAULT_STYLE}): " + "; ".join(
            f"{s.name}: {s.summary()}" for s in STYLES.values()).replace("%", "%%")


def _add_demo_data(sub) -> None:
    p = sub.add_parser(
        "demo-data", help="write a labelled synthetic image set in the Kaggle Nexperia layout",
        formatter_class=_StyleHelpFormatter,
        description="Write OUT/train/good_0, OUT/train/bad_1 and OUT/test/all_tests with "
                    "267x275 grayscale JPEGs of parts in carrier pockets (about BAD_FRACTION "
                    "of them with one of the style's defect types), plus OUT/ground_truth.csv "
                    "with every image's label, defect type, severity, split and defect box. "
                    "Each --style draws another fab (products, pocket, lighting, noise, defect "
                    "mix), to check that a recipe holds beyond the images it was tuned on. "
                    "The same style and seed always give the same files. Ctrl-C stops "
                    "cleanly.")
    p.add_argument("out", metavar="OUT", help="a new or empty folder")
    p.add_argument("--n", type=int, default=3000, help="number of images (default 3000)")
    p.add_argument("--bad-fraction", type=float, default=0.1,
                   help="share of defective images (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: one per CPU)")
    # No argparse choices: an unknown name gets the one-line error of generate_demo_data.
    p.add_argument("--style", default=None, metavar="NAME",
                   help="demo style (listed when help is shown)")
    p.set_defaults(func=_cmd_demo_data)


@_user_errors
def _cmd_demo_data(args) -> int:
    from core.demodata import generate_demo_data

    bar = TerminalProgress()
    try:
        with CtrlC() as cancel:
            summary = generate_demo_data(args.out, n=args.n, bad_fraction=args.bad_fraction,
                                         seed=args.seed, workers=args.workers, progress=bar,
                                         cancel=cancel,
                                         **({"style": args.style} if args.style else {}))
    finally:
        bar.close()
    train, test = summary.counts["train"], summary.counts["test"]
    print(f"Wrote {summary.images} images (style {summary.style}) to {summary.out} in "
          f"{summary.seconds:.1f} s "
          f"({summary.images_per_second:.0f} images/s): train {train['good']} good + "
          f"{train['bad']} bad, test {test['good'] + test['bad']} unlabelled "
          f"({test['bad']} bad). Ground truth: {summary.ground_truth}")
    return 0


_PARSERS.append(_add_demo_data)
