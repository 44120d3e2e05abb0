"""Statistics of an evaluation: Wilson intervals on rates, the stratified bootstrap of the
AUC, the threshold at a false-call rate and recall per defect kind or severity band.

Used by :mod:`core.evaluation`, which documents the intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.progress import CancelCheck, check_cancel

N_BOOT = 2000
SEVERITY_BANDS = (("subtle", -math.inf, 0.35), ("medium", 0.35, 0.7),
                  ("obvious", 0.7, math.inf))
UNKNOWN = "(not given)"
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
_BOOT_CHUNK = 4_000_000  # resampled values per bootstrap chunk (bounds the memory, ~32 MB)


def json_number(value: float) -> float | None:
    """``value`` as JSON allows it: None for NaN, infinity or None."""
    return float(value) if value is not None and math.isfinite(value) else None


# -- rates and intervals ---------------------------------------------------------------------

def wilson_interval(count: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``count`` successes in ``total`` trials (NaN if none).

    Unlike the normal approximation it stays inside 0..1 and is not zero-width at 0 or n
    successes, which matters for escape counts of 0-5 out of a few dozen bad parts.
    """
    if total <= 0:
        return math.nan, math.nan
    p, n = count / total, total
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == total else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """``count`` of ``total`` with its Wilson 95 % interval (NaN when ``total`` is 0)."""

    count: int
    total: int
    low: float
    high: float

    @classmethod
    def of(cls, count: int, total: int) -> Rate:
        return cls(int(count), int(total), *wilson_interval(int(count), int(total)))

    @property
    def value(self) -> float:
        return self.count / self.total if self.total else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "rate": json_number(self.value),
                "low": json_number(self.low), "high": json_number(self.high)}


# -- AUC and its bootstrap interval ----------------------------------------------------------

def auc_bins(good: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group the good scores into the bins that matter to the bad ones.

    A bad part with score s beats the goods below s and ties (one half) with those equal to
    s. In the goods sorted ascending those are the indices below ``lo`` and ``lo..hi-1``, so
    a resample's AUC only needs how many good draws fall below each such index. The indices
    cut the sorted goods into at most 2 * n_bad + 1 bins.

    Returns:
        (sizes, lo_bin, hi_bin): goods per bin; per bad part, the number of bins wholly
        below its ``lo`` and its ``hi``.
    """
    good_sorted = np.sort(good)
    lo = np.searchsorted(good_sorted, bad, side="left")
    hi = np.searchsorted(good_sorted, bad, side="right")
    edges = np.unique(np.concatenate([[0, len(good_sorted)], lo, hi]))
    return (np.diff(edges), np.searchsorted(edges, lo), np.searchsorted(edges, hi))


def replicate_aucs(bin_counts: np.ndarray, lo_bin: np.ndarray, hi_bin: np.ndarray,
                   bad_draws: np.ndarray) -> np.ndarray:
    """The AUC of each bootstrap replicate, without sorting any replicate.

    Args:
        bin_counts: (rounds, bins) good draws per bin of :func:`auc_bins`, one row per
            replicate.
        lo_bin, hi_bin: from :func:`auc_bins`.
        bad_draws: (rounds, n_bad) indices of the bad parts drawn, one row per replicate.
    """
    rounds, bins = bin_counts.shape
    # Integer counts throughout (exact, and numpy's integer cumsum is the fast one).
    below = np.zeros((rounds, bins + 1), dtype=np.int64)  # good draws of a round in bins < k
    np.cumsum(bin_counts, axis=1, out=below[:, 1:])
    # Bad parts with the same (lo_bin, hi_bin) win alike: count the draws per such group.
    pairs, group = np.unique(lo_bin * (bins + 1) + hi_bin, return_inverse=True)
    offsets = (np.arange(rounds) * len(pairs))[:, None]
    drawn = np.bincount((group[bad_draws] + offsets).ravel(), minlength=rounds * len(pairs))
    twice_wins = below[:, pairs // (bins + 1)] + below[:, pairs % (bins + 1)]  # ties: 1/2
    n_good, n_bad = int(below[0, -1]), bad_draws.shape[1]
    return (np.einsum("rg,rg->r", drawn.reshape(rounds, len(pairs)), twice_wins)
            / (2.0 * n_good * n_bad))


def bootstrap_aucs(good: np.ndarray, bad: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                   cancel: CancelCheck | None = None) -> np.ndarray:
    """``n_boot`` AUCs of stratified resamples (each class resampled on its own).

    Drawing n_good goods with replacement puts a multinomial number of them into each bin
    of :func:`auc_bins`, so the goods are drawn per bin (a few thousand bins instead of
    tens of thousands of draws per round); the bad parts are drawn one by one.
    """
    rng = np.random.default_rng(seed)
    good, bad = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    sizes, lo_bin, hi_bin = auc_bins(good, bad)
    chunk = max(1, _BOOT_CHUNK // (len(sizes) + len(bad)))
    aucs = []
    for start in range(0, n_boot, chunk):
        check_cancel(cancel)
        rounds = min(chunk, n_boot - start)
        counts = rng.multinomial(len(good), sizes / len(good), size=rounds)
        aucs.append(replicate_aucs(counts, lo_bin, hi_bin,
                                   rng.integers(0, len(bad), size=(rounds, len(bad)))))
    return np.concatenate(aucs) if aucs else np.empty(0)


# -- thresholds and per-group recall ---------------------------------------------------------

def threshold_at_false_call_rate(scores: np.ndarray, bad: np.ndarray,
                                 rate: float) -> float | None:
    """The lowest threshold (most bad parts caught) whose false calls are at most ``rate``
    of the good parts here; None without good parts.

    With k = floor(rate * n_good) allowed false calls the threshold must lie above the
    (k+1)-th highest good score g; every threshold in (g, next score above g] calls the
    same parts bad, so the answer is that next score (just above g when there is none).
    """
    good = np.sort(scores[~bad])[::-1]
    if len(good) == 0:
        return None
    allowed = math.floor(rate * len(good) + 1e-9)
    if allowed >= len(good):
        return float(scores.min())  # every part may be called bad
    limit = good[allowed]
    above = scores[scores > limit]
    return float(above.min()) if len(above) else float(np.nextafter(limit, np.inf))


@dataclass(frozen=True)
class GroupRecall:
    """Bad parts of one defect kind or severity band: how many, how many caught."""

    name: str
    count: int
    caught: int

    @property
    def recall(self) -> float:
        return self.caught / self.count if self.count else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "caught": self.caught,
                "recall": json_number(self.recall)}


def recall_by_group(groups: Sequence[str], caught: np.ndarray) -> tuple[GroupRecall, ...]:
    """Recall per group name (in name order); ``groups`` and ``caught`` cover bad parts only."""
    names = np.asarray([g if g else UNKNOWN for g in groups], dtype=str)
    if len(names) == 0:
        return ()
    unique, inverse = np.unique(names, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(unique))
    hits = np.bincount(inverse, weights=np.asarray(caught, dtype=np.float64),
                       minlength=len(unique))
    return tuple(GroupRecall(str(n), int(c), int(h))
                 for n, c, h in zip(unique, counts, hits, strict=True))


def severity_band(severities: np.ndarray) -> list[str]:
    """The band name of each severity (UNKNOWN for NaN)."""
    names = np.full(len(severities), UNKNOWN, dtype=object)
    for name, low, high in SEVERITY_BANDS:
        names[(severities >= low) & (severities < high)] = name
    return names.tolist()


def recall_by_severity(severities: np.ndarray, caught: np.ndarray) -> tuple[GroupRecall, ...]:
    """Recall per severity band, subtle to obvious (bands without bad parts left out)."""
    by_name = {g.name: g for g in recall_by_group(severity_band(severities), caught)}
    order = [name for name, _, _ in SEVERITY_BANDS] + [UNKNOWN]
    return tuple(by_name[name] for name in order if name in by_name)
