"""The activation map's runner: the PCA / t-SNE maps of one run's embeddings, for a view.

The Qt-free half of the activation view's map controller (Orange3's ``TSNERunner``): it
holds one run's embeddings, computes a map in steps that send typed partial results
(:class:`MapFrame`) and check ``cancel``, keeps the finished maps, and says what to show
when a computation does not finish. ``app.map_controller`` only runs
:meth:`MapRunner.run` on a worker and shows what comes back.

Threads: :meth:`MapRunner.run` reads only what the runner was built with, so it may
run on a worker while the GUI thread calls :meth:`known` and :meth:`keep`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.activation_maps import METHODS, MapCache, TSNESettings, compute_map
from core.progress import CancelCheck, Progress, ProgressFn

METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE"}


@dataclass(frozen=True)
class MapFrame:
    """A map on its way: the layout after some t-SNE iterations (a partial result).

    Attributes:
        method: 'tsne'.
        coords: float32 (n, 2), aligned with the runner's image ids.
        done: iterations so far.
        total: iterations in all.
        message: one line for a progress label.
    """

    method: str
    coords: np.ndarray
    done: int
    total: int
    message: str


class MapRunner:
    """Maps of one run's embeddings: computed in steps, kept once finished.

    Args:
        image_ids: int64 (n,) ids of the points.
        embeddings: (n, d), aligned with ``image_ids``.
        settings: how t-SNE runs (defaults if None).
        cache: finished maps on disk (``MapCache`` of the run folder), or None.
        names: optional (n,) file names (the view's hover label).
    """

    def __init__(self, image_ids: np.ndarray, embeddings: np.ndarray,
                 settings: TSNESettings | None = None, *, cache: MapCache | None = None,
                 names: Sequence[str] | None = None) -> None:
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        if len(self.image_ids) != len(embeddings):
            raise ValueError(f"{len(self.image_ids)} image ids for {len(embeddings)} embeddings")
        self.embeddings = embeddings
        self.settings = settings or TSNESettings()
        self.cache = cache
        self.names = names
        self._maps: dict[str, np.ndarray] = {}

    def known(self, method: str) -> np.ndarray | None:
        """The finished ``method`` map kept in memory, or None."""
        _check_method(method)
        return self._maps.get(method)

    def keep(self, method: str, coords: np.ndarray) -> None:
        """Remember a finished map (switching back to it is then instant)."""
        _check_method(method)
        coords = np.asarray(coords, dtype=np.float32)
        if coords.shape != (len(self.image_ids), 2):
            raise ValueError(f"a map of shape {coords.shape} for {len(self.image_ids)} points")
        self._maps[method] = coords

    def run(self, method: str, *, progress: ProgressFn | None = None,
            cancel: CancelCheck | None = None,
            on_partial: Callable[[MapFrame], None] | None = None) -> np.ndarray:
        """Compute (or read from the cache) the ``method`` map; a worker job.

        t-SNE sends a :class:`MapFrame` to ``on_partial`` after every step (the first is
        the PCA initial layout) and checks ``cancel`` between steps; ``progress`` gets the
        other reports (neighbour search) and every step's counts, without the layout.

        Returns:
            float32 (n, 2).

        Raises:
            core.progress.Cancelled: ``cancel`` returned True.
            ValueError: bad embeddings, or too few points for t-SNE.
        """
        _check_method(method)

        def relay(p: Progress) -> None:
            coords = p.data.get("coords")
            if coords is not None and on_partial is not None:
                on_partial(MapFrame(method, coords, p.done, p.total, p.message))
            if progress is not None:
                data = {k: v for k, v in p.data.items() if k != "coords"}
                progress(Progress(p.stage, p.done, p.total, p.message, data))

        return compute_map(self.embeddings, self.image_ids, method, self.settings,
                                  cache=self.cache, progress=relay, cancel=cancel)

    @staticmethod
    def fallback(method: str) -> str | None:
        """What to show when the ``method`` map does not finish: PCA for t-SNE (half a
        t-SNE misleads), nothing for PCA itself."""
        _check_method(method)
        return None if method == "pca" else "pca"


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose from {METHODS}")
