"""The contract every DieSight defect model follows, and loading weights into one.

A defect model reads a batch of normalised grayscale images ``(B, 1, H, W)`` and returns one
logit per image (``> 0`` leans "bad"). Training, scoring and the activation-space views all use
the same three calls:

* ``embed(x)``  -> ``(B, D)`` penultimate activations (the vectors shown by PCA / t-SNE),
* ``forward(x)`` -> ``(B,)`` logits, always ``head(embed(x))[:, 0]`` (see :meth:`classify`),
* ``forward_with_embedding(x)`` -> both from ONE pass, so scoring a lot does not run the
  network twice.

Weights files are plain ``state_dict`` files read with ``torch.load(weights_only=True)`` (no
pickled code is ever executed); every problem with one raises :class:`WeightsError` naming the
file and the reason, before any parameter of the model is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

MIN_IMAGE_SIDE = 64
"""Smallest image height/width accepted: the designed networks downsample by 16 before their
last spatial layer and need at least a few rows there (64 / 16 = 4)."""

# Prefixes that wrappers add to every key of a saved state_dict: nn.DataParallel /
# DistributedDataParallel ("module.") and torch.compile ("_orig_mod."). Stripping them lets a
# checkpoint saved from a wrapped model load into a bare one.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_MAX_KEYS_SHOWN = 5


class WeightsError(ValueError):
    """A weights file could not be loaded into a model (missing, not a state_dict, wrong model)."""


class DefectModel(nn.Module):
    """Base class of the registered models: one logit and one embedding per grayscale image.

    Subclasses set the class attribute :attr:`embedding_dim`, implement :meth:`embed` and
    provide ``head``: the final ``nn.Linear(embedding_dim, 1)``. This class provides
    ``forward``, ``forward_with_embedding``, input checks and :meth:`load_weights`.
    """

    embedding_dim: int = 0
    head: nn.Module

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate activations.

        Args:
            x: float images of shape ``(B, 1, H, W)`` with ``H, W >= 64``.

        Returns:
            Tensor of shape ``(B, embedding_dim)``.
        """
        raise NotImplementedError

    def classify(self, embedding: Tensor) -> Tensor:
        """The final layer: embeddings ``(B, D)`` -> logits ``(B,)``."""
        return self.head(embedding)[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """One logit per image, shape ``(B,)``."""
        return self.forward_with_embedding(x)[0]

    def forward_with_embedding(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B,)`` and embeddings ``(B, D)`` from a single pass through the network."""
        check_images(x)
        embedding = self.embed(x)
        return self.classify(embedding), embedding

    def load_weights(self, path: str | Path) -> None:
        """Load a ``state_dict`` file saved from this model (or one ``adapt_state_dict`` accepts).

        Args:
            path: a file written by ``torch.save(model.state_dict(), path)``; a dict holding the
                state_dict under ``"state_dict"`` and keys prefixed by ``module.`` or
                ``_orig_mod.`` are accepted too.

        Raises:
            WeightsError: the file is missing, unreadable, not a state_dict, or does not fit this
                model (missing / unexpected keys, wrong shapes). The model is left unchanged.
        """
        path = Path(path)
        state = read_state_dict(path)
        state, may_be_missing = self.adapt_state_dict(state)
        problems = state_dict_problems(self, state, may_be_missing)
        if problems:
            raise WeightsError(f"{path} does not fit model {type(self).__name__}: "
                               + "; ".join(problems))
        self.load_state_dict(state, strict=False)

    def adapt_state_dict(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], set[str]]:
        """Hook for foreign weights: returns the state to load and the keys allowed to be missing.

        The default accepts only this model's own state_dict.
        """
        return state, set()


def check_images(x: Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a float batch of shape ``(B, 1, H, W)``, H, W >= 64."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected grayscale images of shape (B, 1, H, W), got {tuple(x.shape)}")
    if min(x.shape[2], x.shape[3]) < MIN_IMAGE_SIDE:
        raise ValueError(f"images must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels, "
                         f"got {x.shape[2]}x{x.shape[3]}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images (normalised), got dtype {x.dtype}")


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a state_dict file safely (``weights_only=True``) and unwrap common wrappers.

    Raises:
        WeightsError: missing file, not a PyTorch file, or not a mapping of names to tensors.
    """
    from core.checkpoint import CheckpointError, safe_torch_load

    try:
        loaded = safe_torch_load(Path(path), "Weights file")
    except CheckpointError as exc:  # one line, never torch's weights_only=False advice
        raise WeightsError(str(exc)) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise WeightsError(f"{path} does not hold a state_dict (got {type(loaded).__name__})")
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()):
        raise WeightsError(f"{path} does not hold a state_dict (its values are not all tensors)")
    return {_strip_wrapper_prefixes(k): v for k, v in loaded.items()}


def _strip_wrapper_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def state_dict_problems(model: nn.Module, state: Mapping[str, Tensor],
                        may_be_missing: set[str]) -> list[str]:
    """Why ``state`` cannot be loaded into ``model`` (empty when it can)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - may_be_missing)
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                   for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", wrong_shape)):
        if items:
            shown = ", ".join(items[:_MAX_KEYS_SHOWN])
            hidden = len(items) - _MAX_KEYS_SHOWN
            more = f" (+{hidden} more)" if hidden > 0 else ""
            problems.append(f"{len(items)} {label}: {shown}{more}")
    return problems


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the figure the seed study's table reports)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
