"""The training configuration: one dataclass that fully describes a training run.

It is saved with every run (``runs.config_json``) so a run can be replayed exactly
(``diesight train DATA --config run.json`` or ``--replay RUN``) and is printed when
training starts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
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


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able; see ``to_dict``/``from_dict``).

    Attributes:
        model: model name from ``core.models.list_models()``.
        epochs: maximum number of epochs (early stopping may end sooner).
        batch_size: images per optimizer step (the effective batch; an out-of-memory
            back-off splits it into micro-batches but keeps this).
        lr: peak learning rate.
        optimizer: 'adamw' or 'sgd' (momentum 0.9, Nesterov).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        schedule: 'cosine' (per step, after a short warm-up) or 'constant'.
        sampler: 'B', 'S', 'shuffle' or 'weighted' (see ``SAMPLER_HELP``).
        per_class: draws per class per epoch for samplers 'B' and 'S'.
        augment: photometric jitter, noise and small translations on training batches.
        val_fraction: share of each class held out from training (stratified); the held-out
            images are divided again into a selection part (chooses the epoch) and a
            holdout part (the reported figures and the operating point).
        seed: seeds weight init, sampling and augmentation (and the split, unless
            ``split_seed`` is given).
        split_seed: seeds only the train / selection / holdout split (None: ``seed``), so
            the initial weights can vary while the images held out stay the same.
        device: 'auto' (CUDA when available), 'cuda' or 'cpu'.
        precision: 'auto' (bf16/fp16 on CUDA, fp32 on CPU), 'fp32', 'bf16' or 'fp16'.
        image_size: rows of the network input; width follows the 267:275 aspect ratio.
        early_stopping_patience: epochs without a better validation AUC before stopping
            (0 disables early stopping).
        threshold: prior-corrected probability at or above which a part is called
            defective. None (the default): the run's operating point, the highest threshold
            with no escapes among its holdout images (``core.metrics``); per-epoch figures
            then use 0.5.
        num_threads: CPU threads for torch (None: all cores).
        weights: optional local file with pretrained weights for the model.
        compile: train through ``torch.compile`` (CUDA graphs in one process; falls back
            to eager execution where compiling fails).
        sync_batchnorm: in a multi-GPU run (``core.training.distributed``), BatchNorm
            statistics over the global batch (SyncBatchNorm) instead of each GPU's share.
    """

    model: str = "designed_resnet"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    sampler: str = "B"
    per_class: int = 5000
    augment: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    split_seed: int | None = None
    device: str = "auto"
    precision: str = "auto"
    image_size: int = NATIVE_ROWS
    early_stopping_patience: int = 5
    threshold: float | None = None
    num_threads: int | None = None
    weights: str | None = None
    compile: bool = False
    sync_batchnorm: bool = False

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
        """Raise ValueError with a clear message for any out-of-range setting."""
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        _between("epochs", self.epochs, 1, MAX_EPOCHS)
        _between("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _between("per_class", self.per_class, 1, MAX_PER_CLASS)
        # The models need >= 64 rows; above 4x the native rows nothing is gained.
        _between("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        _between("early_stopping_patience", self.early_stopping_patience, 0, MAX_EPOCHS)
        _between("seed", self.seed, 0, MAX_SEED)
        if self.num_threads is not None:
            _between("num_threads", self.num_threads, 1, MAX_THREADS)
        if self.split_seed is not None:
            _between("split_seed", self.split_seed, 0, MAX_SEED)
        if not (_is_number(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be positive and finite, got {self.lr!r}")
        if not (_is_number(self.weight_decay) and 0 <= self.weight_decay <= 1):
            raise ValueError(f"weight_decay must be between 0 and 1, got {self.weight_decay!r}")
        if not (_is_number(self.val_fraction) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be between 0 and 1, got {self.val_fraction!r}")
        for name in ("compile", "sync_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.threshold is not None and not (_is_number(self.threshold)
                                               and 0 <= self.threshold <= 1):
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}")

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


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _between(name: str, value: Any, minimum: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not \
            minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer from {minimum:,} to {maximum:,}, "
                         f"got {value!r}")


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
