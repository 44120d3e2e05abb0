"""Tests of the epoch samplers: class counts, replacement, caps, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from core.training.samplers import (
    draws_per_class,
    epoch_generator,
    epoch_indices,
    epoch_length,
    positive_weight,
    sampler_notes,
)

# 90 good, 10 bad: the usual imbalance.
LABELS = np.array([0] * 90 + [1] * 10)


def draw(sampler: str, per_class: int, seed: int = 0, epoch: int = 1) -> np.ndarray:
    return epoch_indices(sampler, LABELS, per_class, epoch_generator(seed, epoch))


def test_bootstrap_draws_per_class_of_each_class_with_replacement():
    picks = draw("B", per_class=50)
    assert len(picks) == 100 == epoch_length("B", LABELS, 50)
    assert (LABELS[picks] == 0).sum() == 50 and (LABELS[picks] == 1).sum() == 50
    bad = picks[LABELS[picks] == 1]
    assert len(set(bad)) <= 10, "50 draws from 10 bad images must repeat"
    assert set(bad) <= set(range(90, 100))


def test_bootstrap_interleaves_the_classes():
    picks = draw("B", per_class=50)
    first_half_bad = (LABELS[picks[:50]] == 1).sum()
    assert 10 < first_half_bad < 40


def test_subsample_draws_without_replacement_and_caps_at_the_class_size():
    picks = draw("S", per_class=50)
    assert len(picks) == len(set(picks)) == 60 == epoch_length("S", LABELS, 50)
    assert (LABELS[picks] == 0).sum() == 50
    assert sorted(picks[LABELS[picks] == 1]) == list(range(90, 100))
    assert draws_per_class("S", LABELS, 50) == {0: 50, 1: 10}
    [note] = sampler_notes("S", LABELS, 50)
    assert "bad class has only 10" in note and "uses 10 (not 50)" in note


def test_subsample_below_both_class_sizes_is_balanced():
    picks = draw("S", per_class=5)
    assert len(set(picks)) == 10 and (LABELS[picks] == 1).sum() == 5
    assert sampler_notes("S", LABELS, 5) == []


@pytest.mark.parametrize("sampler", ["shuffle", "weighted"])
def test_shuffle_and_weighted_visit_every_image_once(sampler):
    picks = draw(sampler, per_class=5)
    assert sorted(picks) == list(range(100))
    assert not np.array_equal(picks, np.arange(100))
    assert epoch_length(sampler, LABELS, 5) == 100


def test_positive_weight_balances_the_classes():
    assert positive_weight(LABELS) == 9.0
    assert positive_weight(np.array([0, 0])) == 1.0


@pytest.mark.parametrize("sampler", ["B", "S", "shuffle"])
def test_draws_depend_only_on_seed_and_epoch(sampler):
    assert np.array_equal(draw(sampler, 30, seed=3, epoch=2), draw(sampler, 30, seed=3, epoch=2))
    assert not np.array_equal(draw(sampler, 30, seed=3, epoch=2),
                              draw(sampler, 30, seed=3, epoch=3))
    assert not np.array_equal(draw(sampler, 30, seed=3, epoch=2),
                              draw(sampler, 30, seed=4, epoch=2))


def test_bootstrap_note_explains_repeats():
    [note] = sampler_notes("B", LABELS, 50)
    assert "10 bad training images are drawn 50 times" in note


def test_unknown_sampler_is_rejected():
    with pytest.raises(ValueError, match="sampler must be one of"):
        draws_per_class("X", LABELS, 5)
