"""The Training tab's worker jobs: training, scoring, and finding the models and the GPU.

Each is a plain function with core's ``progress`` / ``cancel`` keywords, for
:class:`app.workers.Task`. They import torch (through ``core.training``, ``core.scoring``
and ``core.models``) only when they run, on the worker thread: importing torch takes
seconds, and the window should not wait for it before it appears.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.runs import RunRecord
from core.training.config import TrainConfig


@dataclass(frozen=True)
class Hardware:
    """What the settings form offers: the registered models and the CUDA GPU, if any.

    Attributes:
        models: ``core.models.list_models()``.
        cuda_name: the GPU's name (``torch.cuda.get_device_name``), None without CUDA.
    """

    models: list
    cuda_name: str | None


def discover_hardware(*, progress=None, cancel=None) -> Hardware:
    """The model registry and the CUDA GPU (imports torch: seconds on a cold start)."""
    import torch

    from core.models import list_models

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Hardware(list_models(), name)


def train_job(dataset, config: TrainConfig, *, progress=None, cancel=None) -> RunRecord:
    """``core.training.train`` (returns the record, 'cancelled' when it was stopped)."""
    from core.training import train

    return train(dataset, config, progress=progress, cancel=cancel)


def score_job(dataset, run: RunRecord, *, progress=None, cancel=None):
    """``core.scoring.score_dataset`` on the device the run was set to train on."""
    from core.scoring import score_dataset

    return score_dataset(dataset, run, device=run.config.device, progress=progress,
                         cancel=cancel)
