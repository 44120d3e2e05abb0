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

import os
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
    """
    path = Path(path)
    checkpoint = {"diesight": FORMAT_VERSION, **checkpoint}
    with atomic_write(path, "wb") as fh:
        torch.save(checkpoint, fh)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a DieSight checkpoint onto the CPU.

    Raises:
        CheckpointError: when the file is missing, truncated/corrupt, contains anything
            but tensors and plain data, or is not a DieSight checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same

        raise CheckpointError(
            f"Checkpoint {path} cannot be read (corrupt, truncated or not a checkpoint): "
            f"{_first_line(exc)}") from None
    if not isinstance(data, dict) or "diesight" not in data or "model" not in data:
        raise CheckpointError(f"{path} is a PyTorch file but not a DieSight checkpoint.")
    if data["diesight"] > FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} was written by a newer DieSight "
                              f"(format {data['diesight']}); please upgrade.")
    return data


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_state_into(model: torch.nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)`` with a clear error when the weights do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {source} does not fit this model "
                              f"({_first_line(exc)}).") from None


def load_model_from_run(run) -> tuple[torch.nn.Module, Any]:
    """Build a run's model from the registry and load its best checkpoint.

    Args:
        run: a ``core.runs.RunRecord`` with a checkpoint.

    Returns:
        (model in eval mode on the CPU, the run's TrainConfig).

    Raises:
        CheckpointError: when the run has no checkpoint or it cannot be loaded.
    """
    from core.models import create_model

    if run.checkpoint is None:
        raise CheckpointError(f"Run {run.id} has no checkpoint yet (status: {run.status}).")
    checkpoint = load_checkpoint(run.checkpoint)
    config = run.config
    model = create_model(config.model)
    load_state_into(model, checkpoint["model"], str(run.checkpoint))
    model.eval()
    return model, config
