"""Evaluating a run against an answer key: AUC with an interval, escapes at fixed false-call
rates, the confusion at a threshold, and recall per defect kind and severity.

The answer key is a *truth CSV*: columns ``id,label`` (label 0/1, good/bad, ok/ng, ...) and
optionally ``defect_type``, ``severity`` and ``split`` -- the ``ground_truth.csv`` that
``diesight demo-data`` writes, or a Kaggle-style solution file. An id is an image's file
name without extension, as in the Kaggle submission (:func:`core.export.export_submission`),
so every image the CSV names is evaluated, the unlabelled ``test/all_tests`` images included:
that is how a held-out test folder is judged against its key.

Conventions as in :mod:`core.metrics`: a part is called bad when its score is at or above the
threshold; an *escape* is a bad part passed, a *false call* a good part rejected.

Intervals (all 95 %):

* AUC: a stratified percentile bootstrap. Good and bad images are resampled separately (with
  replacement, each class keeping its size), ``n_boot`` times; the interval runs from the
  2.5th to the 97.5th percentile of the resampled AUCs.
* Rates (escapes / bad, false calls / good): the Wilson score interval on the count. It
  treats the threshold as fixed. At the fixed false-call rates the threshold is chosen on
  these same images, which the interval does not account for.

Severity bands (the demo generator draws its subtle defects below 0.35):
``subtle`` < 0.35 <= ``medium`` < 0.7 <= ``obvious``.

The truth CSV is read by :mod:`core.truth_csv`, the intervals and recalls are computed by
:mod:`core.evaluation_stats`; both are importable from here as well.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from core.evaluation_stats import (  # noqa: F401  (re-exported: callers import them from here)
    N_BOOT,
    SEVERITY_BANDS,
    UNKNOWN,
    Z95,
    GroupRecall,
    Rate,
    auc_bins,
    bootstrap_aucs,
    json_number,
    recall_by_group,
    recall_by_severity,
    replicate_aucs,
    severity_band,
    threshold_at_false_call_rate,
    wilson_interval,
)
from core.export import run_threshold
from core.progress import CancelCheck
from core.score_store import aligned_scores, as_run
from core.truth_csv import (  # noqa: F401  (re-exported)
    TRUTH_OPTIONAL,
    TRUTH_REQUIRED,
    TruthCsvError,
    TruthTable,
    read_truth_csv,
)

FPR_POINTS = (0.01, 0.02, 0.05)
REFERENCE_FPR = 0.02  # the per-kind recall is also shown at this false-call rate


# -- results at one threshold ----------------------------------------------------------------

@dataclass(frozen=True)
class ThresholdResults:
    """Everything that depends on the threshold: the confusion and the per-group recall.

    Attributes:
        threshold: parts scoring at or above it are called bad.
        escapes, false_calls: escapes / bad and false calls / good, with intervals.
        tp, tn: bad parts caught, good parts passed.
        by_kind, by_severity: recall per defect kind and severity band (empty without the
            truth CSV's column).
    """

    threshold: float
    escapes: Rate
    false_calls: Rate
    tp: int
    tn: int
    by_kind: tuple[GroupRecall, ...] = ()
    by_severity: tuple[GroupRecall, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "escapes": self.escapes.to_dict(),
                "false_calls": self.false_calls.to_dict(), "tp": self.tp, "tn": self.tn,
                "by_kind": [g.to_dict() for g in self.by_kind],
                "by_severity": [g.to_dict() for g in self.by_severity]}


def threshold_results(scores, labels, threshold: float, kinds: Sequence[str] | None = None,
                      severities=None) -> ThresholdResults:
    """The confusion and per-kind / per-severity recall at ``threshold`` (cheap: no
    bootstrap, so a view can call it whenever the threshold moves)."""
    scores, bad = _checked(scores, labels)
    rejected = scores >= threshold
    n_bad, tp = int(bad.sum()), int((bad & rejected).sum())
    n_good, false_calls = len(bad) - n_bad, int((~bad & rejected).sum())
    by_kind = by_severity = ()
    if kinds is not None:
        by_kind = recall_by_group(np.asarray(kinds, dtype=object)[bad].tolist(), rejected[bad])
    if severities is not None:
        by_severity = recall_by_severity(np.asarray(severities, dtype=np.float64)[bad],
                                         rejected[bad])
    return ThresholdResults(float(threshold), Rate.of(n_bad - tp, n_bad),
                            Rate.of(false_calls, n_good), tp, n_good - false_calls,
                            by_kind, by_severity)


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold for at most ``max_false_call_rate`` false calls and its escapes."""

    max_false_call_rate: float
    threshold: float
    false_calls: Rate
    escapes: Rate

    def to_dict(self) -> dict[str, Any]:
        return {"max_false_call_rate": self.max_false_call_rate, "threshold": self.threshold,
                "false_calls": self.false_calls.to_dict(), "escapes": self.escapes.to_dict()}


def operating_point(scores, labels, max_rate: float) -> OperatingPoint | None:
    """The operating point for a false-call rate (None without good parts)."""
    scores, bad = _checked(scores, labels)
    threshold = threshold_at_false_call_rate(scores, bad, max_rate)
    if threshold is None:
        return None
    at = threshold_results(scores, bad, threshold)
    return OperatingPoint(max_rate, threshold, at.false_calls, at.escapes)


# -- the whole evaluation --------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """A run's scores judged against true labels (see :func:`evaluate`).

    Attributes:
        n_good, n_bad: images of each class.
        auc, auc_low, auc_high: ROC AUC and its bootstrap 95 % interval (NaN with one class).
        n_boot: bootstrap rounds.
        roc_fpr, roc_tpr, roc_thresholds: the ROC curve (sklearn's, without collinear
            points); empty with one class.
        operating_points: one per false-call rate asked for.
        at_threshold: confusion and recall at the given threshold.
        at_reference: the same at the threshold for REFERENCE_FPR false calls (None
            without good parts).
    """

    n_good: int
    n_bad: int
    auc: float
    auc_low: float
    auc_high: float
    n_boot: int
    roc_fpr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)
    roc_thresholds: np.ndarray = field(repr=False)
    operating_points: tuple[OperatingPoint, ...]
    at_threshold: ThresholdResults
    at_reference: ThresholdResults | None

    @property
    def threshold(self) -> float:
        return self.at_threshold.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain types for JSON (NaN and infinity become None)."""
        return {
            "n_good": self.n_good, "n_bad": self.n_bad,
            "auc": {"value": json_number(self.auc), "low": json_number(self.auc_low),
                    "high": json_number(self.auc_high), "bootstrap_rounds": self.n_boot,
                    "interval": "stratified percentile bootstrap, 95 %"},
            "roc": {"fpr": self.roc_fpr.tolist(), "tpr": self.roc_tpr.tolist(),
                    "thresholds": [json_number(t) for t in self.roc_thresholds.tolist()]},
            "rate_interval": "Wilson score, 95 %",
            "operating_points": [p.to_dict() for p in self.operating_points],
            "at_threshold": self.at_threshold.to_dict(),
            "reference_false_call_rate": REFERENCE_FPR,
            "at_reference": None if self.at_reference is None else self.at_reference.to_dict(),
            "severity_bands": {name: [json_number(low), json_number(high)]
                               for name, low, high in SEVERITY_BANDS},
        }

    def format_text(self) -> str:
        """The report for a terminal."""
        return "\n".join(_report_lines(self))


def evaluate(scores, labels, kinds: Sequence[str] | None = None, severities=None,
             threshold: float = 0.5, fpr_points: Sequence[float] = FPR_POINTS,
             n_boot: int = N_BOOT, seed: int = 0,
             cancel: CancelCheck | None = None) -> Evaluation:
    """Judge scores against true labels.

    Args:
        scores: defect probabilities (finite).
        labels: 1 bad / 0 good, aligned with ``scores``.
        kinds: defect type per image (read for bad images only), or None.
        severities: defect severity per image (NaN: not given), or None.
        threshold: the threshold for the confusion and the first recall tables.
        fpr_points: false-call rates to report escapes at.
        n_boot: bootstrap rounds for the AUC interval (0: no interval).
        seed: the bootstrap's random seed (the same seed gives the same interval).
        cancel: checked between bootstrap chunks.

    Raises:
        ValueError: no images, lengths differ, labels not 0/1, or a score not finite.
    """
    scores, bad = _checked(scores, labels)
    n_bad = int(bad.sum())
    n_good = len(bad) - n_bad
    auc, low, high = math.nan, math.nan, math.nan
    fpr = tpr = thresholds = np.empty(0)
    if n_bad and n_good:
        auc = float(roc_auc_score(bad, scores))
        fpr, tpr, thresholds = roc_curve(bad, scores)
        if n_boot > 0:
            aucs = bootstrap_aucs(scores[~bad], scores[bad], n_boot, seed, cancel)
            low, high = (float(v) for v in np.percentile(aucs, [2.5, 97.5]))
    points = tuple(p for p in (operating_point(scores, bad, rate) for rate in fpr_points)
                   if p is not None)
    reference = threshold_at_false_call_rate(scores, bad, REFERENCE_FPR)
    return Evaluation(
        n_good, n_bad, auc, low, high, n_boot if n_bad and n_good else 0, fpr, tpr,
        thresholds, points, threshold_results(scores, bad, threshold, kinds, severities),
        None if reference is None else threshold_results(scores, bad, reference, kinds,
                                                         severities))


def _checked(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {len(scores)} vs {len(labels)}")
    if len(scores) == 0:
        raise ValueError("no images to evaluate")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (bad)")
    if not np.isfinite(scores).all():
        raise ValueError("every score must be a finite number")
    return scores, labels.astype(bool)

# -- the terminal report ---------------------------------------------------------------------

def percent(value: float, digits: int = 1) -> str:
    """'12.5 %', or 'n/a' for NaN."""
    return "n/a" if not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def interval_text(low: float, high: float, digits: int = 1) -> str:
    """'3.1-12.0 %' for a rate's interval, '' when there is none."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"{100 * low:.{digits}f}–{100 * high:.{digits}f} %"


def auc_text(evaluation: Evaluation) -> str:
    """'ROC AUC 0.9734 (95 % interval 0.9512-0.9890, 2,000 bootstrap rounds)'."""
    if not math.isfinite(evaluation.auc):
        return "ROC AUC n/a (needs good and bad images)"
    text = f"ROC AUC {evaluation.auc:.4f}"
    if math.isfinite(evaluation.auc_low):
        text += (f" (95 % interval {evaluation.auc_low:.4f}–{evaluation.auc_high:.4f}, "
                 f"stratified bootstrap, {evaluation.n_boot:,} rounds)")
    return text


def _report_lines(e: Evaluation) -> list[str]:
    lines = [f"{e.n_good + e.n_bad:,} images: {e.n_good:,} good, {e.n_bad:,} bad.",
             auc_text(e), ""]
    if e.operating_points:
        lines += ["Escapes at fixed false-call rates (threshold chosen on these images; "
                  "Wilson 95 % intervals):",
                  f"  {'false calls ≤':>13}  {'threshold':>9}  {'false calls':>16}  "
                  f"{'escapes':>11}  {'escape rate':>11}  interval"]
        for p in e.operating_points:
            lines.append(f"  {percent(p.max_false_call_rate, 0):>13}  {p.threshold:>9.4g}  "
                         f"{_count(p.false_calls):>16}  {_ratio(p.escapes):>11}  "
                         f"{percent(p.escapes.value):>11}  "
                         f"{interval_text(p.escapes.low, p.escapes.high)}")
        lines.append("")
    lines += _confusion_lines(e.at_threshold)
    lines += _recall_lines("defect kind", e.at_threshold.by_kind, e)
    lines += _recall_lines("severity", e.at_threshold.by_severity, e, severity=True)
    return lines


def _count(rate: Rate) -> str:
    return f"{rate.count:,} ({percent(rate.value, 2)})"


def _ratio(rate: Rate) -> str:
    return f"{rate.count:,} / {rate.total:,}"


def _confusion_lines(at: ThresholdResults) -> list[str]:
    e, f = at.escapes, at.false_calls
    return [f"At threshold {at.threshold:.4g}:",
            f"  bad  {e.total:>7,}:  caught {at.tp:>7,}   escapes     {e.count:>7,}  "
            f"({percent(e.value)}, 95 % {interval_text(e.low, e.high) or 'n/a'})",
            f"  good {f.total:>7,}:  passed {at.tn:>7,}   false calls {f.count:>7,}  "
            f"({percent(f.value, 2)}, 95 % {interval_text(f.low, f.high, 2) or 'n/a'})", ""]


def _recall_lines(what: str, groups: tuple[GroupRecall, ...], e: Evaluation,
                  severity: bool = False) -> list[str]:
    """A table of bad parts caught per group, at the threshold and at REFERENCE_FPR."""
    if not groups:
        return []
    reference = e.at_reference
    other = ({g.name: g for g in (reference.by_severity if severity else reference.by_kind)}
             if reference is not None else {})
    title = f"Recall by {what} (bad parts caught)"
    if severity:
        title += ", subtle < 0.35 ≤ medium < 0.7 ≤ obvious"
    width = max(len(g.name) for g in groups + (GroupRecall(what, 0, 0),)) + 2
    header = f"  {what:<{width}}{'bad':>6}   {'at ' + format(e.threshold, '.4g'):<16}"
    if other:
        header += (f"at {percent(REFERENCE_FPR, 0)} false calls "
                   f"({reference.threshold:.4g})")
    lines = [title + ":", header.rstrip()]
    for g in groups:
        line = f"  {g.name:<{width}}{g.count:>6,}   {_caught(g):<16}"
        if g.name in other:
            line += _caught(other[g.name])
        lines.append(line.rstrip())
    return lines + [""]


def _caught(group: GroupRecall) -> str:
    return f"{group.caught:,} ({percent(group.recall)})"


# -- a run of a dataset against a truth CSV --------------------------------------------------

@dataclass(frozen=True)
class TruthMatch:
    """The truth CSV's rows matched to a dataset's images and a run's scores.

    Attributes:
        positions: dataset positions of the images evaluated (truth-CSV order).
        scores, labels, kinds, severities: theirs (kinds / severities None without the
            CSV's column); the labels are the CSV's, never the dataset's.
        truth_rows: rows in the CSV.
        other_split: rows left out by the split filter.
        no_image: ids that name no image of the dataset.
        ambiguous: ids that name several images (the same file name in two folders).
        no_score: ids of images the run has not scored.
        trained_split: evaluated images of the dataset's 'train' or 'val' split, which the
            run may have learned from.
    """

    positions: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    kinds: list[str] | None
    severities: np.ndarray | None
    truth_rows: int
    other_split: int = 0
    no_image: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    no_score: list[str] = field(default_factory=list)
    trained_split: int = 0

    def at(self, threshold: float) -> ThresholdResults:
        """The threshold-dependent results (what a view recomputes as the threshold moves)."""
        return threshold_results(self.scores, self.labels, threshold, self.kinds,
                                 self.severities)

    def warnings(self, root, run_id: int) -> list[str]:
        """One line per kind of truth row that could not be evaluated."""
        lines = []
        if self.no_image:
            lines.append(f"{len(self.no_image):,} truth row(s) name no image of {root} "
                         f"({_examples(self.no_image)}); left out")
        if self.ambiguous:
            lines.append(f"{len(self.ambiguous):,} id(s) name several images of {root} "
                         f"({_examples(self.ambiguous)}); left out")
        if self.no_score:
            lines.append(f"{len(self.no_score):,} image(s) have no score from run {run_id} "
                         f"({_examples(self.no_score)}); left out -- run `diesight score "
                         f"DATA --run {run_id}` to score them")
        return lines


def _examples(ids: list[str], shown: int = 3) -> str:
    return "e.g. " + ", ".join(ids[:shown]) + (" ..." if len(ids) > shown else "")


def match_truth(dataset, truth: TruthTable, scores: np.ndarray,
                split: str | None = None) -> TruthMatch:
    """Match the truth rows to ``dataset``'s images by id (file stem) and pick their scores.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        truth: the truth CSV's rows.
        scores: the run's scores by dataset position (NaN: not scored).
        split: keep only images of this split: the dataset's split ('train', 'val', 'test',
            'unlabelled', 'lot NAME') or the truth CSV's ``split`` column.

    Raises:
        ValueError: no truth row is left to evaluate (the message says why).
    """
    chosen = _rows_in_split(dataset, truth, split)
    by_id = _positions_by_id(dataset.ids)
    rows, positions, no_image, ambiguous, no_score = [], [], [], [], []
    for row in chosen:
        image_id = truth.ids[row]
        position = by_id.get(image_id)
        if position is None:
            no_image.append(image_id)
        elif position < 0:
            ambiguous.append(image_id)
        elif math.isnan(scores[position]):
            no_score.append(image_id)
        else:
            rows.append(row)
            positions.append(position)
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) == 0:
        raise ValueError(_nothing_matched(dataset, truth, split, len(chosen), no_score))
    rows = np.asarray(rows, dtype=np.int64)
    splits = np.asarray(dataset.splits)[positions]
    return TruthMatch(
        positions, np.asarray(scores, dtype=np.float64)[positions], truth.labels[rows],
        None if truth.kinds is None else [truth.kinds[r] for r in rows],
        None if truth.severities is None else truth.severities[rows], len(truth),
        len(truth) - len(chosen), no_image, ambiguous, no_score,
        int(np.isin(splits, ("train", "val")).sum()))


def _positions_by_id(ids: Sequence[str]) -> dict[str, int]:
    """File stem -> dataset position; -1 for a stem that several images share."""
    found: dict[str, int] = {}
    for position, image_id in enumerate(ids):
        found[image_id] = -1 if image_id in found else position
    return found


def _rows_in_split(dataset, truth: TruthTable, split: str | None) -> list[int]:
    """Truth rows in ``split`` by the CSV's split column or by the dataset's split."""
    if split is None:
        return list(range(len(truth)))
    in_split = {image_id for image_id, s in zip(dataset.ids, dataset.splits, strict=True)
                if s == split}
    csv_splits = truth.splits or [""] * len(truth)
    return [row for row, image_id in enumerate(truth.ids)
            if csv_splits[row] == split or image_id in in_split]


def _nothing_matched(dataset, truth: TruthTable, split: str | None, chosen: int,
                     no_score: list[str]) -> str:
    if split is not None and chosen == 0:
        known = sorted(set(dataset.splits) | set(truth.splits or []) - {""})
        return (f"no truth row of {truth.path} is in split {split!r} (splits: "
                f"{', '.join(known)})")
    if no_score:
        return (f"none of the {len(no_score):,} images named by {truth.path} has a score "
                "from this run yet; score the dataset first")
    return (f"none of the ids in {truth.path} names an image of {dataset.root} (ids are "
            f"file names without extension, e.g. {truth.ids[0]!r})")


@dataclass(frozen=True)
class RunEvaluation:
    """:func:`evaluate_run`'s result: which run, which truth, what matched, and the numbers."""

    root: Path
    run_id: int
    model: str
    truth_path: Path
    split: str | None
    match: TruthMatch
    evaluation: Evaluation

    @property
    def warnings(self) -> list[str]:
        return self.match.warnings(self.root, self.run_id)

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        return {"dataset": str(self.root), "run": self.run_id, "model": self.model,
                "truth": str(self.truth_path), "split": self.split,
                "truth_rows": m.truth_rows, "evaluated": len(m.positions),
                "other_split": m.other_split, "no_image": len(m.no_image),
                "ambiguous": len(m.ambiguous), "no_score": len(m.no_score),
                "trained_split": m.trained_split, "warnings": self.warnings,
                **self.evaluation.to_dict()}

    def format_text(self) -> str:
        where = f", split {self.split!r}" if self.split else ""
        lines = [f"Run {self.run_id} ({self.model}) on {self.root} against "
                 f"{self.truth_path.name}{where}."]
        if self.match.trained_split and self.split is None:
            lines.append(f"{self.match.trained_split:,} of the images are in the dataset's "
                         "train/val split (the run may have learned from them); --split test "
                         "evaluates the held-out ones only.")
        return "\n".join(lines + [self.evaluation.format_text()]).rstrip()


def evaluate_run(dataset, run, truth_csv: str | os.PathLike | TruthTable,
                 split: str | None = None, threshold: float | None = None, *,
                 n_boot: int = N_BOOT, seed: int = 0,
                 cancel: CancelCheck | None = None) -> RunEvaluation:
    """Evaluate a run's stored scores of ``dataset`` against a truth CSV.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run: the run (record, id, 'latest' or 'OTHER_DATA@ID').
        truth_csv: the CSV's path, or its rows already read.
        split: evaluate only this split (see :func:`match_truth`).
        threshold: for the confusion and recall tables (default: the run's, else 0.5).
        n_boot, seed, cancel: as for :func:`evaluate`.

    Raises:
        TruthCsvError: the CSV cannot be used.
        core.score_store.NoScoresError: the run has not scored this dataset.
        ValueError: nothing to evaluate, or a threshold outside 0..1.
    """
    run = as_run(dataset.workspace, run)
    threshold = run_threshold(run, threshold)
    truth = truth_csv if isinstance(truth_csv, TruthTable) else read_truth_csv(truth_csv)
    match = match_truth(dataset, truth, aligned_scores(dataset, run.id), split)
    evaluation = evaluate(match.scores, match.labels, match.kinds, match.severities,
                          threshold, n_boot=n_boot, seed=seed, cancel=cancel)
    return RunEvaluation(Path(dataset.root), run.id, run.model, truth.path, split, match,
                         evaluation)
