"""Heatmaps already computed, and their pictures: everything about maps that needs no torch.

The GUI reads cached maps on its own thread (a hovered point, the visible rows of the
ranked list) and turns maps into pictures; importing :mod:`core.explain` for that would
load torch there. :mod:`core.explain` re-exports these names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.atomic import atomic_write
from core.explain_methods import check_method, default_method
from core.score_store import as_run


def read_cached(dataset, run, image_ids: Sequence[int] | np.ndarray, method: str | None = None
                ) -> dict[int, tuple[np.ndarray, float]]:
    """{image id: (map float16 (H, W), peak)} of those of ``image_ids`` that ``run``'s cache
    of ``method`` (default: the model's best) holds; never computes. Reads just those rows."""
    run = as_run(dataset.workspace, run)
    method = check_method(method or default_method(run))
    cached = HeatmapCache(dataset.workspace.run_dir(run.id), method, run.checkpoint).load()
    wanted = np.unique(np.asarray(image_ids, dtype=np.int64).ravel())
    if cached is None or len(wanted) == 0 or len(cached[0]) == 0:
        return {}
    ids, maps, peaks = cached
    order = np.argsort(ids)
    rows = order[np.searchsorted(ids, wanted, sorter=order).clip(0, len(ids) - 1)]
    hit = ids[rows] == wanted
    return {int(i): (np.asarray(maps[r]), float(peaks[r]))
            for i, r in zip(wanted[hit].tolist(), rows[hit].tolist(), strict=True)}


# --- the cache -------------------------------------------------------------------------

class HeatmapCache:
    """One run's cached maps of one method: four files in the run's folder.

    ``heatmaps-<method>.npy`` (float16 maps), ``-ids.npy``, ``-peaks.npy`` and ``.json``
    (which checkpoint made them, written last). A cache whose files disagree or whose
    checkpoint changed is ignored (and replaced by the next store).
    """

    def __init__(self, run_dir: Path, method: str, checkpoint: Path | None) -> None:
        base = run_dir / f"heatmaps-{method}"
        self.maps_path = base.with_suffix(".npy")
        self.ids_path = run_dir / f"heatmaps-{method}-ids.npy"
        self.peaks_path = run_dir / f"heatmaps-{method}-peaks.npy"
        self.stamp_path = base.with_suffix(".json")
        self.checkpoint = checkpoint

    def _stamp(self) -> dict:
        stat = Path(self.checkpoint).stat() if self.checkpoint else None
        return {"checkpoint": str(self.checkpoint),
                "checkpoint_bytes": stat.st_size if stat else None,
                "checkpoint_mtime_ns": stat.st_mtime_ns if stat else None}

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(ids, maps memmap, peaks), or None when absent, stale or inconsistent."""
        try:
            stamp = json.loads(self.stamp_path.read_text())
            ids = np.load(self.ids_path, allow_pickle=False)
            peaks = np.load(self.peaks_path, allow_pickle=False)
            maps = np.load(self.maps_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if stamp.get("count") != len(ids) or len(maps) != len(ids) or len(peaks) != len(ids):
            return None
        stamp.pop("count")
        if stamp != self._stamp():
            return None
        return ids.astype(np.int64, copy=False), maps, peaks

    def store(self, ids: np.ndarray, maps: np.ndarray, peaks: np.ndarray) -> None:
        """Replace the cache (the stamp goes last, so a torn write reads as stale)."""
        self.stamp_path.unlink(missing_ok=True)
        for path, array in ((self.maps_path, maps), (self.ids_path, ids),
                            (self.peaks_path, peaks)):
            with atomic_write(path, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        with atomic_write(self.stamp_path) as fh:
            json.dump({**self._stamp(), "count": len(ids)}, fh)


# --- pictures ----------------------------------------------------------------------------

def heat_colours(values: np.ndarray) -> np.ndarray:
    """0..1 values -> RGB uint8 (..., 3): a perceptual dark-blue → red → yellow scale."""
    stops = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99],
                      [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]],
                     dtype=np.float32)  # 'inferno' at eight stops
    position = np.clip(np.asarray(values, dtype=np.float32), 0, 1) * (len(stops) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(stops) - 2)
    weight = (position - low)[..., None]
    return (stops[low] * (1 - weight) + stops[low + 1] * weight).round().astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5,
            floor: float = 0.2) -> np.ndarray:
    """A grey image with the heatmap blended over it: RGB uint8 (H, W, 3).

    Values below ``floor`` stay transparent, so the part itself remains readable where
    there is no evidence; above it the opacity ramps up with the value.
    """
    grey = np.repeat(np.asarray(image, dtype=np.float32)[..., None], 3, axis=2)
    heat = np.asarray(heatmap, dtype=np.float32)
    alpha = (opacity * np.clip((heat - floor) / max(1e-6, 1 - floor), 0, 1))[..., None]
    blended = grey * (1 - alpha) + heat_colours(heat).astype(np.float32) * alpha
    return blended.round().clip(0, 255).astype(np.uint8)


def heatmap_png16(heatmap: np.ndarray) -> np.ndarray:
    """A 0..1 map as uint16 0..65535 (for a 16-bit grey PNG)."""
    return (np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1) * 65535).round().astype(
        np.uint16)
