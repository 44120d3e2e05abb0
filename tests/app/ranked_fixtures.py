"""Helpers for the ranked list, threshold bar, viewer and export tests: a run with known scores.

No training: a hand-made run (``scoring_fixtures.make_run``) gets scores chosen by the test
(bad images score high, good ones low, with overlap so every threshold has escapes and false
calls) and a saved list of validation ids, exactly what the trainer and scorer would store.
"""

from __future__ import annotations

import numpy as np
from scoring_fixtures import make_run

from app.state import AppState
from core.dataset import open_dataset
from core.runs import save_validation_ids
from core.score_store import store_scores

EMBEDDING_DIM = 4


def known_scores(dataset, seed: int = 0) -> np.ndarray:
    """Distinct scores that mostly rank bad images above good ones (float64, by position)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    scores = np.where(labels == 1, rng.uniform(0.35, 1.0, len(labels)),
                      np.where(labels == 0, rng.uniform(0.0, 0.65, len(labels)),
                               rng.uniform(0.0, 1.0, len(labels))))
    return np.round(scores, 6)


def validation_positions(dataset) -> np.ndarray:
    """Every third labelled image: the run's held-out set."""
    return np.flatnonzero(np.asarray(dataset.labels) >= 0)[::3]


def scored_run(dataset, *, threshold: float = 0.5, scored: np.ndarray | None = None,
               seed: int = 0):
    """A finished run of ``dataset`` with known scores and validation ids.

    Args:
        dataset: the open dataset.
        threshold: the run's threshold (the state adopts it when the run becomes current).
        scored: positions that get a score (default: all).
        seed: for the scores.

    Returns:
        (run record, scores by position with NaN where unscored).
    """
    run = make_run(dataset.workspace, threshold=threshold)
    scores = known_scores(dataset, seed)
    scored = np.arange(len(scores)) if scored is None else np.asarray(scored)
    store_scores(dataset.workspace, run.id, dataset.image_ids[scored], scores[scored],
                 np.zeros((len(scored), EMBEDDING_DIM), dtype=np.float32))
    save_validation_ids(dataset.workspace, run.id,
                        dataset.image_ids[validation_positions(dataset)])
    result = np.full(len(scores), np.nan)
    result[scored] = scores[scored]
    return run, result


def state_with_run(folder, *, threshold: float = 0.5, scored=None):
    """(AppState with the dataset open and a scored run current, run, scores)."""
    dataset = open_dataset(folder, workers=1)
    run, scores = scored_run(dataset, threshold=threshold, scored=scored)
    state = AppState()
    state.set_dataset(dataset)
    state.set_current_run(run)
    return state, run, scores
