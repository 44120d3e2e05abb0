"""The "Activation space" tab: the current run's embeddings as a PCA / t-SNE map.

This is the glue between :class:`app.state.AppState` and the finished widget
:class:`app.scatter_view.ActivationScatter` (+ its :class:`MapController`):

* When the current run changes (or it is re-scored), its embeddings are read on a worker
  (``core.score_store.load_embeddings``; 30,000 x 2,048 floats for a ResNet-50 run is 245 MB) and
  handed to the controller, which shows PCA at once or computes t-SNE on a worker. That
  happens when the tab is visible (or next shown), never for a hidden tab. Without a
  dataset, a run, or the run's scores, the tab says what to do instead.
* Colours come from the state's arrays (labels, scores, predictions at the shared threshold,
  flags) and the dataset's splits, indexed by the points' positions: one numpy take per
  colouring, so recolouring 30,000 points on a threshold change costs milliseconds and never
  recomputes the map.
* A clicked point becomes the current image (the viewer and the ranked list follow); the
  current image is ringed on the map. The selection's actions flag, label, or show the
  images in the ranked list through the state.

Image ids are mapped to dataset positions once per run (``Dataset.positions``, a
searchsorted); nothing in here loops over points in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLabel, QStackedWidget, QTabWidget, QVBoxLayout, QWidget

from app.hover_preview import HoverPreview
from app.map_controller import MapController
from app.scatter_view import COLOR_MODES, ActivationScatter
from app.state import AppState
from app.workers import Task, TaskOwner, error_message
from core.activation_maps import MapCache, TSNESettings
from core.ranking import VALIDATION_SPLIT
from core.runs import validation_ids
from core.score_store import EMBEDDINGS_FILE, NoScoresError, load_embeddings

NO_RUN_MESSAGE = ("Train a run or select one in the Training tab; a run shows here once it "
                  "has scored the dataset.")
NO_DATASET_MESSAGE = "Open a folder of part images to begin.\n" + NO_RUN_MESSAGE
RANKED_TAB_TITLE = "ranked"  # the tab "Show in list" switches to (matched case-insensitively)


@dataclass(frozen=True)
class RunPoints:
    """One run's embeddings, restricted to the images present and aligned with them.

    Attributes:
        positions: int64 (n,) dataset positions of the points (ascending image id).
        image_ids: int64 (n,) their image ids.
        embeddings: float32 (n, D).
        names: (n,) file names for the hover label.
        splits: (n,) str: the dataset's split, with the run's held-out images as
            'validation'
            and the images of new lots ('lot <name>') as 'lot'.
    """

    positions: np.ndarray
    image_ids: np.ndarray
    embeddings: np.ndarray
    names: list[str]
    splits: np.ndarray


def load_run_points(dataset, run_id: int, *, progress=None, cancel=None) -> RunPoints:
    """Read a run's embeddings and align them with the dataset (a worker job).

    Embeddings of images that are no longer in the folder are dropped.

    Raises:
        NoScoresError: the run has not scored this dataset.
        ValueError: the stored embeddings are inconsistent, or none is of a present image.
    """
    ids, embeddings = load_embeddings(dataset.workspace, run_id)
    positions = dataset.positions(ids)
    present = positions >= 0
    if not present.any():
        raise NoScoresError(f"None of the images run {run_id} scored is in this folder any "
                            "more; score the run again.")
    if not present.all():
        ids, embeddings, positions = ids[present], embeddings[present], positions[present]
    splits = np.asarray(dataset.splits)[positions].astype(object)
    splits[np.char.startswith(splits.astype(str), "lot ")] = "lot"  # all new lots: one colour
    # The trainer picks the validation images per run, so the layout's 'train' split holds
    # both; marking them shows whether the map separates images it never trained on.
    held_out = np.isin(ids, validation_ids(dataset.workspace, run_id))
    splits[(splits == "train") & held_out] = VALIDATION_SPLIT
    names = np.asarray(dataset.names, dtype=object)[positions].tolist()
    return RunPoints(positions, ids, embeddings, names, splits)


def _embeddings_stamp(dataset, run_id: int) -> tuple:
    """Changes whenever the run's embeddings file is rewritten (the run was re-scored)."""
    path = Path(dataset.workspace.path) / "runs" / str(run_id) / EMBEDDINGS_FILE
    try:
        stat = path.stat()
    except OSError:
        return (None,)
    return (stat.st_mtime_ns, stat.st_size)


class ActivationTab(QWidget):
    """The current run's activation space, following and driving the shared state.

    Args:
        state: the shared state.
        tsne_settings: how t-SNE runs (fewer iterations in tests).
        track: called with every task started here (the main window's status corner, so
            the task shows there and Esc cancels it).

    Signals:
        status(str): a line for the status bar.
        failed(str): a message for the user (a map could not be computed).
    """

    status = Signal(str)
    failed = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None, *,
                 tsne_settings: TSNESettings | None = None,
                 track: Callable[[Task], None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("activationTab")
        self.state = state
        self._points: RunPoints | None = None
        self._loaded_dataset = None  # the dataset and key (run id, embeddings file stamp)
        self._loaded_key: tuple | None = None  # of the points shown or being loaded
        self.loading = TaskOwner(self, track=track)  # the run's points being read
        self._reload_when_shown = False
        self.scatter = ActivationScatter()
        self.controller = MapController(self.scatter, tsne_settings, parent=self,
                                               track=track)
        # The hovered point's image and heatmap, over the plot's corner.
        self.hover_preview = HoverPreview(state, self.scatter.plot_widget)
        self.message = QLabel(NO_DATASET_MESSAGE, objectName="activationMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        # The ranked list's empty-state look, so the two tabs read alike without a run.
        self.message.setStyleSheet("color: #6b7685; font-size: 11pt; padding: 24px;")
        self.pages = QStackedWidget()
        self.pages.addWidget(self.message)
        self.pages.addWidget(self.scatter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)
        self._connect()
        self._on_run_change()
        self._on_current_image_change(state.current_image)

    def _connect(self) -> None:
        state, scatter = self.state, self.scatter
        state.current_run_changed.connect(self._on_run_change)
        state.threshold_changed.connect(self._on_threshold_change)
        state.annotations_changed.connect(self._on_annotations_change)
        state.current_image_changed.connect(self._on_current_image_change)
        state.selection_changed.connect(self._on_selection_change)
        scatter.selection_changed.connect(self._on_scatter_selection_change)
        scatter.coloring_requested.connect(self._on_coloring_request)
        scatter.point_clicked.connect(self._on_point_click)
        scatter.point_hovered.connect(self.hover_preview.show_image)
        scatter.flag_requested.connect(lambda ids: self._flag(ids, True))
        scatter.unflag_requested.connect(lambda ids: self._flag(ids, False))
        scatter.label_bad_requested.connect(lambda ids: self._label(ids, 1))
        scatter.label_good_requested.connect(lambda ids: self._label(ids, 0))
        scatter.show_in_list_requested.connect(self.show_in_list)
        self.controller.status.connect(self.status)
        self.controller.failed.connect(self.failed)

    # -- what is shown -------------------------------------------------------------
    @property
    def points(self) -> RunPoints | None:
        """The run's points being shown (None while there are none)."""
        return self._points

    @property
    def showing_map(self) -> bool:
        """True when the map (not the explanation) is on screen."""
        return self.pages.currentWidget() is self.scatter

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.pages.setCurrentWidget(self.message)

    def _clear(self, text: str) -> None:
        self.loading.discard()
        self._points, self._loaded_dataset, self._loaded_key = None, None, None
        self.controller.clear()
        self._show_message(text)

    # -- following the run ---------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().showEvent(event)
        if self._reload_when_shown:
            self._on_run_change()

    def _on_run_change(self) -> None:
        dataset, run = self.state.dataset, self.state.current_run
        if dataset is not None and run is not None and not self.isVisible():
            # Loaded when the tab is shown: a user clicking through runs elsewhere should
            # not start (and cancel) map computations nobody looks at.
            self._reload_when_shown = True
            return
        self._reload_when_shown = False
        if dataset is None:
            self._clear(NO_DATASET_MESSAGE)
            return
        if run is None:
            self._clear(NO_RUN_MESSAGE)
            return
        key = (run.id, _embeddings_stamp(dataset, run.id))
        if dataset is self._loaded_dataset and key == self._loaded_key:
            self._push_values()  # same map; the scores may have been reloaded
            return
        self._clear(f"Loading the activations of run {run.id}…")
        self._loaded_dataset, self._loaded_key = dataset, key
        self.loading.start(load_run_points, dataset, run.id,
                           title=f"Loading run {run.id}'s activations",
                           on_done=self._on_points_load,
                           on_failed=lambda error: self._on_points_fail(run.id, error))

    def _on_points_load(self, points: RunPoints) -> None:
        self._points = points
        run = self.state.current_run
        cache = MapCache(self.state.dataset.workspace.run_dir(run.id))
        self.pages.setCurrentWidget(self.scatter)
        self.controller.set_embeddings(points.image_ids, points.embeddings, cache=cache,
                                       names=points.names)
        self._push_values()

    def _on_points_fail(self, run_id: int, error: BaseException) -> None:
        self._loaded_key = None  # try again next time the run is selected
        if isinstance(error, NoScoresError):
            text = (f"Run {run_id} has not scored this dataset yet. Score it in the Training "
                    "tab; its activation space shows here once it has.")
        else:
            text = f"Cannot show run {run_id}'s activation space: {error_message(error)}"
        self._show_message(text)

    # -- colours -------------------------------------------------------------------
    def values(self, mode: str) -> np.ndarray:
        """The ``mode`` colour values of the points (aligned with :attr:`points`).

        Raises:
            RuntimeError: no points are shown.
        """
        if self._points is None:
            raise RuntimeError("no run's points are shown")
        positions = self._points.positions
        state = self.state
        if mode == "label":
            return state.labels[positions]
        if mode == "flagged":
            return state.flagged[positions]
        if mode == "split":
            return self._points.splits
        if mode == "score":
            scores = state.scores
            return (np.full(len(positions), np.nan, dtype=np.float32) if scores is None
                    else scores[positions])
        if mode == "prediction":
            predictions = state.predictions()
            return (np.full(len(positions), -1, dtype=np.int8) if predictions is None
                    else predictions[positions])
        raise ValueError(f"unknown colour mode {mode!r}; choose from {COLOR_MODES}")

    def _scatter_has_points(self) -> bool:
        """The scatter shows this run's points (not an old run's, not none)."""
        return (self._points is not None and len(self._points.image_ids) > 0
                and np.array_equal(self.scatter.image_ids, self._points.image_ids))

    def _push_values(self, modes: tuple[str, ...] = COLOR_MODES) -> None:
        if not self._scatter_has_points():
            return  # they are asked for (coloring_requested) when the points arrive
        for mode in modes:
            self.scatter.set_values(mode, self.values(mode))

    def _on_coloring_request(self, _mode: str) -> None:
        # New points arrived. Every mode's values at once: the hover label reads the scores
        # whatever the colouring, and switching the colouring later needs no round trip.
        if not self._scatter_has_points():
            return
        self._push_values()
        self._on_current_image_change(self.state.current_image)
        self._on_selection_change(self.state.selection)  # the session's, on the new points

    def _on_threshold_change(self, _threshold: float) -> None:
        self._push_values(("prediction",))

    def _on_annotations_change(self, _positions) -> None:
        self._push_values(("label", "flagged"))

    # -- image <-> point ---------------------------------------------------------------
    def _on_current_image_change(self, position: int) -> None:
        dataset = self.state.dataset
        if position < 0 or dataset is None or not self._scatter_has_points():
            self.scatter.highlight(None)
            return
        self.scatter.highlight(int(dataset.image_ids[position]))

    def _positions_of(self, image_ids) -> np.ndarray:
        positions = self.state.dataset.positions(np.asarray(image_ids, dtype=np.int64))
        return positions[positions >= 0]

    def _on_point_click(self, image_id: int) -> None:
        if self.state.dataset is None:
            return
        positions = self._positions_of([image_id])
        if len(positions):
            self.state.set_current_image(int(positions[0]))

    # -- the selection lives in the session ------------------------------------------------
    def _on_scatter_selection_change(self, image_ids) -> None:
        if self.state.dataset is not None:
            self.state.set_selection(self._positions_of(image_ids))

    def _on_selection_change(self, positions) -> None:
        dataset = self.state.dataset
        if dataset is None or not self._scatter_has_points():
            return
        ids = dataset.image_ids[np.asarray(positions, dtype=np.int64)]
        if not np.array_equal(np.sort(ids), np.sort(self.scatter.selected_ids())):
            self.scatter.select_ids(ids)

    # -- F flags, as in the ranked list ------------------------------------------------------
    @staticmethod
    def _is_flag_key(event) -> bool:
        return (isinstance(event, QKeyEvent) and event.key() == Qt.Key.Key_F
                and event.modifiers() in (Qt.KeyboardModifier.NoModifier,
                                          Qt.KeyboardModifier.KeypadModifier))

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and self._is_flag_key(event):
            event.accept()  # F flags here, not the image viewer's window-wide F = Fit
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self._is_flag_key(event):
            super().keyPressEvent(event)
            return
        event.accept()
        self.flag_selection_or_current()

    def flag_selection_or_current(self) -> None:
        """F: flag the selected points (unflag when all are flagged), else toggle the
        current image's flag."""
        state = self.state
        if state.dataset is None:
            return
        if len(state.selection):
            self._flag(state.dataset.image_ids[state.selection],
                       not bool(state.flagged[state.selection].all()))
        elif state.current_image >= 0:
            state.toggle_flag(state.current_image)

    # -- actions on the selection --------------------------------------------------------
    def _flag(self, image_ids, flagged: bool) -> None:
        positions = self._positions_of(image_ids)
        self.state.set_flagged(positions, flagged)
        verb = "Flagged" if flagged else "Unflagged"
        self.status.emit(f"{verb} {len(positions):,} images")

    def _label(self, image_ids, label: int) -> None:
        positions = self._positions_of(image_ids)
        self.state.set_label(positions, label)
        self.status.emit(f"Labelled {len(positions):,} images {'bad' if label else 'good'}")

    def show_in_list(self, image_ids) -> None:
        """Ask the ranked list to show just these images, and switch to its tab."""
        positions = self._positions_of(image_ids)
        self.state.request_list_filter(positions)
        tabs = self._enclosing_tabs()
        if tabs is None:
            return
        for index in range(tabs.count()):
            if tabs.tabText(index).replace("&", "").strip().lower().startswith(RANKED_TAB_TITLE):
                tabs.setCurrentIndex(index)
                return

    def _enclosing_tabs(self) -> QTabWidget | None:
        widget = self.parentWidget()
        while widget is not None and not isinstance(widget, QTabWidget):
            widget = widget.parentWidget()
        return widget
