"""Heatmaps for small pictures (a hovered point's preview, the ranked list's thumbnails).

:class:`HeatmapSource` answers "the current run's map of this image" from memory or the
run's disk cache at once (:func:`core.explain_maps.read_cached`, no torch on the GUI
thread), and computes the maps it lacks on a worker, one batch at a time: a new request
made while a batch runs replaces any waiting one, so only the newest is computed next.
:func:`overlay_pixmap` draws a map over its image as a small picture.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from app.state import AppState
from app.workers import TaskOwner
from core.explain_maps import overlay, read_cached

MEMORY_MAPS = 256   # maps kept in memory: a screenful of rows plus the recent hovers
OVERLAY_OPACITY = 0.6


def _maps_job(dataset, run, image_ids: np.ndarray, method: str, store: bool, explainer,
              *, progress, cancel):
    """Worker: ({id: (map, peak)}, explainer) of ``image_ids``."""
    from core.explain import Explainer, explain

    if explainer is None or (explainer.run_id, explainer.method) != (run.id, method):
        explainer = Explainer(run, method, device="auto")
    result = explain(dataset, run, image_ids, method, store=store, explainer=explainer,
                     progress=progress, cancel=cancel)
    maps = {int(i): (m, float(p)) for i, m, p in
            zip(result.image_ids.tolist(), result.maps, result.peaks, strict=True)}
    return maps, explainer


def overlay_pixmap(image: np.ndarray, heat: np.ndarray | None, side: int) -> QPixmap:
    """``image`` (grey uint8), with ``heat`` blended over it when given, scaled to fit
    ``side`` x ``side``."""
    pixels = np.ascontiguousarray(
        np.repeat(np.asarray(image)[..., None], 3, axis=2) if heat is None
        else overlay(image, heat, OVERLAY_OPACITY))
    rows, cols = pixels.shape[:2]
    picture = QImage(pixels.data, cols, rows, 3 * cols, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(picture).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation)


class HeatmapSource(QObject):
    """The current run's maps (the method chosen in the viewer, else the run's default),
    from memory, disk or a worker.

    Args:
        store: write computed maps into the run's cache (a batch of rows is worth keeping;
            single hovers are not worth rewriting the cache file for).

    Signals:
        ready(list): ids whose maps just arrived.
        failed(str): a batch could not be computed (e.g. the run has no checkpoint).
    """

    ready = Signal(list)
    failed = Signal(str)

    def __init__(self, state: AppState, parent: QObject | None = None, *,
                 store: bool = False) -> None:
        super().__init__(parent)
        self.state = state
        self.store = store
        self.tasks = TaskOwner(self)
        self._memory: OrderedDict[tuple, tuple[np.ndarray, float]] = OrderedDict()
        self._explainer = None
        self._waiting: np.ndarray | None = None
        state.current_run_changed.connect(self._forget)
        state.dataset_changed.connect(self._forget)
        state.heatmap_method_changed.connect(self._on_method_change)

    def key(self) -> tuple | None:
        """(run id, method), or None without a dataset or run."""
        run = self.state.current_run
        if self.state.dataset is None or run is None:
            return None
        return run.id, self.state.heatmap_method

    def get(self, image_id: int) -> np.ndarray | None:
        """The map of ``image_id`` if in memory or cached on disk (never computes)."""
        return self.known([image_id]).get(int(image_id))

    def in_memory(self, image_id: int) -> np.ndarray | None:
        """The map of ``image_id`` if in memory (for painting: never reads the disk)."""
        key = self.key()
        entry = None if key is None else self._memory.get((*key, int(image_id)))
        return None if entry is None else entry[0]

    def known(self, image_ids) -> dict[int, np.ndarray]:
        """{id: map} of those of ``image_ids`` in memory or on disk."""
        key = self.key()
        if key is None:
            return {}
        found = {int(i): self._memory[(*key, int(i))][0] for i in image_ids
                 if (*key, int(i)) in self._memory}
        rest = [int(i) for i in image_ids if int(i) not in found]
        if rest:
            for image_id, entry in read_cached(self.state.dataset, self.state.current_run,
                                               rest, key[1]).items():
                self._remember(key, image_id, entry)
                found[image_id] = entry[0]
        return found

    def request(self, image_ids) -> None:
        """Compute the maps of ``image_ids`` not known yet, on a worker."""
        key = self.key()
        if key is None or self.state.current_run.checkpoint is None:
            return
        ids = np.asarray(image_ids, dtype=np.int64).ravel()
        known = self.known(ids)
        missing = np.array([i for i in ids.tolist() if i not in known], dtype=np.int64)
        if len(missing) == 0:
            return
        if self.tasks.busy:
            # Newest wins: the running batch finishes, then only the latest request runs.
            if self._waiting is None:
                self.tasks.when_idle(self._start_waiting)
            self._waiting = missing
            return
        self.tasks.start(_maps_job, self.state.dataset, self.state.current_run, missing,
                         key[1], self.store, self._explainer, title="Heatmaps",
                         on_done=lambda result: self._on_done(key, result),
                         on_failed=lambda error: self.failed.emit(str(error)))

    def _start_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self.request(waiting)

    def _on_done(self, key: tuple, result) -> None:
        maps, self._explainer = result
        if key != self.key():
            return
        for image_id, entry in maps.items():
            self._remember(key, image_id, entry)
        self.ready.emit(sorted(maps))

    def _remember(self, key: tuple, image_id: int, entry: tuple[np.ndarray, float]) -> None:
        self._memory[(*key, image_id)] = entry
        self._memory.move_to_end((*key, image_id))
        while len(self._memory) > MEMORY_MAPS:
            self._memory.popitem(last=False)

    def _on_method_change(self) -> None:
        """Maps of the other method are kept (switching back is instant); the views ask
        again for the new one (they listen to the same signal)."""
        self._waiting = None
        self.tasks.discard()

    def _forget(self, *_args) -> None:
        self._memory.clear()
        self._explainer = None
        self._waiting = None
        self.tasks.discard()
