"""The one observable state every view shares.

Views never talk to each other: they take the :class:`AppState` in ``__init__``, connect to
its signals (handlers named ``_on_<thing>_change``) and call its setters. Every piece of
state a view may follow lives here — the dataset, the current image, the current run and its
scores, the decision threshold, the user's flags and labels — so each view can follow it
without knowing who changed it.

Flags and labels are written to the workspace the moment they change (core.annotations):
there is no Save button to forget, and a crash loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from core import annotations
from core.scores import NoScoresError, aligned_logits, aligned_scores

if TYPE_CHECKING:
    from core.dataset import Dataset
    from core.runs import RunRecord

DEFAULT_THRESHOLD = 0.5


class AppState(QObject):
    """The current dataset, image, run, scores, threshold and annotations.

    Signals:
        dataset_changed: a different dataset was opened (or the dataset was closed).
            The current image is reset to ``-1`` and the current run to none right after.
        current_image_changed(int): the current image's position, ``-1`` for none.
        runs_changed: a run was added or changed (training progress, scoring finished).
        current_run_changed: another run became current, or its scores were reloaded.
        threshold_changed(float): the decision threshold every view shares.
        annotations_changed(object): positions (int64 array) whose flag or label changed.
        list_filter_requested(object): positions a view asks the ranked list to show.
        browse_order_changed: the list that previous/next steps through changed.
    """

    dataset_changed = Signal()
    current_image_changed = Signal(int)
    runs_changed = Signal()
    current_run_changed = Signal()
    threshold_changed = Signal(float)
    annotations_changed = Signal(object)
    list_filter_requested = Signal(object)
    browse_order_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._dataset: Dataset | None = None
        self._current_image = -1
        self._run: RunRecord | None = None
        self._scores: np.ndarray | None = None
        self._logits: np.ndarray | None = None
        self._threshold = DEFAULT_THRESHOLD
        self._labels = np.zeros(0, dtype=np.int8)
        self._flagged = np.zeros(0, dtype=bool)
        self._browse_order: np.ndarray | None = None

    # -- dataset and image ---------------------------------------------------------
    @property
    def dataset(self) -> Dataset | None:
        """The open dataset, or None before the first folder is opened."""
        return self._dataset

    @property
    def current_image(self) -> int:
        """Position (0..n-1) of the image the user is looking at, -1 for none."""
        return self._current_image

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Replace the open dataset; the current image and run go back to none."""
        self._dataset = dataset
        self._current_image = -1
        self._run, self._scores, self._logits = None, None, None
        self._browse_order = None
        self._load_annotations()
        self.dataset_changed.emit()
        self.current_image_changed.emit(-1)
        self.current_run_changed.emit()

    def set_current_image(self, position: int) -> None:
        """Make the image at ``position`` current (``-1`` clears it).

        Raises:
            IndexError: position is outside the open dataset.
        """
        position = int(position)
        if position != -1:
            n = 0 if self._dataset is None else len(self._dataset.image_ids)
            if not 0 <= position < n:
                raise IndexError(f"image position {position} is outside 0..{n - 1}")
        if position == self._current_image:
            return
        self._current_image = position
        self.current_image_changed.emit(position)

    # -- run and scores ------------------------------------------------------------
    @property
    def current_run(self) -> RunRecord | None:
        """The run every view shows (scores, ranking, activation space), or None."""
        return self._run

    @property
    def scores(self) -> np.ndarray | None:
        """The current run's defect probabilities (float64) by position (NaN: not scored),
        or None."""
        return self._scores

    @property
    def logits(self) -> np.ndarray | None:
        """The logits behind :attr:`scores` (what ranks: probabilities of very confident
        parts can round to the same value), or None."""
        return self._logits

    def set_current_run(self, run: RunRecord | None) -> None:
        """Make ``run`` current and load its scores (None when it has not scored yet).

        The threshold follows the run's own threshold, as the run was judged with it (for a
        run trained without one: its operating point on the holdout).
        """
        self._run = run
        self._scores, self._logits = self._load_scores(run)
        self.current_run_changed.emit()
        if run is not None and run.threshold is not None:
            self.set_threshold(run.threshold)

    def reload_scores(self) -> None:
        """Re-read the current run's scores (after scoring finished)."""
        self._scores, self._logits = self._load_scores(self._run)
        self.current_run_changed.emit()

    def notify_runs_changed(self) -> None:
        """Tell the views that the list of runs (or a run's record) changed."""
        self.runs_changed.emit()

    def _load_scores(self, run: RunRecord | None
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores, logits) by position; float64, as float32 rounds confident parts to 1."""
        if run is None or self._dataset is None:
            return None, None
        try:
            return (aligned_scores(self._dataset, run.id),
                    aligned_logits(self._dataset, run.id))
        except NoScoresError:
            return None, None

    def predictions(self) -> np.ndarray | None:
        """1 where the current scores call a part defective at the threshold (-1: no score)."""
        if self._scores is None:
            return None
        pred = np.where(self._scores >= self._threshold, 1, 0).astype(np.int8)
        pred[np.isnan(self._scores)] = -1
        return pred

    # -- threshold -----------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """Score at or above which a part is called defective."""
        return self._threshold

    def set_threshold(self, value: float) -> None:
        value = float(min(1.0, max(0.0, value)))
        if value == self._threshold:
            return
        self._threshold = value
        self.threshold_changed.emit(value)

    # -- the user's flags and labels -------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """Labels by position as they stand now: 1 bad, 0 good, -1 unlabelled."""
        return self._labels

    @property
    def flagged(self) -> np.ndarray:
        """True by position where the user flagged the image."""
        return self._flagged

    def set_flagged(self, positions, flagged: bool) -> None:
        """Flag or unflag images; saved to the workspace at once."""
        positions = self._checked_positions(positions)
        if len(positions) == 0:
            return
        annotations.set_flag(self._dataset.workspace, self._dataset.image_ids[positions], flagged)
        self._flagged[positions] = flagged
        self.annotations_changed.emit(positions)

    def toggle_flag(self, position: int) -> None:
        self.set_flagged([position], not bool(self._flagged[position]))

    def set_label(self, positions, label: int | None) -> None:
        """Relabel images (1 bad, 0 good; None: back to the label as found); saved at once."""
        positions = self._checked_positions(positions)
        if len(positions) == 0:
            return
        ids = self._dataset.image_ids[positions]
        annotations.set_user_label(self._dataset.workspace, ids, label)
        self._labels[positions] = annotations.current_labels(self._dataset.workspace, ids)
        self.annotations_changed.emit(positions)

    def request_list_filter(self, positions) -> None:
        """Ask the ranked list to show just these positions (e.g. a lasso selection)."""
        self.list_filter_requested.emit(self._checked_positions(positions))

    # -- the list previous/next steps through ------------------------------------------
    @property
    def browse_order(self) -> np.ndarray | None:
        """Positions in the order of the list the user browses (e.g. the ranked list).

        None when no list claims it; the image viewer then follows the thumbnail grid.
        """
        return self._browse_order

    def set_browse_order(self, positions) -> None:
        """Publish the order previous/next should follow (None: no list claims it).

        Unlike other positions, the order is kept as given (not sorted, not deduplicated).
        """
        if positions is not None:
            # A copy: the caller's array may change later, the published order must not.
            positions = np.array(positions, dtype=np.int64).ravel()
            n = 0 if self._dataset is None else len(self._dataset.image_ids)
            if len(positions) and (positions.min() < 0 or positions.max() >= n):
                raise IndexError(f"image positions must lie in 0..{n - 1}")
        old = self._browse_order
        if old is None and positions is None:
            return
        if old is not None and positions is not None and np.array_equal(old, positions):
            return
        self._browse_order = positions
        self.browse_order_changed.emit()

    def _checked_positions(self, positions) -> np.ndarray:
        if self._dataset is None:
            raise RuntimeError("No dataset is open")
        positions = np.unique(np.asarray(positions, dtype=np.int64).ravel())
        n = len(self._dataset.image_ids)
        if len(positions) and (positions[0] < 0 or positions[-1] >= n):
            raise IndexError(f"image positions must lie in 0..{n - 1}")
        return positions

    def _load_annotations(self) -> None:
        if self._dataset is None:
            self._labels = np.zeros(0, dtype=np.int8)
            self._flagged = np.zeros(0, dtype=bool)
            return
        ws, ids = self._dataset.workspace, self._dataset.image_ids
        self._labels = annotations.current_labels(ws, ids).astype(np.int8)
        self._flagged = annotations.flagged_mask(ws, ids)
