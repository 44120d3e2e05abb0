"""Inspection metrics on (scores, labels), on scikit-learn and scipy.

A score is the defect probability; labels are 1 (bad) and 0 (good). In inspection terms an
*escape* is a defective part that passes (score below the threshold) and a *false call* is
a good part that is rejected (score at or above the threshold). The GUI, the trainer and
the exports all use these helpers so the numbers agree everywhere.

Also the logit <-> probability conversions (in float64: float32's sigmoid rounds every logit
above ~16.6 to exactly 1.0, which would tie the most confident parts) and the prior
correction that turns a logit learned on class-balanced draws into one at the real defect
rate.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta
from sklearn import metrics as sklearn_metrics
from sklearn.exceptions import UndefinedMetricWarning


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold (a part is called bad when score >= threshold).

    Attributes:
        escapes: bad parts passed (false negatives).
        false_calls: good parts rejected (false positives).
        tp: bad parts rejected.
        tn: good parts passed.
    """

    escapes: int
    false_calls: int
    tp: int
    tn: int


def _checked(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {len(scores)} vs {len(labels)}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (bad)")
    nan = int(np.isnan(scores).sum())
    if nan:  # NaN would sort as the highest score and make any ranking look perfect
        raise ValueError(f"{nan} of {len(scores)} scores are NaN (a diverged model?); "
                         f"metrics need real numbers")
    return scores, labels.astype(bool)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (the chance a random bad part outscores a random good one).

    Ties count one half. Returns NaN when one of the classes is missing.

    Raises:
        ValueError: a score is NaN (as in every function here that takes scores).
    """
    scores, bad = _checked(scores, labels)
    if bad.all() or not bad.any():
        return float("nan")  # scikit-learn raises here; a one-class split is a normal case
    order_codes, _ = _order_codes(scores)
    return float(sklearn_metrics.roc_auc_score(bad, order_codes))


def _order_codes(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each score's position among the distinct scores, and those distinct scores.

    Logits of saturated parts are +-inf, which scikit-learn refuses; the ROC depends only
    on the order of the scores, so it is computed on these codes and mapped back.
    """
    distinct, codes = np.unique(scores, return_inverse=True)
    return codes.astype(np.float64), distinct


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for every distinct threshold, from rejecting nothing to rejecting all.

    Returns:
        (fpr, tpr, thresholds): thresholds descending, the first being +inf (nothing
        rejected); point i rejects the parts with score >= thresholds[i]. The rates are
        NaN when their class is missing.
    """
    scores, bad = _checked(scores, labels)
    if not len(scores):
        return np.zeros(1), np.zeros(1), np.array([np.inf])
    with warnings.catch_warnings():  # one class missing: NaN rates, as documented
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        order_codes, distinct = _order_codes(scores)
        fpr, tpr, code_thresholds = sklearn_metrics.roc_curve(bad, order_codes,
                                                              drop_intermediate=False)
    thresholds = np.r_[np.inf, distinct[code_thresholds[1:].astype(np.int64)]]
    return fpr, tpr, thresholds


def confusion_at(scores, labels, threshold: float) -> Confusion:
    """Escapes, false calls, true positives and true negatives at ``threshold``."""
    scores, bad = _checked(scores, labels)
    rejected = scores >= threshold
    return Confusion(escapes=int((bad & ~rejected).sum()),
                     false_calls=int((~bad & rejected).sum()),
                     tp=int((bad & rejected).sum()),
                     tn=int((~bad & ~rejected).sum()))


def threshold_for_max_escapes(scores, labels, max_escapes: int) -> float:
    """A threshold that lets at most ``max_escapes`` bad parts pass, with a margin.

    The highest such threshold is the (max_escapes + 1)-th lowest bad-part score, but a
    threshold exactly on a bad part's score lets a part scored a hair lower escape; so the
    threshold is placed midway, in logit space, between that score and the next lower
    score (whichever part it belongs to). The counts on these scores are the same as at
    the highest threshold. With nothing scored lower, it is that bad score itself. When the
    budget covers every bad part, the value returned is the smallest one above every score
    (everything passes).

    Raises:
        ValueError: if ``max_escapes`` is negative.
    """
    if max_escapes < 0:
        raise ValueError(f"max_escapes must be >= 0, got {max_escapes}")
    scores, bad = _checked(scores, labels)
    bad_scores = np.sort(scores[bad])
    if max_escapes >= len(bad_scores):
        top = scores.max() if len(scores) else 0.0
        return float(np.nextafter(top, np.inf))
    lowest_caught = bad_scores[max_escapes]
    below = scores[scores < lowest_caught]
    if not len(below):
        return float(lowest_caught)
    lower = below.max()
    middle = sigmoid((logit(lowest_caught) + logit(lower)) / 2)
    # Rounding must not move it onto either neighbour's side.
    return float(min(max(middle, np.nextafter(lower, np.inf)), lowest_caught))


def escape_rate_upper_bound(escapes: int, bad: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on the escape rate after ``escapes`` of ``bad``.

    What "0 escapes" is worth depends on how many bad parts were tried: 0 of 48 only
    shows (at 95 %) that the escape rate is below ~6 %. NaN when ``bad`` is 0.
    """
    if bad <= 0:
        return float("nan")
    if escapes >= bad:
        return 1.0
    # The exact bound is a quantile of Beta(k + 1, n - k).
    return float(beta.ppf(confidence, escapes + 1, bad - escapes))


def sigmoid(logits) -> np.ndarray:
    """Probabilities from logits in float64 (distinct up to logits of ~36, not ~16.6)."""
    x = np.asarray(logits, dtype=np.float64)
    positive = x >= 0
    # exp of a negative number only: no overflow for very large logits of either sign.
    e = np.exp(np.where(positive, -x, x))
    return np.where(positive, 1.0 / (1.0 + e), e / (1.0 + e))


def logit(probabilities) -> np.ndarray:
    """Logits from probabilities in float64 (0 -> -inf, 1 -> +inf)."""
    p = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p) - np.log1p(-p)


def prior_logit_offset(defect_rate: float | None, train_prior: float | None) -> float:
    """What to add to a logit learned at class prior ``train_prior`` (the bad share of the
    training draws, 0.5 for balanced sampling) to make it the logit at ``defect_rate``.

    Bayes' rule: the odds scale with the prior odds, so the logit shifts by the difference
    of the log prior odds. 0 when either prior is unknown (runs made before it was stored).
    """
    if defect_rate is None or train_prior is None:
        return 0.0
    if not (0 < defect_rate < 1 and 0 < train_prior < 1):
        return 0.0
    return (math.log(defect_rate / (1 - defect_rate))
            - math.log(train_prior / (1 - train_prior)))


def log_loss(scores, labels, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``scores`` against ``labels``.

    Probabilities are clipped to [eps, 1 - eps] so a confident mistake costs a finite loss.
    """
    scores, bad = _checked(scores, labels)
    if not len(scores):
        return float("nan")
    p = np.clip(scores, eps, 1 - eps)
    return float(sklearn_metrics.log_loss(bad, p, labels=[False, True]))
