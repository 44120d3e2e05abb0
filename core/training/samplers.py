"""Which training images each epoch sees, and in what order.

Defective parts are rare (~10%), so the default is the seed project's class-balanced
bootstrap ('B'): every epoch draws ``per_class`` images of each class *with replacement*,
so the network sees as many bad parts as good ones. 'S' draws without replacement (each
image at most once per epoch, so a class smaller than ``per_class`` contributes all of
its images and no more). 'shuffle' is a plain pass over the training set, and 'weighted'
is the same pass with the loss weighting bad parts by the class ratio instead.

Every draw comes from a ``torch.Generator`` seeded from (seed, epoch), so an epoch's
order is the same whether the run went straight through or was resumed.

A distributed run draws the same one plan on every rank and cuts each global batch into
disjoint contiguous shares, one per rank (:func:`rank_share`): the images an epoch sees,
and their order, do not depend on the world size, and a run is reproducible for a given
one (resuming with another world size continues the same plan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.training.config import SAMPLERS


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A CPU generator for one epoch, independent of every other epoch's draws."""
    # A large odd multiplier keeps (seed, epoch, salt) triples from colliding.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 7 + salt)


@dataclass(frozen=True)
class ClassCounts:
    good: int
    bad: int


def class_counts(labels: np.ndarray) -> ClassCounts:
    labels = np.asarray(labels)
    return ClassCounts(good=int((labels == 0).sum()), bad=int((labels == 1).sum()))


def draws_per_class(sampler: str, labels: np.ndarray, per_class: int) -> dict[int, int]:
    """How many images of each class (0 good, 1 bad) one epoch of ``sampler`` draws."""
    counts = class_counts(labels)
    sizes = {0: counts.good, 1: counts.bad}
    if sampler == "B":
        return {c: per_class if n else 0 for c, n in sizes.items()}
    if sampler == "S":
        return {c: min(per_class, n) for c, n in sizes.items()}
    if sampler in ("shuffle", "weighted"):
        return sizes
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")


def epoch_length(sampler: str, labels: np.ndarray, per_class: int) -> int:
    """Images per epoch for ``sampler`` (so the schedule knows the step count up front)."""
    return sum(draws_per_class(sampler, labels, per_class).values())


def sampler_notes(sampler: str, labels: np.ndarray, per_class: int) -> list[str]:
    """Plain-language warnings about what the sampler will really do with these labels."""
    counts = class_counts(labels)
    notes = []
    for name, n in (("good", counts.good), ("bad", counts.bad)):
        if sampler == "S" and n < per_class:
            notes.append(f"Sampler S draws without replacement: the {name} class has only {n} "
                         f"training images, so each epoch uses {n} (not {per_class}) of them.")
        if sampler == "B" and n and n < per_class:
            notes.append(f"Sampler B draws with replacement: the {n} {name} training images "
                         f"are drawn {per_class} times per epoch (about "
                         f"{per_class / n:.1f} times each).")
    return notes


def epoch_indices(sampler: str, labels: np.ndarray, per_class: int,
                  generator: torch.Generator) -> np.ndarray:
    """Positions into ``labels`` (the training images) for one epoch, in training order.

    Args:
        sampler: 'B', 'S', 'shuffle' or 'weighted'.
        labels: (n,) 0/1 labels of the training images.
        per_class: draws per class for 'B' and 'S'.
        generator: source of randomness (see :func:`epoch_generator`).

    Returns:
        int64 positions; 'B' may repeat positions, the others never do.
    """
    labels = np.asarray(labels)
    if sampler in ("shuffle", "weighted"):
        return torch.randperm(len(labels), generator=generator).numpy()
    draws = draws_per_class(sampler, labels, per_class)
    chosen = []
    for cls in (0, 1):
        members = torch.from_numpy(np.flatnonzero(labels == cls))
        if sampler == "B":
            picks = torch.randint(len(members), (draws[cls],), generator=generator) \
                if len(members) else torch.empty(0, dtype=torch.long)
        else:
            picks = torch.randperm(len(members), generator=generator)[: draws[cls]]
        chosen.append(members[picks])
    order = torch.cat(chosen)
    # Interleave the classes so every batch is roughly balanced.
    return order[torch.randperm(len(order), generator=generator)].numpy()


def positive_weight(labels: np.ndarray) -> float:
    """BCE ``pos_weight`` that makes bad parts count as much as good ones in total."""
    counts = class_counts(labels)
    return counts.good / counts.bad if counts.bad else 1.0


def training_prior(sampler: str, labels: np.ndarray, per_class: int) -> float:
    """The bad share the loss sees per epoch: the class prior the network's logits learn.

    0.5 for the balanced samplers (B, and S while both classes fill ``per_class``) and for
    'weighted' (its loss weight makes the bad parts count as much as the good ones); the
    training set's own bad share for 'shuffle'.
    """
    if sampler == "weighted":
        return 0.5
    draws = draws_per_class(sampler, labels, per_class)
    return draws[1] / (draws[0] + draws[1])


def rank_share(batch: int, rank: int, world: int) -> slice:
    """The contiguous part of a global batch of ``batch`` images that rank ``rank`` of
    ``world`` trains on (the shares are disjoint, cover the batch and differ by at most one
    image)."""
    base, extra = divmod(batch, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def trimmed_order(order: np.ndarray, batch_size: int, world: int = 1) -> np.ndarray:
    """``order`` without a last batch too small to share: one image (BatchNorm cannot train
    on it), or fewer images than ranks (a rank would have none)."""
    remainder = len(order) % batch_size
    if 0 < remainder < max(2, world) and len(order) > remainder:
        return order[:-remainder]
    return order
