"""CSV exports of a run's results: the flagged-defect list, all scores, a Kaggle submission.

Every file is written atomically (``core.atomic``): a failed or interrupted export
leaves the previous file untouched. Scores are written with ``repr`` (the shortest text
that reads back to the same float64), so a file parses back to exactly the stored
values. Labels are written 1 (bad) / 0 (good), empty when unlabelled.

A score the run made on an earlier picture of a file (replaced since) is never written:
its cell is empty and the ``note`` column says why, as for an image added after the run
scored (core.score_store returns only current scores). A flag set on an earlier picture stays
in the flagged list with the note "image changed since flagged".

Which scale: a score is the defect probability at the dataset's labelled defect rate (the
run's ``defect_rate``), not at the 50/50 class balance balanced sampling trains at: the
logit is prior-corrected before the sigmoid (``core.metrics.prior_logit_offset``; runs
made before schema 3 are uncorrected). Rows are ordered by logit, which keeps very
confident parts apart.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence

import numpy as np

from core.annotations import UNLABELLED, current_labels, flags, flags_on_changed_images
from core.atomic import atomic_write
from core.ranking import predictions
from core.runs import RunRecord
from core.score_store import (
    NoScoresError,
    aligned_logits,
    aligned_parts,
    aligned_scores,
    as_run,
    changed_since_scored,
    score_freshness,
    stale_scores_message,
)

FLAGGED_COLUMNS = ("id", "path", "score", "label", "run", "model", "threshold", "flagged_at",
                   "reason", "note")
SCORES_COLUMNS = ("id", "path", "split", "label", "score", "prediction", "note",
                  "network_logit", "golden_score")
CHANGED_SINCE_SCORED = "image changed since the run scored it; score again"
NOT_SCORED_YET = "not scored by the run yet (new image)"
CHANGED_SINCE_FLAGGED = "image changed since flagged"
SUBMISSION_COLUMNS = ("id", "label")
SUBMISSION_SPLITS = ("test", "unlabelled")
DEFAULT_THRESHOLD = 0.5


def change_warnings(dataset, run: RunRecord, data: str = "DATA", *,
                    flagged: bool = False) -> list[str]:
    """One line each for what an export of ``run`` writes differently because files changed:
    images without a current score, and (for the flagged list) flags on changed pictures."""
    warnings = []
    freshness = score_freshness(dataset.workspace, run.id)
    if freshness.stale:
        warnings.append(stale_scores_message(freshness, run.id, data))
    changed_flags = len(flags_on_changed_images(dataset.workspace)) if flagged else 0
    if changed_flags:
        warnings.append(f"{changed_flags:,} flagged image(s) changed since they were flagged "
                        f"(kept, noted '{CHANGED_SINCE_FLAGGED}')")
    return warnings


def run_threshold(run: RunRecord, threshold: float | None = None) -> float:
    """The threshold to use: the one given, else the run's chosen one, else 0.5."""
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        return float(threshold)
    return float(run.threshold) if run.threshold is not None else DEFAULT_THRESHOLD


def _run_results(dataset, run, threshold: float | None
                 ) -> tuple[RunRecord, float, np.ndarray, np.ndarray]:
    """(run record, threshold, aligned scores, current labels) that an export writes."""
    run = as_run(dataset.workspace, run)
    return (run, run_threshold(run, threshold), aligned_scores(dataset, run.id),
            current_labels(dataset.workspace, dataset.image_ids))


def export_flagged(dataset, run: RunRecord | int | str, path: str | os.PathLike,
                   threshold: float | None = None, *, include_predicted: bool = True) -> int:
    """Write the flagged-defect list, highest score first.

    A row is an image the user flagged (``flagged_at`` = when) or, with
    ``include_predicted``, one the run calls defective (score >= threshold; empty
    ``flagged_at``). ``reason`` says which: ``flagged``, ``score >= threshold`` or both
    (``flagged; score >= threshold``), so a reader never has to infer it.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run: the run (record, id, 'latest' or 'OTHER_DATA@ID').
        path: the CSV file to write.
        threshold: defect threshold (default: the run's, else 0.5).
        include_predicted: also list images the run calls defective.

    Returns:
        The number of rows written.

    Raises:
        core.score_store.NoScoresError: the run has not scored this dataset.
    """
    run, threshold, scores, labels = _run_results(dataset, run, threshold)
    flagged_at = flags(dataset.workspace)
    positions = _flagged_positions(dataset, run, threshold, scores, flagged_at,
                                   include_predicted)
    ids, image_ids = dataset.ids, dataset.image_ids
    notes = score_notes(dataset, run, scores)
    changed_flags = flags_on_changed_images(dataset.workspace)
    rows = ([ids[p], dataset.relpaths[p], _number(scores[p]), _label(labels[p]), run.id,
             run.model, repr(threshold), flagged_at.get(int(image_ids[p]), ""),
             _reason(int(image_ids[p]) in flagged_at, scores[p] >= threshold),
             "; ".join(note for note in (CHANGED_SINCE_FLAGGED if int(image_ids[p])
                                         in changed_flags else "", notes[p]) if note)]
            for p in positions.tolist())
    return _write_csv(path, FLAGGED_COLUMNS, rows)


def score_notes(dataset, run: RunRecord, scores: np.ndarray) -> list[str]:
    """Why each position has no score (empty where it has one), aligned with the dataset."""
    changed = changed_since_scored(dataset, run.id)
    return ["" if not math.isnan(score) else CHANGED_SINCE_SCORED if was_changed
            else NOT_SCORED_YET for score, was_changed in zip(scores.tolist(), changed.tolist(),
                                                              strict=True)]


def _reason(flagged: bool, called_bad: bool) -> str:
    """Why a row is in the flagged list."""
    return "; ".join(why for why, yes in (("flagged", flagged),
                                          ("score >= threshold", called_bad)) if yes)


def flagged_positions(dataset, run: RunRecord | int | str, threshold: float | None = None,
                      *, include_predicted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The rows of :func:`export_flagged`, in its order: (positions, scores by position)."""
    run, threshold, scores, _labels = _run_results(dataset, run, threshold)
    return _flagged_positions(dataset, run, threshold, scores, flags(dataset.workspace),
                              include_predicted), scores


def _flagged_positions(dataset, run, threshold: float, scores: np.ndarray, flagged_at,
                       include_predicted: bool) -> np.ndarray:
    user_flagged = np.isin(dataset.image_ids, np.fromiter(flagged_at, dtype=np.int64))
    chosen = user_flagged | (include_predicted & (scores >= threshold))
    return _by_score(np.flatnonzero(chosen), aligned_logits(dataset, run.id),
                     dataset.image_ids)


def export_scores(dataset, run: RunRecord | int | str, path: str | os.PathLike,
                  threshold: float | None = None) -> int:
    """Write every present image's score (empty, with a note, for an image the run has
    not scored yet or scored on an earlier picture); for a run with a golden reference
    also the network's logit and the golden score the score was fused from.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run: the run (record, id, 'latest' or 'OTHER_DATA@ID').
        path: the CSV file to write.
        threshold: for the ``prediction`` column (default: the run's, else 0.5).

    Returns:
        The number of rows written.

    Raises:
        core.score_store.NoScoresError: the run has not scored this dataset.
    """
    run, threshold, scores, labels = _run_results(dataset, run, threshold)
    ids, splits = dataset.ids, dataset.splits
    notes = score_notes(dataset, run, scores)
    called = predictions(scores, threshold)  # the GUI's calls, -1 where unscored
    parts = aligned_parts(dataset, run.id)  # a fused score's two parts; empty without them
    network, golden = (parts.network_logits, parts.golden) if parts else \
        (np.full(len(scores), np.nan),) * 2
    rows = ([ids[p], dataset.relpaths[p], splits[p], _label(labels[p]), _number(scores[p]),
             "" if called[p] < 0 else int(called[p]), notes[p], _number(network[p]),
             _number(golden[p])]
            for p in range(len(dataset.image_ids)))
    return _write_csv(path, SCORES_COLUMNS, rows)


def export_submission(dataset, run: RunRecord | int | str, path: str | os.PathLike) -> int:
    """Write a Kaggle submission: ``id,label`` with the defect probability as label.

    One row per test or unlabelled image; the id is the file name without extension.
    Rows are ordered by id (numerically when every id is a number).

    Returns:
        The number of rows written.

    Raises:
        core.score_store.NoScoresError: the run has not scored this dataset.
        ValueError: the dataset has no test/unlabelled images, or some have no score yet.
    """
    run = as_run(dataset.workspace, run)
    scores = aligned_scores(dataset, run.id)
    positions = np.flatnonzero(np.isin(np.asarray(dataset.splits), SUBMISSION_SPLITS))
    if len(positions) == 0:
        raise ValueError(f"{dataset.root} has no test or unlabelled images to submit")
    missing = int(np.count_nonzero(np.isnan(scores[positions])))
    if missing:
        raise NoScoresError(f"{missing} test/unlabelled image(s) have no current score from "
                            f"run {run.id} (new, or changed since it scored): run "
                            f"`diesight score DATA --run {run.id}` again.")
    ids = dataset.ids
    return _write_csv(path, SUBMISSION_COLUMNS,
                      ([ids[p], _number(scores[p])] for p in _by_id(positions.tolist(), ids)))


def _by_id(positions: list[int], ids: Sequence[str]) -> list[int]:
    """Positions ordered by id: numerically when all ids are numbers (Kaggle ids), else text."""
    numeric = all(ids[p].isdigit() for p in positions)
    return sorted(positions, key=(lambda p: (int(ids[p]), ids[p])) if numeric
                  else (lambda p: ids[p]))


def _by_score(positions: np.ndarray, scores: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Positions ordered by score (or logit) descending (unscored last), ties by image id."""
    keyed = np.where(np.isnan(scores[positions]), -np.inf, scores[positions])
    return positions[np.lexsort((np.asarray(image_ids)[positions], -keyed))]


def _number(value: float) -> str:
    """Full-precision text for a float (shortest round-trip repr); empty for NaN."""
    return "" if math.isnan(value) else repr(float(value))


def _label(label: int) -> str:
    return "" if label == UNLABELLED else str(int(label))


def _write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[list]) -> int:
    count = 0
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
