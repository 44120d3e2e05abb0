"""The model registry itself: model families register a factory by name here, and
``create_model`` / ``list_models`` build and describe them (``core.models`` re-exports these
and imports every family, so the registry is complete once the package is imported)."""


from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from core.models.base import DefectModel, count_parameters

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]

ModelFactory = Callable[[], DefectModel]
FactoryT = TypeVar("FactoryT", bound=ModelFactory)


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI / CLI shows about a registered model.

    Attributes:
        name: registry name, passed to :func:`create_model`.
        description: one line for a model picker.
        parameter_count: trainable parameters of the model as built here.
        embedding_dim: size D of ``embed(x)``'s output.
        seed_parameter_count: the figure in the seed study's table, or None if it gave none.
    """

    name: str
    description: str
    parameter_count: int
    embedding_dim: int
    seed_parameter_count: int | None


@dataclass(frozen=True)
class _Entry:
    factory: ModelFactory
    description: str
    seed_parameter_count: int | None


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, *, description: str, seed_parameter_count: int | None = None
                   ) -> Callable[[FactoryT], FactoryT]:
    """Class/function decorator adding a model factory (no-argument callable) to the registry.

    Raises:
        ValueError: ``name`` is already registered.
    """
    def decorator(factory: FactoryT) -> FactoryT:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, description, seed_parameter_count)
        return factory
    return decorator


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [model_info(name) for name in sorted(_REGISTRY)]


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of one model.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    entry = _entry(name)
    parameter_count, embedding_dim = _measure(name)
    return ModelInfo(name, entry.description, parameter_count, embedding_dim,
                     entry.seed_parameter_count)


def create_model(name: str, *, weights: str | Path | None = None) -> DefectModel:
    """Build a registered model on the CPU, optionally loading a local weights file.

    Args:
        name: a registered model name (see :func:`list_models`).
        weights: a ``state_dict`` file saved from this model; for ``resnet18`` / ``resnet50`` a
            torchvision ImageNet ``state_dict`` (1000-class ``fc``, which is ignored) works too.
            Nothing is ever downloaded.

    Returns:
        The model, in training mode.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        WeightsError: (a ``ValueError``) the weights file is missing, unreadable or does not fit.
    """
    model = _entry(name).factory()
    if weights is not None:
        model.load_weights(weights)
    return model


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; valid names are: {valid}") from None


@functools.cache
def _measure(name: str) -> tuple[int, int]:
    # Built on the meta device: shapes only, no memory or initialisation cost (ResNet-50 is
    # ~100 MB and ~0.5 s to build for real), so listing models stays instant.
    with torch.device("meta"):
        model = _REGISTRY[name].factory()
    return count_parameters(model), model.embedding_dim
