"""The ``diesight`` command line: headless front door to the same core the GUI uses.

This module is the command line's one place of argument parsing: each subcommand is one
``_add_<name>`` here (its arguments); its work is one ``_cmd_<name>`` in a command module
(``core.cli_data``: models, scan, repair, demo-data; ``core.cli_results``: score, runs,
export, evaluate, flag, explain; ``core.cli_train``: train), which only calls core functions
and prints. The terminal progress, Ctrl-C handling and the exit-code policy they share are in
``core.cli_common``. ``app.entry`` sends every subcommand here and opens the GUI when there is
none. Importing this module stays light (no torch, numpy or Qt): the commands import core
lazily, so `diesight --help` or `diesight runs` do not wait for torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core import onnx_cli
from core.cli_common import run_command
from core.cli_data import _cmd_demo_data, _cmd_models, _cmd_repair, _cmd_scan
from core.cli_results import (
    _cmd_evaluate,
    _cmd_explain,
    _cmd_export,
    _cmd_flag,
    _cmd_label,
    _cmd_runs,
    _cmd_score,
)
from core.cli_train import _cmd_train
from core.errors import (  # noqa: F401  (the exit codes are the CLI's public API)
    EXIT_BUG,
    EXIT_CANCELLED,
    EXIT_OK,
    EXIT_USER_ERROR,
)


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
    return run_command(args)


# --- subcommands -------------------------------------------------------------------------

_PARSERS: list = []


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


def _add_data_arguments(p) -> None:
    p.add_argument("data", metavar="DATA", help="the dataset folder")
    p.add_argument("--labels", metavar="CSV", default=None,
                   help="labels for images the folders leave unlabelled (as given to scan)")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the models that can be trained",
                       description="The model registry: parameter counts, embedding sizes and "
                                   "the seed study's parameter counts beside them.")
    p.set_defaults(func=_cmd_models)


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


DEVICES_HELP = ("processes on this machine, one per GPU (torch.distributed; default 1); "
                "under torchrun the launcher decides")


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
    onnx_cli.add_score_onnx_arguments(p)
    p.set_defaults(func=_cmd_score)


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
                        "and a contact sheet of them (contact-sheet.png and .pdf) into DIR")
    p.add_argument("--scores", metavar="CSV",
                   help="every image: id, path, split, label, score, prediction")
    p.add_argument("--submission", metavar="CSV",
                   help="Kaggle submission: id,label with one row per test/unlabelled image "
                        "(label = defect probability)")
    p.add_argument("--threshold", type=float, default=None,
                   help="defect threshold (default: the one last chosen for the run in the "
                        "GUI, else the run's own, else 0.5)")
    p.set_defaults(func=_cmd_export)


_PARSERS.append(_add_export)
_PARSERS.append(onnx_cli.add_export_model_parser)


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


_PARSERS.append(_add_flag)

_LABEL_WORDS = ("bad", "good", "found")


def _add_label(sub) -> None:
    p = sub.add_parser("label", help="relabel images good or bad (or back to as found)",
                       description="Relabel images of DATA, saved at once in DATA's "
                                   "workspace (the same labels the GUI sets): 'found' "
                                   "drops the relabel, back to the label as found.")
    _add_data_arguments(p)
    p.add_argument("label", choices=_LABEL_WORDS, help="the new label")
    p.add_argument("images", metavar="ID", nargs="+",
                   help="an image's id (file name without extension) or its path in DATA")
    p.set_defaults(func=_cmd_label)


_PARSERS.append(_add_label)


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
                   help="heatmap method (default: golden for a run with a golden weight, "
                        "else the one measured best for the model)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the PNGs")
    p.add_argument("--opacity", type=float, default=0.6, help="overlay opacity (0.6)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per pass (default: 64 on CUDA, 8 on the CPU)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.set_defaults(func=_cmd_explain)


_PARSERS.append(_add_explain)


# --- train ---------------------------------------------------------------------------------


def _add_train(sub) -> None:
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
    p.add_argument("--labels", metavar="CSV", help="labels for images the folders leave "
                                                   "unlabelled")
    p.add_argument("--save-config", metavar="JSON", help="also write the config used here")
    p.add_argument("--devices", metavar="N", type=int, default=None, help=DEVICES_HELP)
    _add_config_flags(p)
    p.set_defaults(func=_cmd_train)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, made from the field's FieldSpec: its name, help,
    choices and bounds are defined once, in core.training.config. A flag not given stays
    None, so only the flags given override the starting config."""
    from core.training.config import field_specs

    group = parser.add_argument_group(
        "training settings", "override the starting config (defaults, --config, --replay, "
                             "--resume or --preset); the values allowed are checked as in "
                             "a saved config")
    for spec in field_specs():
        group.add_argument(spec.cli_flag, dest=spec.name, default=None,
                           help=_flag_help(spec).replace("%", "%%"), **_flag_kind(spec))


def _flag_kind(spec) -> dict:
    """argparse's action, type, choices and metavar for one TrainConfig field."""
    if spec.type is bool:  # --no-augment clears a default-on setting, --compile sets one
        return {"action": "store_const", "const": not spec.cli_flag.startswith("--no-")}
    if spec.choices is not None:
        return {"choices": spec.choices}
    return {"type": spec.type,
            "metavar": spec.cli_metavar or spec.cli_flag[2:].upper().replace("-", "_")}


def _flag_help(spec) -> str:
    """The field's help, the values allowed and the default."""
    if spec.type is bool:
        if spec.cli_flag.startswith("--no-"):
            return f"no {spec.label.lower()}: {spec.help}"
        return f"{spec.help} (off by default)"
    allowed = spec.range_text() if spec.type in (int, float) and spec.choices is None else ""
    if spec.default is None:
        default = f"default: {spec.none_label}" if spec.none_label else ""
    else:
        default = f"default: {spec.default}"
    extra = "; ".join(part for part in (allowed, default) if part)
    return f"{spec.help} [{extra}]" if extra else spec.help


def _preset_names() -> dict[str, str]:
    from core.training.presets import PRESETS

    return {key: p.title for key, p in PRESETS.items()}


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


_PARSERS.append(_add_demo_data)
