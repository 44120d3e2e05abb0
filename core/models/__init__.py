"""The model registry: the four CNNs of the seed study, by name, ready for training and scoring.

    from core.models import create_model, list_models
    [info.name for info in list_models()]  # designed_resnet, resnet18, resnet50, stratified
    model = create_model("stratified")     # fresh, Kaiming-initialised; weights=path to load
    logits, embeddings = model.forward_with_embedding(images)   # (B,), (B, 32)

Every model is a :class:`DefectModel`: input ``(B, 1, H, W)`` float (normalised grayscale, any
``H, W >= 64``), ``forward`` -> one logit per image, ``embed`` -> penultimate activations.
A model family registers itself in its own module with :func:`register_model` (from
``core.models.registry``); the families are imported here, so the registry is complete as soon
as the package is.
"""

from __future__ import annotations

from core.models import designed, resnets, stratified  # noqa: F401  (they register themselves)
from core.models.base import DefectModel, WeightsError
from core.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = ["DefectModel", "ModelInfo", "WeightsError", "create_model", "list_models",
           "model_info", "register_model"]
