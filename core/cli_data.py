"""The ``diesight`` commands on folders and models: models, scan, repair and demo-data
(their arguments are in ``core.cli``)."""

from __future__ import annotations

from core.cli_common import _table, with_progress


def _cmd_models(args) -> int:
    from core.models import list_models

    rows = [(m.name, f"{m.parameter_count:,}", m.embedding_dim,
             f"{m.seed_parameter_count:,}" if m.seed_parameter_count else "-", m.description)
            for m in list_models()]
    print(_table(("model", "parameters", "embedding", "seed parameters", "description"), rows,
                 right=("parameters", "embedding", "seed parameters")))
    return 0


def _cmd_scan(args) -> int:
    from core.dataset import open_dataset, summary_lines

    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    dataset = with_progress(open_dataset, args.data, labels_csv=args.labels,
                            workers=args.workers)
    print("\n".join(summary_lines(dataset)))
    return 0


def _cmd_repair(args) -> int:
    from core.recovery import repair_workspace

    report = with_progress(repair_workspace, args.data, labels_csv=args.labels,
                           force=args.force)
    print("\n".join(report.lines()))
    return 0


def _cmd_demo_data(args) -> int:
    from core.demodata import generate_demo_data

    summary = with_progress(generate_demo_data, args.out, n=args.n,
                            bad_fraction=args.bad_fraction, seed=args.seed,
                            workers=args.workers,
                            **({"style": args.style} if args.style else {}))
    train, test = summary.counts["train"], summary.counts["test"]
    print(f"Wrote {summary.images} images (style {summary.style}) to {summary.out} in "
          f"{summary.seconds:.1f} s "
          f"({summary.images_per_second:.0f} images/s): train {train['good']} good + "
          f"{train['bad']} bad, test {test['good'] + test['bad']} unlabelled "
          f"({test['bad']} bad). Ground truth: {summary.ground_truth}")
    return 0
