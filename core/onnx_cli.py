"""The ONNX commands of the ``diesight`` command line (registered by ``core.cli``).

* ``diesight export-model DATA --run ID --onnx OUT.onnx`` writes a run as an ONNX model
  (``core.onnx_export``; needs torch and onnx).
* ``diesight score FOLDER --onnx MODEL.onnx [--out CSV]`` scores a folder with that model
  (``core.onnx_scoring``). This path never imports torch, not even to report an error: the
  line PC it is meant for may not have it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USER_ERROR = 2  # the same as core.cli's (kept here so an error path imports nothing)

EXPORT_EPILOG = """\
The model takes uint8 grey images (batch, 1, rows, cols) at the run's image size and returns
the prior-corrected logit (what `diesight score` stores) and the embedding; its metadata
holds the image size, scaling, resize rule, threshold, run id and DieSight version.
Score a folder with it, without PyTorch:
  diesight score /lots/lot8 --onnx model.onnx --out lot8.csv
"""


def add_export_model_parser(sub) -> None:
    """Register ``export-model``."""
    p = sub.add_parser(
        "export-model", help="export a run as an ONNX model for scoring without PyTorch",
        description="Write DATA's run (its best checkpoint) as an ONNX model with a dynamic "
                    "batch, checked against PyTorch before it is written.",
        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="the dataset folder the run was trained on")
    p.add_argument("--run", default="latest",
                   help="which run: an id or 'latest' (the default)")
    p.add_argument("--onnx", metavar="OUT.onnx", required=True, help="the file to write")
    p.set_defaults(func=cmd_export_model)


def add_score_onnx_arguments(p) -> None:
    """Add ``--onnx`` and ``--out`` to the ``score`` command's parser."""
    p.add_argument("--onnx", metavar="MODEL.onnx", default=None,
                   help="score DATA (any image folder) with an exported model through "
                        "onnxruntime on the CPU, without PyTorch and without a workspace; "
                        "writes a ranked CSV")
    p.add_argument("--out", metavar="CSV", default=None,
                   help="with --onnx: the ranked CSV to write (default: "
                        "./<folder name>-scores.csv)")


def score_onnx_requested(args) -> bool:
    """True when ``score`` was given ``--onnx`` or ``--out`` (this module handles it)."""
    return args.onnx is not None or args.out is not None


def cmd_export_model(args) -> int:
    from core.cli_common import CtrlC, TerminalProgress
    from core.errors import user_message

    bar = TerminalProgress()
    try:
        with CtrlC() as cancel:
            try:
                path, run = _export(args, bar, cancel)
            finally:
                bar.close()
    except Exception as exc:
        message = user_message(exc, args.data)
        if message is None:
            raise
        print(f"diesight export-model: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"Wrote run {run.id} ({run.model}) of {args.data} to {path} "
          f"({path.stat().st_size / 1e6:.1f} MB). Score a folder with it: "
          f"diesight score FOLDER --onnx {path}")
    return 0


def _export(args, progress, cancel):
    from core.onnx_export import export_onnx
    from core.runs import resolve_run
    from core.workspace import Workspace, workspace_dir_for

    root = Path(args.data).expanduser()
    if not root.is_dir():
        raise ValueError(f"{args.data} is not a folder")
    if not workspace_dir_for(root).is_dir():
        raise ValueError(f"No runs yet for {args.data}: train one with "
                         f"`diesight train {args.data}`.")
    run = resolve_run(Workspace.for_dataset(root), args.run)
    return export_onnx(run, args.onnx, progress=progress, cancel=cancel), run


def cmd_score_onnx(args) -> int:
    """``score --onnx``: every failure a user can cause is one line on stderr, exit 2."""
    from core.onnx_scoring import OnnxModelError

    problem = _conflicting_options(args)
    if problem:
        print(f"diesight score: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        result = _score(args)
    except (OnnxModelError, ValueError, OSError) as exc:
        print(f"diesight score: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(_summary(args, result))
    return 0


def _conflicting_options(args) -> str | None:
    if args.onnx is None:
        return "--out needs --onnx MODEL.onnx"
    given = [flag for flag, value, default in (
        ("--run", args.run, "latest"), ("--lot", args.lot, None),
        ("--lot-name", args.lot_name, None), ("--labels", args.labels, None))
        if value != default]
    if given:
        return f"{', '.join(given)} cannot be used with --onnx (the model file is the run)"
    if args.device == "cuda":
        return "--onnx scores on the CPU (onnxruntime); leave out --device cuda"
    return None


def _score(args):
    from core.cli_common import CtrlC, TerminalProgress
    from core.onnx_scoring import DEFAULT_BATCH, score_folder

    out = Path(args.out) if args.out else Path(f"{Path(args.data).resolve().name}-scores.csv")
    bar = TerminalProgress()
    with CtrlC() as cancel:
        try:
            return score_folder(args.data, args.onnx, out,
                                batch_size=args.batch_size or DEFAULT_BATCH,
                                progress=bar, cancel=cancel)
        finally:
            bar.close()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _summary(args, result) -> str:
    from core.onnx_scoring import skipped_line

    n = len(result.relpaths)
    lines = [f"Scored {n:,} images of {args.data} with {args.onnx} (onnxruntime, CPU) in "
             f"{result.seconds:.1f} s ({result.images_per_s:,.0f} images/s); "
             f"{int(result.defective.sum()):,} called defective at threshold "
             f"{result.threshold:.4g}."]
    if result.skipped:
        lines.append(skipped_line(result.skipped))
    lines.append(f"Ranked scores written to {result.out_path}")
    top = min(args.top, n)
    if top > 0:
        lines.append(f"Top {top}:")
        lines.append(f"{'rank':>5}  {'logit':>9}  {'probability':>11}  path")
        for rank in range(top):
            lines.append(f"{rank + 1:>5}  {result.logits[rank]:>9.4f}  "
                         f"{result.probabilities[rank]:>11.6f}  {result.relpaths[rank]}")
    return "\n".join(lines)
