"""Checkpoint files: written atomically, read safely, with clear errors.

A checkpoint is a dict saved with ``torch.save``::

    {'model': state_dict, 'optimizer': ..., 'scheduler': ..., 'scaler': ... or None,
     'epoch': last finished epoch, 'config': TrainConfig.to_dict(), 'best_auc': float,
     'rng': {...}, 'history': [EpochRecord dicts], 'diesight': 1, ...}

Files are written to a temporary file and renamed into place (a crash never leaves half a
checkpoint) and read with ``torch.load(weights_only=True)``, which refuses arbitrary
pickled code, so opening a checkpoint from someone else's folder is safe.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_write

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file + rename).

    The format marker ``'diesight'`` is added when missing.

    Raises:
        OSError: the file cannot be written (a full disk: ENOSPC), naming ``path``; no
            temporary file stays behind.
    """
    path = Path(path)
    checkpoint = {"diesight": FORMAT_VERSION, **checkpoint}
    # Serialised in memory first: torch writing to the file itself turns a full disk into
    # "RuntimeError: [enforce fail at inline_container.cc]"; a plain write gives the OSError
    # (ENOSPC, naming the file) that every command reports as "disk full".
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_write(path, "wb") as fh:
        fh.write(buffer.getbuffer())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a DieSight checkpoint onto the CPU.

    Every way a file can be wrong gives one line naming the file (never torch's advice to
    load with ``weights_only=False``, which would run whatever code a pickle carries).

    Raises:
        CheckpointError: when the file is missing, truncated/corrupt, contains anything
            but tensors and plain data, or is not a DieSight checkpoint.
    """
    path = Path(path)
    data = safe_torch_load(path, "Checkpoint")
    if not isinstance(data, dict) or "diesight" not in data or "model" not in data:
        raise CheckpointError(f"{path} is a PyTorch file but not a DieSight checkpoint.")
    version = data["diesight"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"Checkpoint {path} is damaged or forged: its format marker is "
                              f"{_short(version)}, not a DieSight format number.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} was written by a newer DieSight "
                              f"(format {version}); please upgrade.")
    problem = _structure_problem(data)
    if problem:
        raise CheckpointError(f"Checkpoint {path} is damaged or forged: {problem}.")
    return data


# The entries DieSight writes, with the types its readers rely on (when present).
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "config": (dict,), "optimizer": (dict,), "scheduler": (dict,),
    "scaler": (dict, type(None)), "rng": (dict,), "history": (list,),
    "best_auc": (int, float), "best_loss": (int, float), "best_epoch": (int, type(None)),
    "stale_epochs": (int,),
}


def _structure_problem(data: dict[str, Any]) -> str | None:
    """Why the checkpoint's entries are not what DieSight writes (None when they are)."""
    model = data["model"]
    if not isinstance(model, dict) or not model:
        return f"its 'model' entry is {_short(model)}, not a set of weights"
    for key, value in model.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            return f"its 'model' entry holds {_short(key)}: {_short(value)}, not a tensor"
    for key, types in _ENTRY_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            return f"its '{key}' entry is {_short(data[key])}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def safe_torch_load(path: Path, what: str = "File") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with one-line errors.

    Torch's own warnings (a pickle-protocol UserWarning) are not passed on, and its advice
    to retry with ``weights_only=False`` never reaches the user.

    Raises:
        CheckpointError: missing, empty, not a PyTorch file, corrupt, or refused because it
            holds Python objects other than tensors and plain data.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{what} {path} is a folder, not a file.") from None
    except OSError as exc:
        raise CheckpointError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"{what} {path} cannot be read: it is empty (0 bytes).")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        raise CheckpointError(f"{what} {path} cannot be read: not a PyTorch file (corrupt, or "
                              "another kind of file).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        text = str(exc)
        if "weights_only" in text or "Weights only" in text:  # the safe unpickler refused
            if "EOF" in text or "truncated" in text.lower():
                raise CheckpointError(f"{what} {path} cannot be read (truncated).") from None
            raise CheckpointError(
                f"{what} {path} cannot be read: a pickle DieSight does not load (only tensors "
                "and plain data saved by torch.save are accepted; unpickling anything else "
                "could run code)."
            ) from None
        detail = _first_line(exc)
        detail = f": {detail}" if len(detail) <= 120 else ""
        raise CheckpointError(f"{what} {path} cannot be read (corrupt or truncated){detail}"
                              ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_state_into(model: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)`` with a clear error when the weights do not fit."""
    if not isinstance(state, dict):
        raise CheckpointError(f"Checkpoint {source} holds {_short(state)} where the weights "
                              "should be.")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"Checkpoint {source} does not fit this model "
                              f"({_fit_problem(model, state, exc)}).") from None


def _fit_problem(model: torch.nn.Module, state: dict[str, Any], exc: Exception) -> str:
    """What differs between the model's weights and ``state``, in a few words."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} is {tuple(getattr(state[k], 'shape', ()))} here but "
              f"{tuple(expected[k].shape)} in the model"
              for k in expected if k in state
              and getattr(state[k], "shape", None) != expected[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unknown weight(s), e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} of another shape, e.g. {shapes[0]}")
    return "; ".join(parts) or _first_line(exc)
