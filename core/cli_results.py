"""The ``diesight`` commands on a run's results: score, runs, export, evaluate, flag and
explain (their arguments are in ``core.cli``).

These commands import core lazily: torch takes seconds to import, and `diesight --help`
or `diesight runs` should not wait for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.cli_common import (
    CtrlC,
    TerminalProgress,
    _open_dataset_cli,
    _open_dataset_with_bar,
    _table,
    distributable,
    is_main_process,
    with_progress,
)


def _cmd_score(args) -> int:
    from core import onnx_cli

    if onnx_cli.score_onnx_requested(args):  # the line-side path: never imports torch
        return onnx_cli.cmd_score_onnx(args)
    return _score_with_torch(args)


@distributable
def _score_with_torch(args) -> int:
    from core.runs import resolve_run
    from core.scoring import score_dataset
    from core.training.distributed import main_first

    if args.lot_name is not None and args.lot is None:
        raise ValueError("--lot-name needs --lot FOLDER")
    main = is_main_process()
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
    from core.dataset import unopened_changes

    differing = unopened_changes(root, workspace)
    if differing:
        print(f"Note: {differing:,} image file(s) of {args.data} were added, removed or "
              f"modified since it was last opened; `diesight scan {args.data}` checks them "
              "and brings 'scored' up to date.")
    return 0


def _run_row(workspace, run) -> tuple:
    from core.score_store import scored_summary

    config = run.config
    sampler = (f"{config.per_class}{config.sampler}" if config.sampler in ("B", "S")
               else config.sampler)
    errors = ("-" if run.escapes is None or run.false_calls is None
              else f"{run.escapes}/{run.false_calls}")
    return (run.id, run.model, f"{run.parameters:,}" if run.parameters else "-", sampler,
            "-" if run.val_auc is None else f"{run.val_auc:.5f}", errors,
            _duration(run.train_seconds), run.device or "-", run.status,
            scored_summary(workspace, run.id),
            (run.created_at or "")[:16].replace("T", " "))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _cmd_export(args) -> int:
    from core import export
    from core.runs import resolve_run
    from core.score_store import NoScoresError, has_scores, no_scores_message
    from core.session import saved_threshold

    if not (args.flagged or args.scores or args.submission):
        raise ValueError("nothing to export: give --flagged, --scores and/or --submission")
    if args.evidence and not args.flagged:
        raise ValueError("--evidence goes with --flagged (the overlays of the flagged list)")
    dataset = _open_dataset_with_bar(args)
    run = resolve_run(dataset.workspace, args.run)
    if not has_scores(dataset.workspace, run.id):
        raise NoScoresError(no_scores_message(run.id, args.data))
    if args.threshold is None:  # the threshold the user judged this run at, as the GUI
        args.threshold = saved_threshold(dataset.workspace, run)
    for warning in export.change_warnings(dataset, run, args.data, flagged=bool(args.flagged)):
        print(f"diesight export: warning: {warning}", file=sys.stderr)
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
    from core.evidence_export import SHEET_NAME, SHEET_PDF_NAME, export_flagged_evidence

    count = with_progress(export_flagged_evidence, dataset, run, args.evidence,
                          args.threshold, include_predicted=not args.only_user_flags)
    print(f"Wrote {count:,} heatmap overlays and {SHEET_NAME} ({SHEET_PDF_NAME} to print) "
          f"to {args.evidence}")


def _cmd_evaluate(args) -> int:
    import json

    from core.atomic import atomic_write
    from core.evaluation import evaluate_run, read_truth_csv
    from core.runs import resolve_run
    from core.score_store import NoScoresError, has_scores, no_scores_message

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


def _cmd_flag(args) -> int:
    from core.session import Session

    dataset = _open_dataset_with_bar(args)
    positions = dataset.positions(_image_ids_for(dataset, args.images))
    Session(dataset).set_flagged(positions, not args.unflag)  # the GUI's rules and writes
    print(f"{'Unflagged' if args.unflag else 'Flagged'} {len(set(positions.tolist()))} "
          "image(s).")
    return 0


_LABEL_VALUES = {"bad": 1, "good": 0, "found": None}  # 'found': back to the label as found


def _cmd_label(args) -> int:
    from core.session import Session

    dataset = _open_dataset_with_bar(args)
    positions = dataset.positions(_image_ids_for(dataset, args.images))
    Session(dataset).set_label(positions, _LABEL_VALUES[args.label])
    print(f"Labelled {len(set(positions.tolist()))} image(s) {args.label}.")
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

    from core.score_store import NoScoresError, aligned_logits, has_scores, no_scores_message

    if n < 1:
        raise ValueError("--top must be at least 1")
    if not has_scores(dataset.workspace, run.id):
        raise NoScoresError(no_scores_message(run.id, data))
    logits = aligned_logits(dataset, run.id)
    scored = np.flatnonzero(~np.isnan(logits))
    order = scored[np.argsort(-logits[scored], kind="stable")][:n]
    return dataset.image_ids[order]
