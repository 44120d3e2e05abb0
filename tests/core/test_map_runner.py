"""The activation map's runner, without Qt: typed frames, cancel, kept maps, the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from core.activation_maps import MapCache, TSNESettings
from core.map_runner import MapFrame, MapRunner
from core.progress import Cancelled

FAST = TSNESettings(perplexity=10, early_exaggeration_iter=20, n_iter=20, step_iters=10,
                    n_jobs=1)


def _runner(tmp_path=None, n=90):
    rng = np.random.default_rng(2)
    embeddings = (np.repeat(rng.normal(0, 8, (3, 12)), n // 3, axis=0)
                  + rng.normal(0, 1, (n, 12))).astype(np.float32)
    cache = MapCache(tmp_path) if tmp_path is not None else None
    return MapRunner(np.arange(n) + 100, embeddings, FAST, cache=cache)


def test_tsne_sends_typed_frames_and_progress_without_the_layout(tmp_path):
    runner = _runner(tmp_path)
    frames, reports = [], []
    coords = runner.run("tsne", on_partial=frames.append, progress=reports.append)
    assert all(isinstance(f, MapFrame) and f.method == "tsne" for f in frames)
    assert [f.done for f in frames] == [0, 10, 20, 30, 40]  # the PCA start, then each step
    assert all(f.total == 40 and f.coords.shape == (90, 2) for f in frames)
    np.testing.assert_array_equal(frames[-1].coords, coords)
    assert reports and not any("coords" in r.data for r in reports)
    assert runner.known("tsne") is None  # kept only when the view says so
    runner.keep("tsne", coords)
    np.testing.assert_array_equal(runner.known("tsne"), coords)
    # A second run of the same map comes from the cache: no frames.
    again = []
    np.testing.assert_array_equal(runner.run("tsne", on_partial=again.append), coords)
    assert again == []


def test_cancel_stops_between_steps_and_caches_nothing(tmp_path):
    runner = _runner(tmp_path)
    frames = []
    with pytest.raises(Cancelled):
        runner.run("tsne", on_partial=frames.append, cancel=lambda: len(frames) >= 2)
    assert len(frames) == 2
    assert not list((tmp_path / "projections").glob("tsne-*.npy"))


def test_pca_has_no_frames_and_the_fallback_is_pca():
    runner = _runner()
    frames = []
    coords = runner.run("pca", on_partial=frames.append)
    assert frames == [] and coords.shape == (90, 2)
    assert MapRunner.fallback("tsne") == "pca"
    assert MapRunner.fallback("pca") is None


def test_bad_requests_are_refused():
    runner = _runner()
    with pytest.raises(ValueError, match="unknown projection method"):
        runner.run("umap")
    with pytest.raises(ValueError, match="a map of shape"):
        runner.keep("pca", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="image ids for"):
        MapRunner(np.arange(3), np.zeros((4, 2)))
