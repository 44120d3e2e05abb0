"""A run's trained model: its registered architecture with its best checkpoint loaded.

Above both ``core.models`` (the architectures) and ``core.checkpoint`` (the files), so neither
needs the other.
"""

from __future__ import annotations

from typing import Any

import torch

from core.checkpoint import CheckpointError, load_checkpoint, load_state_into
from core.models import create_model


def load_model_from_run(run) -> tuple[torch.nn.Module, Any]:
    """Build a run's model from the registry and load its best checkpoint.

    Args:
        run: a ``core.runs.RunRecord`` with a checkpoint.

    Returns:
        (model in eval mode on the CPU, the run's TrainConfig).

    Raises:
        CheckpointError: when the run has no checkpoint or it cannot be loaded.
    """
    if run.checkpoint is None:
        raise CheckpointError(f"Run {run.id} has no checkpoint yet (status: {run.status}).")
    checkpoint = load_checkpoint(run.checkpoint)
    config = run.config
    model = create_model(config.model)
    load_state_into(model, checkpoint["model"], str(run.checkpoint))
    model.eval()
    return model, config
