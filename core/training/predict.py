"""The one forward pass that turns images into numbers someone reads: validation and scoring.

The trainer's per-epoch validation, its holdout calibration and ``core.scoring`` all call
:func:`predict`, so the scores that choose the best epoch and report the run's AUC are the
scores that are stored, ranked and exported. It always runs in fp32, even when training
used bf16 / fp16 autocast: reduced-precision logits would make validation disagree with the
fp32 scores by more than the gaps that decide a ranking.

Logits come back in float64 with the run's prior correction added
(``core.metrics.prior_logit_offset``), so they are logits at the real defect rate.
"""

from __future__ import annotations

import torch
from torch import nn

from core.device import channels_last
from core.training.data import normalise


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in the memory layout :func:`predict` feeds it.

    Channels-last on CUDA (faster convolutions on tensor cores), the default elsewhere.
    """
    layout = torch.channels_last if channels_last(device) else torch.contiguous_format
    return model.to(device, memory_format=layout)


def network_input(x: torch.Tensor) -> torch.Tensor:
    """Normalised float images in the layout :func:`place_model` expects."""
    if channels_last(x.device):
        return x.contiguous(memory_format=torch.channels_last)
    return x


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor,
            logit_offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and embeddings of uint8 images, in fp32 whatever precision trained the model.

    Args:
        model: a ``core.models.DefectModel`` in eval mode, placed by :func:`place_model`.
        images: (B, 1, H, W) uint8 images on the model's device, at the run's input size.
        logit_offset: added to every logit (the run's prior correction).

    Returns:
        (logits float64 (B,), embeddings float32 (B, D)), on the model's device.
    """
    # Explicitly off: a caller inside an autocast region must still get fp32 numbers.
    with torch.autocast(images.device.type, enabled=False):
        logits, embeddings = model.forward_with_embedding(network_input(normalise(images)))
    return logits.double() + logit_offset, embeddings.float()
