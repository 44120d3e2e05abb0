"""The training configuration: one dataclass that fully describes a training run.

It is saved with every run (``runs.config_json``) so a run can be replayed exactly
(``diesight train DATA --config run.json`` or ``--replay RUN``) and is printed when
training starts.
"""

from __future__ import annotations

import functools
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# The native image geometry of the parts: 267 rows x 275 columns.
NATIVE_ROWS = 267
NATIVE_COLS = 275

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
SAMPLERS = ("B", "S", "shuffle", "weighted")
DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

SAMPLER_HELP = {
    "B": "class-balanced bootstrap: per_class draws per class per epoch, with replacement",
    "S": "class-balanced subsample: per_class per class per epoch, without replacement "
         "(capped at the class size)",
    "shuffle": "every training image once per epoch, shuffled",
    "weighted": "every training image once per epoch, loss weighted by class frequency",
}


# Bounds of the numeric options (TrainConfig.validate).
MIN_IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 4 * NATIVE_ROWS
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096
MAX_PER_CLASS = 1_000_000
MAX_THREADS = 1024
MAX_SEED = 2**63 - 1


def width_for_rows(rows: int) -> int:
    """Columns that keep the parts' 267:275 aspect ratio at ``rows`` rows."""
    return int(round(rows * NATIVE_COLS / NATIVE_ROWS))


@dataclass(frozen=True)
class FieldSpec:
    """What the command line, the app's form and validation know about one config field.

    Attributes:
        name: the TrainConfig field.
        type: int, float, str or bool (for an optional field, the type when it is set).
        default: the field's default.
        help: one sentence for ``--help`` and the form's tooltip.
        label: a short name for the form.
        choices: the allowed values of a str field, or None when any value goes.
        minimum, maximum: bounds of a numeric field (None: unbounded on that side).
        cli_flag: the ``diesight train`` option that sets it (``--no-augment`` clears a bool).
        unit: what the number counts ("rows", "images", ...), or "".
        optional: None is allowed (it means ``none_label``).
        none_label: what None means, for the form ("all cores", "same as seed", ...).
        exclusive_minimum, exclusive_maximum: the bound itself is not allowed.
        step: a sensible increment for a spin box, or None.
        choice_help: one line per choice, where the choices need explaining.
        cli_metavar: the value's placeholder in ``--help`` (None: argparse's default).
    """

    name: str
    type: type
    default: Any
    help: str
    label: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    cli_flag: str = ""
    unit: str = ""
    optional: bool = False
    none_label: str = ""
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    step: float | None = None
    choice_help: Mapping[str, str] | None = None
    cli_metavar: str | None = None

    def check(self, value: Any) -> None:
        """Raise ValueError with a one-line message naming the field when ``value`` is not
        allowed (TrainConfig.validate runs this for every field)."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            _one_of(self.name, value, self.choices)
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int) or not self._within(value):
                raise ValueError(f"{self.name} must be {self.range_text()}, got {value!r}")
        elif self.type is float:
            if not (_is_number(value) and self._within(value)):
                raise ValueError(f"{self.name} must be {self.range_text()}, got {value!r}")
        elif self.type is bool and not isinstance(value, bool):
            raise ValueError(f"{self.name} must be true or false, got {value!r}")
        elif self.type is str and not isinstance(value, str):
            raise ValueError(f"{self.name} must be text, got {value!r}")

    def _within(self, value: float) -> bool:
        low, high = self.minimum, self.maximum
        return ((low is None or (value > low if self.exclusive_minimum else value >= low))
                and (high is None or (value < high if self.exclusive_maximum else value <= high)))

    def range_text(self) -> str:
        """The allowed values in words: "an integer from 1 to 10,000", "from 0 to 1", ..."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        low, high = self.minimum, self.maximum
        if self.type is int:
            return ("an integer" + (f" from {low:,}" if low is not None else "")
                    + (f" to {high:,}" if high is not None else ""))
        if self.type is not float:
            return ""
        if low is not None and high is not None and not (self.exclusive_minimum
                                                         or self.exclusive_maximum):
            return f"from {low:g} to {high:g}"
        if low == 0 and self.exclusive_minimum and not self.exclusive_maximum:
            parts = ["positive and finite"]
        elif low is not None:
            parts = [f"{'more than' if self.exclusive_minimum else 'at least'} {low:g}"]
        else:
            parts = ["finite"]
        if high is not None:
            parts.append(f"{'less than' if self.exclusive_maximum else 'at most'} {high:g}")
        return " and ".join(parts)


def _meta(*, help: str, label: str, choices: tuple[str, ...] | None = None,
          minimum: float | None = None, maximum: float | None = None, cli_flag: str = "",
          unit: str = "", none_label: str = "", exclusive_minimum: bool = False,
          exclusive_maximum: bool = False, step: float | None = None,
          choice_help: Mapping[str, str] | None = None,
          cli_metavar: str | None = None) -> dict[str, Any]:
    """A TrainConfig field's metadata (the keyword names are FieldSpec's attributes)."""
    return dict(help=help, label=label, choices=choices, minimum=minimum, maximum=maximum,
                cli_flag=cli_flag, unit=unit, none_label=none_label,
                exclusive_minimum=exclusive_minimum, exclusive_maximum=exclusive_maximum,
                step=step, choice_help=choice_help, cli_metavar=cli_metavar)


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able; see ``to_dict``/``from_dict``).

    Each field's help, GUI label, choices and bounds are its ``metadata`` (read them with
    :func:`field_specs`): the command line's train flags, the app's training form and
    :meth:`validate` all come from there. The split of the held-out images: ``val_fraction``
    of each class is held out, then divided again into a selection part (chooses the epoch)
    and a holdout part (the reported figures and the operating point).
    """

    model: str = field(default="designed_resnet", metadata=_meta(
        label="Model", help="model name from `diesight models` (designed_resnet, stratified, "
                            "resnet18, resnet50)"))
    epochs: int = field(default=20, metadata=_meta(
        label="Epochs", minimum=1, maximum=MAX_EPOCHS, unit="epochs",
        help="maximum number of epochs (early stopping may end sooner)"))
    batch_size: int = field(default=32, metadata=_meta(
        label="Batch size", minimum=1, maximum=MAX_BATCH_SIZE, step=8, unit="images",
        help="images per optimizer step (an out-of-memory back-off splits it into "
             "micro-batches but keeps this effective batch)"))
    lr: float = field(default=1e-3, metadata=_meta(
        label="Learning rate", minimum=0.0, exclusive_minimum=True,
        help="peak learning rate"))
    optimizer: str = field(default="adamw", metadata=_meta(
        label="Optimizer", choices=OPTIMIZERS,
        help="adamw, or sgd (momentum 0.9, Nesterov)"))
    weight_decay: float = field(default=1e-4, metadata=_meta(
        label="Weight decay", minimum=0.0, maximum=1.0,
        help="decoupled (AdamW) or L2 (SGD) weight decay"))
    schedule: str = field(default="cosine", metadata=_meta(
        label="LR schedule", choices=SCHEDULES,
        help="cosine (per step, after a short warm-up) or constant"))
    sampler: str = field(default="B", metadata=_meta(
        label="Sampler", choices=SAMPLERS, choice_help=SAMPLER_HELP,
        help="B: balanced bootstrap; S: balanced without replacement; shuffle; "
             "weighted: shuffle + class-weighted loss"))
    per_class: int = field(default=5000, metadata=_meta(
        label="Per class", minimum=1, maximum=MAX_PER_CLASS, step=100, unit="images",
        help="images drawn per class per epoch (samplers B and S)"))
    augment: bool = field(default=True, metadata=_meta(
        label="Augmentation", cli_flag="--no-augment",
        help="random brightness, contrast, gamma, noise and small shifts on training "
             "batches"))
    val_fraction: float = field(default=0.2, metadata=_meta(
        label="Validation share", minimum=0.0, exclusive_minimum=True, maximum=1.0,
        exclusive_maximum=True, step=0.05,
        help="share of each class held out for validation (stratified)"))
    seed: int = field(default=0, metadata=_meta(
        label="Seed", minimum=0, maximum=MAX_SEED,
        help="seeds weight initialisation, sampling and augmentation (and the split, "
             "unless a split seed is set)"))
    split_seed: int | None = field(default=None, metadata=_meta(
        label="Split seed", minimum=0, maximum=MAX_SEED, none_label="same as seed",
        help="seeds only which images are held out (selection and holdout), so other "
             "seeds can be compared on the same images; with --replay, draws a new split "
             "instead of reusing the run's saved one"))
    device: str = field(default="auto", metadata=_meta(
        label="Device", choices=DEVICES, help="auto (CUDA when available), cuda or cpu"))
    precision: str = field(default="auto", metadata=_meta(
        label="Precision", choices=PRECISIONS,
        help="auto: bf16 (or fp16) mixed precision on a GPU, fp32 on the CPU"))
    image_size: int = field(default=NATIVE_ROWS, metadata=_meta(
        label="Image size", minimum=MIN_IMAGE_SIZE, maximum=MAX_IMAGE_SIZE, step=8,
        unit="rows",
        help="rows of the network input; the width keeps the parts' 267:275 aspect ratio "
             "(smaller trains much faster)"))
    early_stopping_patience: int = field(default=5, metadata=_meta(
        label="Early stopping", minimum=0, maximum=MAX_EPOCHS, unit="stale epochs",
        cli_flag="--patience",
        help="epochs without a better validation AUC before stopping (0: never stop early)"))
    threshold: float | None = field(default=None, metadata=_meta(
        label="Threshold", minimum=0.0, maximum=1.0, step=0.05, none_label="operating point",
        help="score at or above which a part is called defective; unset, the run's "
             "operating point: the highest threshold with no escapes among its holdout "
             "images (per-epoch figures then use 0.5)"))
    golden_weight: float = field(default=0.0, metadata=_meta(
        label="Golden weight", minimum=0.0, maximum=1.0, step=0.05,
        help="share of the golden-reference score in the defect score (0: the network "
             "alone): each part compared with the median of its nearest good training "
             "parts, which catches marks the network saw too few examples of; scoring "
             "takes about 0.04 s more per image on one core"))
    num_threads: int | None = field(default=None, metadata=_meta(
        label="CPU threads", minimum=1, maximum=MAX_THREADS, none_label="all cores",
        cli_flag="--threads", help="CPU threads for torch"))
    weights: str | None = field(default=None, metadata=_meta(
        label="Weights", none_label="none (random initialisation)", cli_metavar="FILE",
        help="local file with pretrained weights for the model"))
    compile: bool = field(default=False, metadata=_meta(
        label="Compile", cli_flag="--compile",
        help="train through torch.compile (CUDA graphs in one process; falls back to eager "
             "execution where compiling fails)"))
    sync_batchnorm: bool = field(default=False, metadata=_meta(
        label="Sync BatchNorm", cli_flag="--sync-batchnorm",
        help="with --devices on GPUs: BatchNorm statistics over the global batch "
             "(SyncBatchNorm) instead of each GPU's share"))

    def __post_init__(self) -> None:
        self.validate()

    @property
    def input_shape(self) -> tuple[int, int]:
        """(rows, columns) of the network input."""
        return self.image_size, width_for_rows(self.image_size)

    @property
    def effective_split_seed(self) -> int:
        """The seed that picks the split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def validate(self) -> None:
        """Raise ValueError with a clear message for any out-of-range setting (the bounds and
        choices of :func:`field_specs`)."""
        for spec in field_specs():
            spec.check(getattr(self, spec.name))

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict; missing keys take defaults, unknown keys are an error.

        Raises:
            ValueError: on unknown keys or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"A training config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training config key(s): {', '.join(unknown)}. "
                             f"Known keys: {', '.join(sorted(known))}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Training config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a config saved as JSON (e.g. by ``diesight runs --config``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"Cannot read training config {path}: {exc.strerror}") from None
        return cls.from_json(text)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)


@functools.cache
def _specs() -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(TrainConfig)
    return tuple(_spec(f, hints[f.name]) for f in fields(TrainConfig))


def field_specs() -> list[FieldSpec]:
    """Every TrainConfig field with its help, label, choices and bounds, in field order."""
    return list(_specs())


def field_spec(name: str) -> FieldSpec:
    """The :class:`FieldSpec` of one field.

    Raises:
        KeyError: no such field.
    """
    for spec in _specs():
        if spec.name == name:
            return spec
    raise KeyError(name)


def _spec(f: Any, hint: Any) -> FieldSpec:
    """A field's FieldSpec from its type hint and metadata (a field added without metadata
    still gets a flag named after it)."""
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    meta = dict(f.metadata)
    meta.setdefault("label", f.name.replace("_", " ").capitalize())
    meta.setdefault("help", "")
    meta["cli_flag"] = meta.get("cli_flag") or "--" + f.name.replace("_", "-")
    return FieldSpec(name=f.name, type=base, default=f.default, optional=optional, **meta)


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def prepared_bytes(images: int, image_size: int) -> int:
    """Bytes of the uint8 tensor that holds ``images`` images at ``image_size`` rows."""
    return int(images) * image_size * width_for_rows(image_size)


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


# Share of the free memory the prepared images may take (the model, the optimizer and the
# batches need the rest).
MEMORY_SHARE = 0.6


def check_prepared_memory(images: int, image_size: int, available: int | None = None) -> None:
    """Refuse an image size whose prepared uint8 tensor would not fit in memory.

    Raises:
        ValueError: one line with the size needed, the memory free and the largest
            --image-size that fits.
    """
    available = available_memory() if available is None else available
    if available is None or images <= 0:
        return
    needed = prepared_bytes(images, image_size)
    budget = available * MEMORY_SHARE
    if needed <= budget:
        return
    fitting = [rows for rows in range(MIN_IMAGE_SIZE, image_size)
               if prepared_bytes(images, rows) <= budget]
    advice = (f"use --image-size {fitting[-1]} or less" if fitting
              else "free some memory or train on fewer images")
    raise ValueError(f"image_size {image_size}: {images:,} images need "
                     f"{needed / 2**30:.1f} GiB as uint8 tensors but only "
                     f"{available / 2**30:.1f} GiB of memory is free; {advice}.")
