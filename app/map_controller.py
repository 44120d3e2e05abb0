"""The thin Qt adapter between :class:`core.map_runner.MapRunner` and the scatter.

:class:`MapController` follows the scatter's method combo and its Cancel button, runs
the runner on a worker through a :class:`app.workers.TaskOwner` (so a replaced computation's
late frames never reach the view) and shows what comes back: t-SNE frames animate the
points, the finished map replaces them. Finished maps are kept by the runner and cached in
the run folder, so switching back and forth is instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal

from app.scatter_view import ActivationScatter
from app.workers import Task, TaskOwner, error_message
from core.activation_maps import MapCache, TSNESettings
from core.map_runner import METHOD_TITLES, MapFrame, MapRunner
from core.progress import Progress


class MapController(QObject):
    """Computes PCA / t-SNE maps of one run's embeddings off the GUI thread and feeds a view.

    A cancelled or failed t-SNE falls back to the PCA map (a half-converged t-SNE misleads).

    Args:
        view: the scatter it feeds.
        settings: how t-SNE runs (defaults if None); read when embeddings are set.
        parent: Qt parent.
        track: called with each task before it starts (the status bar's corner, which
            shows its progress and cancels it with Esc).

    Signals:
        status(str): one line for a status bar.
        failed(str): a message for the user.
    """

    status = Signal(str)
    failed = Signal(str)

    def __init__(self, view: ActivationScatter, settings: TSNESettings | None = None,
                 parent: QObject | None = None, *,
                 track: Callable[[Task], None] | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.settings = settings or TSNESettings()
        self.runner: MapRunner | None = None
        self.tasks = TaskOwner(self, track=track)
        self._computing = ""  # the method the running task computes
        view.method_changed.connect(self.show_method)
        view.tsne_cancel_requested.connect(self.cancel)

    @property
    def task(self) -> Task | None:
        """The running computation (None when idle)."""
        return self.tasks.current

    def set_embeddings(self, image_ids: np.ndarray, embeddings: np.ndarray, *,
                       cache: MapCache | None = None,
                       names: Sequence[str] | None = None) -> None:
        """Start over with a run's embeddings; shows the map of the view's current method."""
        self.tasks.discard()
        self.view.finish_progress()
        self.runner = MapRunner(image_ids, embeddings, self.settings, cache=cache,
                                       names=names)
        self.show_method(self.view.method)

    def clear(self) -> None:
        """Forget the embeddings (no run to show): stops a computation, empties the view."""
        self.tasks.discard()
        self.view.finish_progress()
        self.runner = None
        self.view.set_points(np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64))

    def show_method(self, method: str) -> None:
        """Show the ``method`` map: at once when known, else computed on a worker."""
        runner = self.runner
        if runner is None:
            return
        self.view.set_method(method)
        if self.tasks.busy and self._computing == method:
            return  # already on its way
        coords = runner.known(method)
        if coords is not None:
            self.tasks.discard()
            self._show(method, coords)
            return
        self.view.finish_progress()
        self._computing = method
        self.status.emit(f"Computing the {METHOD_TITLES[method]} map…")
        self.tasks.start(runner.run, method, title=f"{METHOD_TITLES[method]} map",
                         on_progress=self._on_progress, on_partial=self._on_frame,
                         on_done=lambda coords: self._on_done(runner, method, coords),
                         on_failed=lambda error: self._on_failed(method, error),
                         on_cancelled=lambda: self._on_cancelled(method))

    def cancel(self) -> None:
        """Stop a running computation; the view falls back to the PCA map."""
        self.tasks.cancel()

    # -- what the task sends -----------------------------------------------------------
    def _show(self, method: str, coords: np.ndarray) -> None:
        runner = self.runner
        self.view.set_points(coords, runner.image_ids, names=runner.names)
        self.view.finish_progress()
        self.status.emit(f"{METHOD_TITLES[method]} map of {len(runner.image_ids):,} images")

    def _on_progress(self, p: Progress) -> None:
        if p.stage == "tsne":
            self.view.show_progress(p.done, p.total, p.message)

    def _on_frame(self, frame: MapFrame) -> None:
        runner = self.runner
        # The first frame needs the points themselves; later frames only move them.
        if not np.array_equal(self.view.image_ids, runner.image_ids):
            self.view.set_points(frame.coords, runner.image_ids, names=runner.names)
        self.view.show_progress(frame.done, frame.total, frame.message)
        self.view.show_partial(frame.coords)

    def _on_done(self, runner: MapRunner, method: str, coords: np.ndarray) -> None:
        runner.keep(method, coords)
        if self.view.method == method:
            self._show(method, coords)

    def _on_failed(self, method: str, error: BaseException) -> None:
        self.view.finish_progress()
        self.failed.emit(f"The {METHOD_TITLES[method]} map failed: {error_message(error)}")
        self._fall_back(method)

    def _on_cancelled(self, method: str) -> None:
        self.view.finish_progress()
        self.status.emit(f"{METHOD_TITLES[method]} map cancelled")
        self._fall_back(method)

    def _fall_back(self, method: str) -> None:
        fallback = MapRunner.fallback(method)
        if fallback is not None:
            self.show_method(fallback)
