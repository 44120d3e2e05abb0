"""The inspection session: what the user is working on, as plain Python with events.

One :class:`Session` holds the open dataset, the current image, the current run and its
scores, the decision threshold, the user's flags and labels, the selection and the list
that previous/next steps through. Every rule about them lives here — the threshold clamp,
the predictions, position checks, writing flags and labels to the workspace at once,
undo, which run becomes current — so the GUI (``app.state.AppState`` is a thin Qt adapter
over a Session) and the command line (``diesight flag`` / ``label`` / ``export``) follow
the same rules. Views subscribe to the events (psygnal, as napari's models do) and write
back through the methods; none of them keeps its own copy of labels or flags.

Per run, the threshold the user last chose is stored in the workspace, so a reopened
window and a later ``diesight export`` use it rather than 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from psygnal import Signal

from core import annotations
from core.explain_methods import check_method, default_method
from core.folder_layout import count_by_split
from core.ranking import predictions as predictions_at
from core.ranking import split_text
from core.runs import RunNotFound, get_run, list_runs, validation_ids
from core.score_store import NoScoresError, aligned_logits, aligned_scores, has_scores

if TYPE_CHECKING:
    from core.dataset import Dataset
    from core.runs import RunRecord
    from core.workspace import Workspace

DEFAULT_THRESHOLD = 0.5
UNDO_DEPTH = 200
_CURRENT_RUN_KEY = "session.current_run"
_USABLE_STATUSES = ("finished", "imported")


def _threshold_key(run_id: int) -> str:
    return f"session.threshold.run.{int(run_id)}"


def saved_threshold(workspace: Workspace, run: RunRecord) -> float:
    """The threshold to judge ``run`` at: the one the user last chose for it, else the
    run's own (its operating point), else 0.5."""
    saved = workspace.get_meta(_threshold_key(run.id))
    if saved is not None:
        return float(saved)
    return float(run.threshold) if run.threshold is not None else DEFAULT_THRESHOLD


def run_to_show(workspace: Workspace) -> RunRecord | None:
    """The run a reopened dataset shows: the one the user last made current (if it still
    has scores), else the newest finished run with scores; a cancelled or failed run only
    ever when the user picked it."""
    remembered = workspace.get_meta(_CURRENT_RUN_KEY)
    if remembered is not None:
        try:
            run = get_run(workspace, int(remembered))
            if has_scores(workspace, run.id):
                return run
        except (RunNotFound, ValueError):
            pass
    for run in reversed(list_runs(workspace)):
        if run.status in _USABLE_STATUSES and has_scores(workspace, run.id):
            return run
    return None


@dataclass
class _Change:
    """One undoable change: the images and what their flag or user label was before."""

    kind: str              # 'flag' or 'label'
    image_ids: np.ndarray  # int64
    before: list           # per image: bool (flag) or 0 / 1 / None (user label)


class Session:
    """The dataset, image, run, scores, threshold, annotations and selection being worked on.

    Events (psygnal signals; connect with ``session.<event>.connect(callback)``):
        dataset_changed: another dataset (or the same one grown by a lot) is open.
        current_image_changed(int): the current image's position, ``-1`` for none.
        runs_changed: a run was added or changed.
        current_run_changed: another run became current, or its scores were reloaded.
        threshold_changed(float): the decision threshold.
        annotations_changed(object): positions (int64) whose flag or label changed.
        selection_changed(object): the selected positions (int64, ascending).
        list_filter_requested(object): positions a view asks the ranked list to show.
        browse_order_changed: the list previous/next steps through changed.
        heatmap_method_changed: another heatmap method was chosen (viewer, thumbnails and
            previews all show the same one).
    """

    dataset_changed = Signal()
    current_image_changed = Signal(int)
    runs_changed = Signal()
    current_run_changed = Signal()
    threshold_changed = Signal(float)
    annotations_changed = Signal(object)
    selection_changed = Signal(object)
    list_filter_requested = Signal(object)
    browse_order_changed = Signal()
    heatmap_method_changed = Signal()

    def __init__(self, dataset: Dataset | None = None) -> None:
        self._dataset: Dataset | None = None
        self._current_image = -1
        self._run: RunRecord | None = None
        self._scores: np.ndarray | None = None
        self._logits: np.ndarray | None = None
        self._held_out: np.ndarray | None = None
        self._predictions: np.ndarray | None = None  # cached: views read it per painted cell
        self._threshold = DEFAULT_THRESHOLD
        self._unsaved_threshold: tuple[int, float] | None = None  # (run id, value)
        self._labels = np.zeros(0, dtype=np.int8)
        self._flagged = np.zeros(0, dtype=bool)
        self._selection = np.zeros(0, dtype=np.int64)
        self._browse_order: np.ndarray | None = None
        self._undo: list[_Change] = []
        self._heatmap_choice: str | None = None  # None: the current run's default
        if dataset is not None:
            self.set_dataset(dataset)

    # -- dataset and image ---------------------------------------------------------
    @property
    def dataset(self) -> Dataset | None:
        return self._dataset

    @property
    def current_image(self) -> int:
        """Position (0..n-1) of the image the user is looking at, -1 for none."""
        return self._current_image

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Replace the open dataset; the image, run, selection and undo go back to none."""
        self.save_threshold()
        self._dataset = dataset
        self._current_image = -1
        self._run, self._scores, self._logits, self._held_out = None, None, None, None
        self._predictions = None
        self._browse_order = None
        self._selection = np.zeros(0, dtype=np.int64)
        self._undo.clear()
        self._load_annotations()
        self.dataset_changed.emit()
        self.current_image_changed.emit(-1)
        self.selection_changed.emit(self._selection)
        self.current_run_changed.emit()

    def open_dataset(self, dataset: Dataset) -> None:
        """Open a dataset where the user left it: its remembered run and that run's
        threshold (see :func:`run_to_show`)."""
        self.set_dataset(dataset)
        run = run_to_show(dataset.workspace)
        if run is not None:
            self.set_current_run(run)

    def replace_dataset(self, dataset: Dataset) -> None:
        """Switch to a new version of the open dataset (e.g. grown by a scored lot).

        The run, threshold, current image and selection stay, remapped by image id;
        images that are gone drop out of the selection.
        """
        old = self._dataset
        if old is None:
            self.open_dataset(dataset)
            return
        current_id = (int(old.image_ids[self._current_image])
                      if self._current_image >= 0 else None)
        selected_ids = old.image_ids[self._selection]
        self.save_threshold()
        run, threshold = self._run, self._threshold
        self._dataset = dataset
        self._browse_order = None
        self._load_annotations()
        self._current_image = -1
        if current_id is not None:
            self._current_image = max(-1, int(dataset.positions([current_id])[0]))
        remapped = dataset.positions(selected_ids)
        self._selection = np.sort(remapped[remapped >= 0])
        self._run = None if run is None else get_run(dataset.workspace, run.id)
        self._load_scores()
        self._threshold = threshold
        self.dataset_changed.emit()
        self.current_image_changed.emit(self._current_image)
        self.selection_changed.emit(self._selection)
        self.current_run_changed.emit()

    def set_current_image(self, position: int) -> None:
        """Make the image at ``position`` current (``-1`` clears it).

        Raises:
            IndexError: position is outside the open dataset.
        """
        position = int(position)
        if position != -1:
            n = self._size()
            if not 0 <= position < n:
                raise IndexError(f"image position {position} is outside 0..{n - 1}")
        if position == self._current_image:
            return
        self._current_image = position
        self.current_image_changed.emit(position)

    # -- run and scores ------------------------------------------------------------
    @property
    def current_run(self) -> RunRecord | None:
        return self._run

    @property
    def scores(self) -> np.ndarray | None:
        """The current run's defect probabilities by position (NaN: not scored), or None."""
        return self._scores

    @property
    def logits(self) -> np.ndarray | None:
        """The logits behind :attr:`scores` (what ranks), or None."""
        return self._logits

    def set_current_run(self, run: RunRecord | None) -> None:
        """Make ``run`` current (the user picked it) and load its scores.

        The threshold becomes the one the user last chose for this run, else the run's
        own (:func:`saved_threshold`). The choice is remembered for the next opening.
        """
        self.save_threshold()
        self._run = run
        self._load_scores()
        if run is not None and self._dataset is not None:
            self._dataset.workspace.set_meta(_CURRENT_RUN_KEY, str(run.id))
        self.current_run_changed.emit()
        if run is not None and self._dataset is not None:
            self._set_threshold(saved_threshold(self._dataset.workspace, run), save=False)

    def offer_trained_run(self, run: RunRecord) -> bool:
        """A training just ended with ``run``: it becomes current only if it finished.

        A cancelled or diverged run stays in the run list for the user to pick; the
        current run and its scores stay as they were. Returns True when it became current.
        """
        if run.status != "finished":
            self.runs_changed.emit()
            return False
        self.set_current_run(run)
        return True

    def reload_scores(self) -> None:
        """Re-read the current run's scores (after scoring finished)."""
        self._load_scores()
        self.current_run_changed.emit()

    def notify_runs_changed(self) -> None:
        self.runs_changed.emit()

    def predictions(self) -> np.ndarray | None:
        """The current run's call by position at the threshold (1 bad, 0 good, -1 unscored).

        Shared and cached until the scores or the threshold change: do not modify it.
        """
        if self._scores is None:
            return None
        if self._predictions is None:
            self._predictions = predictions_at(self._scores, self._threshold)
        return self._predictions

    def held_out(self) -> np.ndarray:
        """True by position for the images the current run held out of training."""
        if self._held_out is None:
            n = self._size()
            if self._run is None or self._dataset is None:
                self._held_out = np.zeros(n, dtype=bool)
            else:
                self._held_out = np.isin(self._dataset.image_ids,
                                         validation_ids(self._dataset.workspace, self._run.id))
        return self._held_out

    def split_text(self, position: int) -> str:
        """The image's split as every view words it ("split Train · held out by run 3")."""
        held = self._run is not None and bool(self.held_out()[position])
        return split_text(str(self._dataset.splits[position]), self._run.id if held else None)

    def _load_scores(self) -> None:
        self._scores, self._logits, self._held_out = None, None, None
        self._predictions = None
        if self._run is None or self._dataset is None:
            return
        try:
            self._scores = aligned_scores(self._dataset, self._run.id)
            self._logits = aligned_logits(self._dataset, self._run.id)
        except NoScoresError:
            self._scores, self._logits = None, None

    # -- heatmap method ------------------------------------------------------------
    @property
    def heatmap_choice(self) -> str | None:
        """The heatmap method the user chose; None for each run's own default."""
        return self._heatmap_choice

    @property
    def heatmap_method(self) -> str | None:
        """The method heatmaps of the current run are shown with (None without a run)."""
        if self._run is None:
            return None
        return self._heatmap_choice or default_method(self._run)

    def set_heatmap_choice(self, method: str | None) -> None:
        """Show heatmaps with ``method`` (one of core.explain_methods.METHODS), or with
        each run's default for None."""
        method = None if method is None else check_method(method)
        if method != self._heatmap_choice:
            self._heatmap_choice = method
            self.heatmap_method_changed.emit()

    # -- threshold -----------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """Score at or above which a part is called defective."""
        return self._threshold

    def set_threshold(self, value: float) -> None:
        """Set the threshold (clamped to 0..1), to be saved for the current run.

        It is written by :meth:`save_threshold`, which the session calls itself before the
        run or dataset changes; a GUI calls it shortly after the user stops moving the
        slider (a workspace write takes ~30 ms, too slow for every slider step).
        """
        self._set_threshold(value, save=True)

    def save_threshold(self) -> None:
        """Write the threshold chosen for the current run, if it has not been written."""
        if self._unsaved_threshold is not None and self._dataset is not None:
            run_id, value = self._unsaved_threshold
            self._dataset.workspace.set_meta(_threshold_key(run_id), repr(value))
        self._unsaved_threshold = None

    def _set_threshold(self, value: float, *, save: bool) -> None:
        value = float(min(1.0, max(0.0, value)))
        if value == self._threshold:
            return
        self._threshold = value
        self._predictions = None
        if save and self._run is not None:
            self._unsaved_threshold = (self._run.id, value)
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

    def label_counts(self) -> dict[str, int]:
        """How many images are bad, good and unlabelled now (relabels included)."""
        labels = self._labels
        return {"bad": int(np.count_nonzero(labels == 1)),
                "good": int(np.count_nonzero(labels == 0)),
                "unlabelled": int(np.count_nonzero(labels == annotations.UNLABELLED))}

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        """{split: {'good': n, 'bad': n, 'unlabelled': n}} by the labels as they stand now."""
        return {} if self._dataset is None else count_by_split(self._labels,
                                                                self._dataset.splits)

    def set_flagged(self, positions, flagged: bool) -> None:
        """Flag or unflag images; saved to the workspace at once, undoable."""
        positions = self._checked_positions(positions)
        if len(positions) == 0:
            return
        ids = self._dataset.image_ids[positions]
        before = self._flagged[positions].tolist()
        annotations.set_flag(self._dataset.workspace, ids, flagged)
        self._remember(_Change("flag", ids, before))
        self._flagged[positions] = flagged
        self.annotations_changed.emit(positions)

    def toggle_flag(self, position: int) -> None:
        self.set_flagged([position], not bool(self._flagged[position]))

    def set_label(self, positions, label: int | None) -> None:
        """Relabel images (1 bad, 0 good; None: back to the label as found); saved at
        once, undoable."""
        positions = self._checked_positions(positions)
        if len(positions) == 0:
            return
        ids = self._dataset.image_ids[positions]
        relabels = annotations.user_labels(self._dataset.workspace)
        before = [relabels.get(int(i)) for i in ids.tolist()]
        annotations.set_user_label(self._dataset.workspace, ids, label)
        self._remember(_Change("label", ids, before))
        self._refresh_labels(positions)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> str | None:
        """Take back the last flag or label change; returns what was undone, or None."""
        if not self._undo or self._dataset is None:
            return None
        change = self._undo.pop()
        workspace = self._dataset.workspace
        groups: dict = {}  # one change holds one kind of value: bools, or 0 / 1 / None
        for image_id, value in zip(change.image_ids.tolist(), change.before, strict=True):
            groups.setdefault(value, []).append(image_id)
        for value, ids in groups.items():
            if change.kind == "flag":
                annotations.set_flag(workspace, ids, bool(value))
            else:
                annotations.set_user_label(workspace, ids, value)
        positions = self._dataset.positions(change.image_ids)
        positions = positions[positions >= 0]
        if change.kind == "flag":  # in place: views may hold the array
            ids = self._dataset.image_ids[positions]
            self._flagged[positions] = annotations.flagged_mask(workspace, ids)
            self.annotations_changed.emit(positions)
        else:
            self._refresh_labels(positions)
        noun = "flag" if change.kind == "flag" else "label"
        count = len(change.image_ids)
        return f"Undid the {noun} of {count:,} image{'' if count == 1 else 's'}"

    def _remember(self, change: _Change) -> None:
        self._undo.append(change)
        del self._undo[:-UNDO_DEPTH]

    def _refresh_labels(self, positions: np.ndarray) -> None:
        ids = self._dataset.image_ids[positions]
        self._labels[positions] = annotations.current_labels(self._dataset.workspace, ids)
        self.annotations_changed.emit(positions)

    # -- selection and lists ---------------------------------------------------------
    @property
    def selection(self) -> np.ndarray:
        """Positions the user selected (e.g. a lasso in the activation space), ascending."""
        return self._selection

    def set_selection(self, positions) -> None:
        positions = self._checked_positions(positions) if self._dataset is not None \
            else np.zeros(0, dtype=np.int64)
        if np.array_equal(positions, self._selection):
            return
        self._selection = positions
        self.selection_changed.emit(positions)

    def clear_selection(self) -> None:
        self.set_selection([])

    def request_list_filter(self, positions) -> None:
        """Ask the ranked list to show just these positions (e.g. a lasso selection)."""
        self.list_filter_requested.emit(self._checked_positions(positions))

    @property
    def browse_order(self) -> np.ndarray | None:
        """Positions, in order, of the list on screen that previous/next steps through
        (None: no list published one)."""
        return self._browse_order

    def set_browse_order(self, positions) -> None:
        """Publish the order previous/next follows (kept as given: not sorted)."""
        if positions is not None:
            positions = np.array(positions, dtype=np.int64).ravel()
            n = self._size()
            if len(positions) and (positions.min() < 0 or positions.max() >= n):
                raise IndexError(f"image positions must lie in 0..{n - 1}")
        old = self._browse_order
        if old is None and positions is None:
            return
        if old is not None and positions is not None and np.array_equal(old, positions):
            return
        self._browse_order = positions
        self.browse_order_changed.emit()

    # -- helpers ---------------------------------------------------------------------
    def _size(self) -> int:
        return 0 if self._dataset is None else len(self._dataset.image_ids)

    def _checked_positions(self, positions) -> np.ndarray:
        if self._dataset is None:
            raise RuntimeError("No dataset is open")
        positions = np.unique(np.asarray(positions, dtype=np.int64).ravel())
        n = self._size()
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
