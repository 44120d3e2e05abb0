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
from core.score_store import aligned_logits, aligned_scores

FILTER_TITLES = {"all": "All images", "bad": "Labelled bad", "good": "Labelled good",
                 "unlabelled": "Unlabelled", "flagged": "Flagged",
                 "disagreements": "Disagreements"}
"""The image filters and what every view calls them."""
FILTERS = tuple(FILTER_TITLES)
ALL_SPLITS = ("all", "All splits")
"""The split-filter choice that keeps every split: (value, title)."""
VALIDATION_SPLIT = "validation"
"""Split name meaning "the images the run held out for validation" (not a folder split)."""

SPLIT_NAMES = {"train": "Train", "val": "Val folder", "test": "Test",
               "unlabelled": "Unlabelled", VALIDATION_SPLIT: "Held out by the run"}
"""What every view calls a split. The layout's ``val`` folder and the images a run held out
of ``train`` for validation are different sets, so they never share a name."""
FOLDER_SPLITS = ("train", "val", "test", "unlabelled")


class RankedImage(NamedTuple):
    """One row of a ranking.

    Attributes:
        position: index into the dataset's per-image arrays.
        image_id: the image's id (its row in the image cache).
        relpath: path relative to the dataset root.
        score: defect probability from the run.
        label: 1 bad, 0 good, -1 unlabelled (user relabels applied).
        prediction: 1 when score >= threshold, else 0 (see :func:`predictions`).
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
        core.score_store.NoScoresError: the run has not scored this dataset.
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
    called = predictions(scores, threshold)

    selected = filter_mask(filter, labels, called, flagged)
    selected &= split_mask(dataset, run_id, split)
    ranked = rank_order(logits, image_ids)
    positions = ranked[selected[ranked]]
    unscored = int(np.count_nonzero(selected & np.isnan(scores)))
    return Ranking(positions, image_ids[positions], scores[positions], labels[positions],
                   called[positions], flagged[positions], float(threshold), unscored,
                   dataset.relpaths)


def predictions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The run's call per image: 1 where ``score >= threshold`` (bad), 0 good, -1 unscored.

    The one definition every view, the export and the CLI use.
    """
    scores = np.asarray(scores, dtype=np.float64)
    called = (np.nan_to_num(scores, nan=-np.inf) >= threshold).astype(np.int8)
    called[np.isnan(scores)] = -1
    return called


def rank_order(logits: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    """Positions of the scored images, highest logit first; ties by ascending image id.

    By logit, not probability: very confident parts' probabilities round to the same value.
    Unscored (NaN) images are left out.
    """
    logits = np.asarray(logits, dtype=np.float64)
    scored = np.flatnonzero(~np.isnan(logits))
    return scored[np.lexsort((np.asarray(image_ids)[scored], -logits[scored]))]


def filter_positions(dataset, labels: np.ndarray, kind: str = "all", split: str = "all",
                     run_id: int | None = None) -> np.ndarray:
    """Positions (ascending) of the images a label filter and a split keep, scored or not.

    What the thumbnail grid shows: ``labels`` are the current labels (user relabels
    applied), ``kind`` one of all/bad/good/unlabelled, ``split`` as in :func:`split_mask`.
    """
    if kind not in ("all", "bad", "good", "unlabelled"):
        raise ValueError(f"a label filter is all, bad, good or unlabelled; got {kind!r}")
    no_flags = np.zeros(len(labels), dtype=bool)
    keep = filter_mask(kind, labels, np.full(len(labels), -1, np.int8), no_flags)
    keep &= split_mask(dataset, run_id or 0, split)
    return np.flatnonzero(keep)


def filter_counts(labels: np.ndarray, predictions: np.ndarray, flagged: np.ndarray,
                  within: np.ndarray) -> dict[str, int]:
    """How many images of the boolean mask ``within`` each of :data:`FILTERS` keeps."""
    return {name: int(np.count_nonzero(filter_mask(name, labels, predictions, flagged)
                                       & within)) for name in FILTERS}


def split_label(split: str) -> str:
    """The name a view shows for a split (:data:`SPLIT_NAMES`; 'lot 7' becomes 'Lot 7')."""
    return SPLIT_NAMES.get(split, split[:1].upper() + split[1:])


def split_text(split: str, held_out_by: int | None = None) -> str:
    """"split Train"; for an image a run held out of training "split Train · held out by
    run 3" (it did not train on it, whatever its folder)."""
    text = f"split {split_label(split)}"
    return text if held_out_by is None else f"{text} · held out by run {held_out_by}"


def split_choices(dataset, *, held_out: bool = False) -> list[tuple[str, str]]:
    """(key, name) of the splits to offer as a filter: the folder splits, then the
    dataset's others (new lots), then with ``held_out`` the run's held-out images."""
    others = [] if dataset is None else sorted(
        set(np.unique(np.asarray(dataset.splits)).tolist()) - set(FOLDER_SPLITS))
    keys = [*FOLDER_SPLITS, *others] + ([VALIDATION_SPLIT] if held_out else [])
    return [(key, split_label(key)) for key in keys]


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
    known = sorted(set(splits.tolist()) | set(FOLDER_SPLITS))
    if split not in known:
        raise ValueError(f"split must be one of {', '.join(known + [VALIDATION_SPLIT])}; "
                         f"got {split!r}")
    return splits == split
