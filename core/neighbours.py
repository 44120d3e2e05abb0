"""The model's reasons by example: the labelled training images nearest to an image.

Nearness is Euclidean distance between the run's embeddings (``core.score_store``, the
penultimate activations the activation-space plots show, and the only input of the run's
last layer), so the neighbours are the images the model itself finds alike. Candidates
are the images the run learnt from: labelled, of the train split, and not held out by the
run (its saved validation ids), with the user's relabels applied.

A :class:`NeighbourIndex` loads the embeddings once and answers each query with one
matrix product (30,000 x 32 floats: well under a millisecond), so the viewer can ask on
every image change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.runs import validation_ids
from core.score_store import aligned_scores, load_embeddings

DEFAULT_K = 8


@dataclass(frozen=True)
class Neighbour:
    """One near training image.

    Attributes:
        position: its position in the dataset (0..n-1).
        image_id: its image id.
        label: 1 bad, 0 good (as labelled now).
        score: the run's defect probability for it (NaN when not scored).
        distance: Euclidean distance between the embeddings.
    """

    position: int
    image_id: int
    label: int
    score: float
    distance: float


class NeighbourIndex:
    """Nearest labelled training images of one run, in its embedding space.

    Args:
        dataset: the open dataset.
        run_id: a run that scored ``dataset`` (its embeddings are stored).
        labels: labels by position as they stand (default: the dataset's, without the
            user's relabels; the app passes its current labels).

    Raises:
        core.score_store.NoScoresError: the run has not scored the dataset.
    """

    def __init__(self, dataset, run_id: int, labels: np.ndarray | None = None) -> None:
        ids, embeddings = load_embeddings(dataset.workspace, run_id)
        positions = dataset.positions(ids)
        present = positions >= 0
        n = len(dataset.image_ids)
        self.dataset, self.run_id = dataset, run_id
        self.labels = np.asarray(dataset.labels if labels is None else labels)
        # Embedding of every position; rows of images the run did not score stay NaN.
        self.embeddings = np.full((n, embeddings.shape[1]), np.nan, dtype=np.float32)
        self.embeddings[positions[present]] = embeddings[present]
        self.scores = aligned_scores(dataset, run_id)
        self.candidates = self._training_positions()
        self._candidate_vectors = self.embeddings[self.candidates]
        self._candidate_norms = (self._candidate_vectors ** 2).sum(axis=1)

    def _training_positions(self) -> np.ndarray:
        held_out = validation_ids(self.dataset.workspace, self.run_id)
        trained = ((np.asarray(self.dataset.splits) == "train") & (self.labels >= 0)
                   & ~np.isin(self.dataset.image_ids, held_out)
                   & ~np.isnan(self.embeddings[:, 0]))
        return np.flatnonzero(trained)

    def nearest(self, position: int, k: int = DEFAULT_K, label: int | None = None
                ) -> list[Neighbour]:
        """The ``k`` training images nearest to image ``position`` (itself excluded).

        Args:
            label: only candidates with this label (0: the good parts, for a golden
                reference).

        Returns:
            Nearest first; empty when the image has no embedding.
        """
        query = self.embeddings[position]
        if np.isnan(query).any():
            return []
        mask = self.candidates != position
        if label is not None:
            mask &= self.labels[self.candidates] == label
        rows = np.flatnonzero(mask)
        # |a - b|^2 = |a|^2 - 2 a.b + |b|^2: one matrix-vector product for all candidates.
        squared = (self._candidate_norms[rows] - 2 * self._candidate_vectors[rows] @ query
                   + float(query @ query))
        order = np.argsort(squared, kind="stable")[:k]
        return [self._neighbour(self.candidates[rows[i]], squared[i]) for i in order]

    def _neighbour(self, position: int, squared: float) -> Neighbour:
        return Neighbour(int(position), int(self.dataset.image_ids[position]),
                         int(self.labels[position]), float(self.scores[position]),
                         float(np.sqrt(max(squared, 0.0))))

