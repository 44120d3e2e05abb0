"""Named training presets: the one definition the app's Training tab and ``--preset`` share.

A preset is a complete :class:`TrainConfig`, so what the app does can be reproduced and
benchmarked from a shell (``diesight train DATA --preset quick``) and a benchmark of a preset
measures exactly what a user gets. Flags given after ``--preset`` override its fields.

How each preset was chosen, and what it measures on every demo style, is in the README's
"Measured results" (``tests/benchmarks/bench_recipes.py`` prints the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.training.config import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A named, documented training configuration.

    Attributes:
        key: the name used on the command line (``--preset KEY``).
        title: the name shown in the app.
        note: one or two sentences for the user: what it is for and how long it takes.
        config: the settings.
    """

    key: str
    title: str
    note: str
    config: TrainConfig


QUICK = Preset(
    key="quick", title="Quick (CPU)",
    note="A compact model on reduced images, with each part also compared to good parts "
         "that look like it (golden weight 0.7): about 2.5 minutes on 2 CPU cores for the "
         "3,000-image demo set; scoring adds about 0.05 s per image.",
    config=TrainConfig(model="designed_resnet", image_size=80, sampler="B", per_class=1000,
                       epochs=12, batch_size=32, lr=3e-3, device="auto", precision="auto",
                       early_stopping_patience=0, golden_weight=0.7))

FULL = Preset(
    key="full", title="Full (GPU)",
    note="The seed study's settings (stratified model, 5000B, full 267-row images, "
         "20 epochs, bf16). Meant for a CUDA GPU: about a minute on an H200.",
    config=TrainConfig(model="stratified", image_size=267, sampler="B", per_class=5000,
                       epochs=20, batch_size=64, lr=1e-3, device="auto", precision="bf16"))

PRESETS: dict[str, Preset] = {p.key: p for p in (QUICK, FULL)}


def preset(key: str) -> Preset:
    """The preset named ``key`` ('quick', 'full').

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"Unknown preset {key!r}; presets: {', '.join(PRESETS)}") from None


def matching_preset(config: TrainConfig) -> Preset | None:
    """The preset whose settings equal ``config`` exactly, if any."""
    current = config.to_dict()
    return next((p for p in PRESETS.values() if p.config.to_dict() == current), None)
