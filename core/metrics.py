"""Inspection metrics on (scores, labels), in plain numpy.

A score is the defect probability; labels are 1 (bad) and 0 (good). In inspection terms an
*escape* is a defective part that passes (score below the threshold) and a *false call* is
a good part that is rejected (score at or above the threshold). The GUI, the trainer and
the exports all use these helpers so the numbers agree everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    return scores, labels.astype(bool)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (the chance a random bad part outscores a random good one).

    Ties count one half. Returns NaN when one of the classes is missing.
    """
    scores, bad = _checked(scores, labels)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if n_bad == 0 or n_good == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    # Mann-Whitney U of the bad parts, scaled to 0..1.
    u = ranks[bad].sum() - n_bad * (n_bad + 1) / 2
    return float(u / (n_bad * n_good))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for every distinct threshold, from rejecting nothing to rejecting all.

    Returns:
        (fpr, tpr, thresholds): thresholds descending, the first being +inf (nothing
        rejected); point i rejects the parts with score >= thresholds[i].
    """
    scores, bad = _checked(scores, labels)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_bad = scores[order], bad[order]
    # Last index of each run of equal scores: the cut points.
    cuts = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), len(scores) - 1] \
        if len(scores) else np.empty(0, dtype=np.int64)
    tp = np.cumsum(sorted_bad)[cuts]
    fp = (cuts + 1) - tp
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    tpr = np.r_[0.0, tp / n_bad] if n_bad else np.full(len(cuts) + 1, np.nan)
    fpr = np.r_[0.0, fp / n_good] if n_good else np.full(len(cuts) + 1, np.nan)
    thresholds = np.r_[np.inf, sorted_scores[cuts]]
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
    """The highest threshold that lets at most ``max_escapes`` bad parts pass.

    Raising the threshold passes more parts, so this is the threshold with the fewest
    false calls for a given escape budget. It equals the (max_escapes + 1)-th lowest
    bad-part score. When the budget covers every bad part, any threshold qualifies; the
    value returned then is the smallest one above every score (everything passes).

    Raises:
        ValueError: if ``max_escapes`` is negative.
    """
    if max_escapes < 0:
        raise ValueError(f"max_escapes must be >= 0, got {max_escapes}")
    scores, bad = _checked(scores, labels)
    bad_scores = np.sort(scores[bad])
    if max_escapes < len(bad_scores):
        return float(bad_scores[max_escapes])
    top = scores.max() if len(scores) else 0.0
    return float(np.nextafter(top, np.inf))


def log_loss(scores, labels, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``scores`` against ``labels``."""
    scores, bad = _checked(scores, labels)
    p = np.clip(scores, eps, 1 - eps)
    return float(-np.mean(np.where(bad, np.log(p), np.log1p(-p))))
