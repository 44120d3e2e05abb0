"""Training: configuration, samplers, augmentation, data feeding and the training loop.

``from core.training import TrainConfig, train``. The loop (and torch) is imported only
when ``train`` is first used, so reading a run's config stays light.
"""

from __future__ import annotations

from typing import Any

from core.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from core.training.trainer import train

        return train
    raise AttributeError(f"module 'core.training' has no attribute {name!r}")
