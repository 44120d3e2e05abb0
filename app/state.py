"""The Qt face of the session every view shares.

The session itself — dataset, current image, run and scores, threshold, flags and labels,
selection, undo, and every rule about them — is :class:`core.session.Session`, plain
Python that the command line uses too. :class:`AppState` wraps one and re-emits its events
as Qt signals, so widgets connect the Qt way (queued across threads, disconnected when a
widget is deleted). Views never talk to each other: they take the AppState in ``__init__``,
connect to its signals (handlers named ``_on_<thing>_change``) and call its methods.

Flags and labels are written to the workspace the moment they change (core.annotations):
there is no Save button to forget, and a crash loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from core.session import DEFAULT_THRESHOLD, Session

if TYPE_CHECKING:
    from core.dataset import Dataset
    from core.runs import RunRecord

__all__ = ["DEFAULT_THRESHOLD", "AppState"]

SAVE_THRESHOLD_AFTER_MS = 400  # after the last slider step: one workspace write, not 100

_EVENTS = ("dataset_changed", "current_image_changed", "runs_changed", "current_run_changed",
           "threshold_changed", "annotations_changed", "selection_changed",
           "list_filter_requested", "browse_order_changed", "heatmap_method_changed")


class AppState(QObject):
    """Qt signals over a :class:`core.session.Session` (see there for what each means).

    Signals:
        dataset_changed: a different dataset was opened (or the open one grew by a lot).
        current_image_changed(int): the current image's position, ``-1`` for none.
        runs_changed: a run was added or changed (training progress, scoring finished).
        current_run_changed: another run became current, or its scores were reloaded.
        threshold_changed(float): the decision threshold every view shares.
        annotations_changed(object): positions (int64 array) whose flag or label changed.
        selection_changed(object): the selected positions (int64 array).
        list_filter_requested(object): positions a view asks the ranked list to show.
        browse_order_changed: the list that previous/next steps through changed.
        heatmap_method_changed: another heatmap method was chosen.
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

    def __init__(self, parent: QObject | None = None, session: Session | None = None) -> None:
        super().__init__(parent)
        self.session = session if session is not None else Session()
        for name in _EVENTS:
            getattr(self.session, name).connect(self._relay(getattr(self, name)))
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_THRESHOLD_AFTER_MS)
        self._save_timer.timeout.connect(self.session.save_threshold)
        self.threshold_changed.connect(lambda _value: self._save_timer.start())

    @staticmethod
    def _relay(qt_signal):
        def emit(*args) -> None:
            qt_signal.emit(*args)
        return emit

    # -- what the session holds --------------------------------------------------------
    @property
    def dataset(self) -> Dataset | None:
        """The open dataset, or None before the first folder is opened."""
        return self.session.dataset

    @property
    def current_image(self) -> int:
        """Position (0..n-1) of the image the user is looking at, -1 for none."""
        return self.session.current_image

    @property
    def current_run(self) -> RunRecord | None:
        """The run every view shows (scores, ranking, activation space), or None."""
        return self.session.current_run

    @property
    def scores(self) -> np.ndarray | None:
        return self.session.scores

    @property
    def logits(self) -> np.ndarray | None:
        return self.session.logits

    @property
    def threshold(self) -> float:
        return self.session.threshold

    @property
    def labels(self) -> np.ndarray:
        """Labels by position as they stand now: 1 bad, 0 good, -1 unlabelled."""
        return self.session.labels

    @property
    def flagged(self) -> np.ndarray:
        return self.session.flagged

    @property
    def selection(self) -> np.ndarray:
        return self.session.selection

    @property
    def browse_order(self) -> np.ndarray | None:
        return self.session.browse_order

    @property
    def can_undo(self) -> bool:
        return self.session.can_undo

    # -- changing it (the session's rules apply) ------------------------------------------
    def set_dataset(self, dataset: Dataset | None) -> None:
        self.session.set_dataset(dataset)

    def open_dataset(self, dataset: Dataset) -> None:
        self.session.open_dataset(dataset)

    def replace_dataset(self, dataset: Dataset) -> None:
        self.session.replace_dataset(dataset)

    def set_current_image(self, position: int) -> None:
        self.session.set_current_image(position)

    def set_current_run(self, run: RunRecord | None) -> None:
        self.session.set_current_run(run)

    def offer_trained_run(self, run: RunRecord) -> bool:
        return self.session.offer_trained_run(run)

    def reload_scores(self) -> None:
        self.session.reload_scores()

    def notify_runs_changed(self) -> None:
        self.session.notify_runs_changed()

    def predictions(self) -> np.ndarray | None:
        return self.session.predictions()

    def held_out(self) -> np.ndarray:
        return self.session.held_out()

    def split_text(self, position: int) -> str:
        return self.session.split_text(position)

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        return self.session.counts_by_split()

    def label_counts(self) -> dict[str, int]:
        return self.session.label_counts()

    def set_threshold(self, value: float) -> None:
        self.session.set_threshold(value)

    @property
    def heatmap_method(self) -> str | None:
        """The method the current run's heatmaps are shown with (viewer, list, previews)."""
        return self.session.heatmap_method

    def set_heatmap_choice(self, method: str | None) -> None:
        """A method for every heatmap view; None for each run's default."""
        self.session.set_heatmap_choice(method)

    def save_threshold(self) -> None:
        """Write the chosen threshold now (on quitting; otherwise it is written shortly
        after the last change)."""
        self._save_timer.stop()
        self.session.save_threshold()

    def set_flagged(self, positions, flagged: bool) -> None:
        self.session.set_flagged(positions, flagged)

    def toggle_flag(self, position: int) -> None:
        self.session.toggle_flag(position)

    def set_label(self, positions, label: int | None) -> None:
        self.session.set_label(positions, label)

    def undo(self) -> str | None:
        return self.session.undo()

    def set_selection(self, positions) -> None:
        self.session.set_selection(positions)

    def clear_selection(self) -> None:
        self.session.clear_selection()

    def request_list_filter(self, positions) -> None:
        self.session.request_list_filter(positions)

    def set_browse_order(self, positions) -> None:
        self.session.set_browse_order(positions)
