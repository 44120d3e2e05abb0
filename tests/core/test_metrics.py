"""Tests of the inspection metrics against scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from core.metrics import (
    confusion_at,
    escape_rate_upper_bound,
    log_loss,
    logit,
    prior_logit_offset,
    roc_auc,
    roc_curve,
    sigmoid,
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
def test_threshold_for_max_escapes_keeps_the_budget_with_a_margin(seed, max_escapes):
    scores, labels = random_case(seed, n=80, ties=seed % 2 == 1)
    t = threshold_for_max_escapes(scores, labels, max_escapes)
    assert confusion_at(scores, labels, t).escapes <= max_escapes
    # The highest allowed threshold is the (N+1)-th lowest bad score; any higher one lets
    # more bad parts through, and t counts exactly as it does.
    caught = np.sort(scores[labels == 1])[max_escapes]
    assert confusion_at(scores, labels, np.nextafter(caught, 1)).escapes > max_escapes
    assert confusion_at(scores, labels, t) == confusion_at(scores, labels, caught)
    # ... but t is not on that score: midway in logit space to the next lower score.
    lower = scores[scores < caught].max()
    assert lower < t < caught
    if lower > 0:  # (a score of 0 is at logit -inf: t is then the smallest positive float)
        assert logit(t) == pytest.approx((logit(caught) + logit(lower)) / 2, abs=1e-9)


def test_threshold_with_nothing_below_the_lowest_bad_score_is_that_score():
    scores, labels = np.array([0.2, 0.9, 0.4]), np.array([1, 0, 1])
    assert threshold_for_max_escapes(scores, labels, 0) == 0.2


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


def test_escape_rate_upper_bound_is_clopper_pearson():
    # 0 of n: (1 - p)^n = 0.05 exactly; 0 of 48 bounds the escape rate at ~6 %.
    assert escape_rate_upper_bound(0, 48) == pytest.approx(1 - 0.05 ** (1 / 48), abs=1e-9)
    assert escape_rate_upper_bound(0, 48) == pytest.approx(0.0605, abs=1e-4)
    # k of n: P(X <= k) at the bound is 5 % (checked against the Beta quantile).
    from scipy.stats import beta

    for k, n in ((1, 24), (3, 48), (10, 160)):
        assert escape_rate_upper_bound(k, n) == pytest.approx(beta.ppf(0.95, k + 1, n - k),
                                                              abs=1e-9)
    assert escape_rate_upper_bound(5, 5) == 1.0
    assert np.isnan(escape_rate_upper_bound(0, 0))


def test_float64_sigmoid_keeps_confident_logits_apart():
    import torch

    logits = np.array([20.0, 25.0])
    # float32 rounds both to exactly 1.0: a tie in ranking, AUC and submission.
    assert torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).unique().tolist() == [1.0]
    p = sigmoid(logits)
    assert p[0] < p[1] < 1.0
    assert np.allclose(logit(p), logits, atol=1e-5)
    assert sigmoid(np.array([-800.0, 800.0])).tolist() == [0.0, 1.0]  # no overflow


def test_prior_offset_moves_balanced_odds_to_the_defect_rate():
    offset = prior_logit_offset(0.1, 0.5)
    assert offset == pytest.approx(np.log(1 / 9))
    assert sigmoid(0.0 + offset) == pytest.approx(0.1)  # a coin flip at 50/50 is 10 % here
    assert prior_logit_offset(None, 0.5) == 0.0 and prior_logit_offset(0.2, 0.2) == 0.0
