"""Tests of the inspection metrics against scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from core.metrics import (
    confusion_at,
    log_loss,
    roc_auc,
    roc_curve,
    threshold_for_max_escapes,
)


def random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(int)
    scores = rng.random(n) * 0.7 + labels * 0.3 * rng.random(n)
    if ties:
        scores = np.round(scores, 1)  # many equal scores
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_matches_sklearn(seed, ties):
    scores, labels = random_case(seed, ties=ties)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_curve_matches_sklearn(ties):
    scores, labels = random_case(11, ties=ties)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert np.isinf(thresholds[0]) and np.allclose(thresholds[1:], sk_thresholds[1:])


def test_auc_of_single_class_is_nan_and_bad_input_is_rejected():
    assert np.isnan(roc_auc([0.1, 0.2], [0, 0]))
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0.1], [0, 1])
    with pytest.raises(ValueError, match="labels must be 0"):
        roc_auc([0.1, 0.2], [0, 2])


def test_confusion_counts_escapes_and_false_calls():
    scores = np.array([0.1, 0.5, 0.7, 0.2, 0.6, 0.5])
    labels = np.array([1, 1, 1, 0, 0, 0])
    c = confusion_at(scores, labels, 0.5)
    # bad 0.1 escapes; good 0.6 and 0.5 are false calls (score >= threshold is rejected).
    assert (c.escapes, c.false_calls, c.tp, c.tn) == (1, 2, 2, 1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_escapes", [0, 1, 3, 10])
def test_threshold_for_max_escapes_is_the_highest_allowed(seed, max_escapes):
    scores, labels = random_case(seed, n=80, ties=seed % 2 == 1)
    t = threshold_for_max_escapes(scores, labels, max_escapes)
    assert confusion_at(scores, labels, t).escapes <= max_escapes
    # Any higher threshold (the next distinct score up) lets more bad parts through.
    higher = np.unique(scores[scores > t])
    if len(higher):
        assert confusion_at(scores, labels, higher[0]).escapes > max_escapes


def test_threshold_when_every_bad_part_may_escape_passes_everything():
    scores, labels = np.array([0.2, 0.9, 0.4]), np.array([1, 0, 0])
    t = threshold_for_max_escapes(scores, labels, 1)
    assert t > 0.9 and confusion_at(scores, labels, t).false_calls == 0
    with pytest.raises(ValueError, match="max_escapes"):
        threshold_for_max_escapes(scores, labels, -1)


def test_log_loss_matches_sklearn():
    from sklearn.metrics import log_loss as sk_log_loss

    scores, labels = random_case(3)
    assert log_loss(scores, labels) == pytest.approx(sk_log_loss(labels, scores), rel=1e-6)
