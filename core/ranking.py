"""Ranked queries: a dataset's images ordered by a run's defect score, with filters.

The ranked list is what an inspector works through (highest scores first), narrowed to
e.g. unlabelled images, flagged ones, or the disagreements between a label and the
model's call at a threshold. Everything is computed on whole numpy arrays (one database
read each for scores, labels and flags), so a query over 30,000 images stays at a few
tens of milliseconds; no per-image Python runs until rows are actually read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np

from core.annotations import UNLABELLED, current_labels, flagged_mask
from core.runs import validation_ids
from core.scores import aligned_logits, aligned_scores

FILTERS = ("all", "bad", "good", "unlabelled", "flagged", "disagreements")
VALIDATION_SPLIT = "validation"
"""Split name meaning "the images the run held out for validation" (not a folder split)."""


class RankedImage(NamedTuple):
    """One row of a ranking.

    Attributes:
        position: index into the dataset's per-image arrays.
        image_id: the image's id (its row in the image cache).
        relpath: path relative to the dataset root.
        score: defect probability from the run.
        label: 1 bad, 0 good, -1 unlabelled (user relabels applied).
        prediction: 1 when score >= threshold, else 0.
        flagged: True when the user flagged the image.
    """

    position: int
    image_id: int
    relpath: str
    score: float
    label: int
    prediction: int
    flagged: bool


@dataclass(eq=False)
class Ranking(Sequence):
    """Images sorted by score (highest first), as aligned arrays; also a sequence of rows.

    Attributes:
        positions: int64 positions into the dataset's arrays, in ranked order.
        image_ids, scores, labels, predictions, flagged: per-row arrays, same order.
        threshold: the score at or above which an image is predicted bad.
        unscored: images that matched the filter but have no score from the run (left out).
    """

    positions: np.ndarray
    image_ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    flagged: np.ndarray
    threshold: float
    unscored: int
    _relpaths: Sequence[str]

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, index: int) -> RankedImage: ...

    @overload
    def __getitem__(self, index: slice) -> list[RankedImage]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = int(self.positions[index])
        return RankedImage(position, int(self.image_ids[index]), self._relpaths[position],
                           float(self.scores[index]), int(self.labels[index]),
                           int(self.predictions[index]), bool(self.flagged[index]))

    def __iter__(self) -> Iterator[RankedImage]:
        return (self[i] for i in range(len(self)))

    @property
    def relpaths(self) -> list[str]:
        """Paths of the ranked images, in ranked order."""
        return [self._relpaths[p] for p in self.positions.tolist()]


def ranked_images(dataset, run_id, *, filter: str = "all", threshold: float = 0.5,
                  split: str | None = None) -> Ranking:
    """The dataset's images ranked by the run's score, highest first, optionally filtered.

    The order is by logit, which keeps very confident parts apart where their
    probabilities round to the same value; ties keep ascending image id, so the order is
    stable between calls.

    Args:
        dataset: an opened ``core.dataset.Dataset``.
        run_id: the run's id (or its ``RunRecord``) in this dataset's workspace.
        filter: 'all', 'bad', 'good', 'unlabelled' (by the current label), 'flagged', or
            'disagreements' (labelled images whose label differs from the prediction).
        threshold: score at or above which an image is predicted bad.
        split: None for every split, a split name ('train', 'val', 'test',
            'unlabelled'), or 'validation' for the images the run held out.

    Returns:
        The :class:`Ranking`.

    Raises:
        core.scores.NoScoresError: the run has not scored this dataset.
        ValueError: unknown filter or split.
    """
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {', '.join(FILTERS)}; got {filter!r}")
    run_id = int(getattr(run_id, "id", run_id))
    workspace = dataset.workspace
    image_ids = np.asarray(dataset.image_ids, dtype=np.int64)
    scores = aligned_scores(dataset, run_id)
    logits = aligned_logits(dataset, run_id)
    labels = current_labels(workspace, image_ids)
    flagged = flagged_mask(workspace, image_ids)
    predictions = (scores >= threshold).astype(np.int8)

    selected = filter_mask(filter, labels, predictions, flagged)
    selected &= split_mask(dataset, run_id, split)
    scored = ~np.isnan(scores)
    positions = np.flatnonzero(selected & scored)
    order = np.lexsort((image_ids[positions], -logits[positions]))
    positions = positions[order]
    return Ranking(positions, image_ids[positions], scores[positions], labels[positions],
                   predictions[positions], flagged[positions], float(threshold),
                   int(np.count_nonzero(selected & ~scored)), dataset.relpaths)


def filter_mask(name: str, labels: np.ndarray, predictions: np.ndarray,
                flagged: np.ndarray) -> np.ndarray:
    """Boolean mask of the images one of :data:`FILTERS` keeps (arrays aligned by position).

    Public so the GUI's ranked list, which keeps these arrays in memory, filters exactly
    as :func:`ranked_images` does.
    """
    if name == "all":
        return np.ones(len(labels), dtype=bool)
    if name == "bad":
        return labels == 1
    if name == "good":
        return labels == 0
    if name == "unlabelled":
        return labels == UNLABELLED
    if name == "flagged":
        return flagged.copy()
    return (labels != UNLABELLED) & (labels != predictions)  # disagreements


def split_mask(dataset, run_id: int, split: str | None) -> np.ndarray:
    """Boolean mask (by position) of a split: None/'all', a split name, or 'validation'."""
    n = len(dataset.image_ids)
    if split is None or split == "all":
        return np.ones(n, dtype=bool)
    if split == VALIDATION_SPLIT:
        return np.isin(dataset.image_ids, validation_ids(dataset.workspace, run_id))
    splits = np.asarray(dataset.splits)
    known = sorted(set(splits.tolist()) | {"train", "val", "test", "unlabelled"})
    if split not in known:
        raise ValueError(f"split must be one of {', '.join(known + [VALIDATION_SPLIT])}; "
                         f"got {split!r}")
    return splits == split
