"""PCA / t-SNE maps, the lasso's containment test and the projection cache (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from core import activation_maps
from core.activation_maps import (
    MapCache,
    TSNESettings,
    compute_map,
    embeddings_fingerprint,
    exact_neighbors,
    pca_2d,
    points_in_polygon,
    reduce_dims,
    run_tsne,
)
from core.progress import Cancelled

# Small and short: enough iterations for blobs to separate, fast on 2 CPU cores.
FAST = TSNESettings(perplexity=15, early_exaggeration_iter=60, n_iter=90, step_iters=30,
                    n_jobs=1)


def blobs(n: int = 360, dims: int = 24, k: int = 3, seed: int = 0):
    """Well-separated Gaussian clusters, like a trained model's embeddings of a few classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, (k, dims))
    labels = np.arange(n) % k
    return (centres[labels] + rng.normal(0, 1, (n, dims))).astype(np.float32), labels


def knn_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy in the 2-D map: how well clusters stay apart."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = labels[nearest]
    predicted = np.array([np.bincount(v).argmax() for v in votes])
    return float((predicted == labels).mean())


# -- PCA ------------------------------------------------------------------------------

def test_pca_2d_gives_float32_n_by_2_along_the_widest_spread():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 10)) * np.r_[10.0, 3.0, np.full(8, 0.1)]
    coords = pca_2d(x)
    assert coords.shape == (200, 2) and coords.dtype == np.float32
    # The first component carries the largest variance, the second the next.
    assert coords[:, 0].std() == pytest.approx(10, rel=0.15)
    assert coords[:, 1].std() == pytest.approx(3, rel=0.15)


def test_pca_2d_handles_a_single_feature_and_a_single_row():
    assert pca_2d(np.arange(6.0).reshape(6, 1))[:, 1].tolist() == [0.0] * 6
    assert pca_2d(np.ones((1, 4))).shape == (1, 2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(5), "2-D"),
    (np.zeros((0, 3)), "empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
])
def test_bad_embeddings_give_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        pca_2d(bad)


def test_reduce_dims_narrows_wide_embeddings_only():
    rng = np.random.default_rng(2)
    assert reduce_dims(rng.normal(size=(300, 512)), 50).shape == (300, 50)
    narrow = rng.normal(size=(300, 32))
    assert reduce_dims(narrow, 50).shape == (300, 32)


# -- neighbours -------------------------------------------------------------------------

def test_exact_neighbors_match_a_brute_force_reference_and_never_include_the_point_itself(
        monkeypatch):
    monkeypatch.setattr(activation_maps, "_KNN_MIN_CHUNK", 16)  # several chunks, as at 30,000
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 5)).astype(np.float32)
    x[10] = x[11]  # an exact duplicate may sort before the point itself
    reports = []
    indices, distances = exact_neighbors(x, 7, progress=reports.append)
    assert [r.done for r in reports] == [16, 32, 48, 64, 80, 96, 112, 128, 144, 150]
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert not (indices == np.arange(len(x))[:, None]).any()
    np.testing.assert_allclose(distances, np.sort(d, axis=1)[:, :7], rtol=1e-4, atol=1e-4)
    assert indices[10, 0] == 11 and indices[11, 0] == 10


# -- t-SNE -------------------------------------------------------------------------------

def test_tsne_separates_clusters_and_sends_a_frame_per_step():
    x, labels = blobs()
    frames = []
    reports = []
    coords = run_tsne(x, FAST, on_partial=frames.append, progress=reports.append)
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32
    assert knn_accuracy(coords, labels) > 0.97
    # One initial frame plus one per step of 30 iterations (60 + 90 -> 2 + 3 steps).
    assert len(frames) == 1 + 5
    assert all(f.shape == (len(x), 2) and f.dtype == np.float32 for f in frames)
    np.testing.assert_array_equal(frames[-1], coords)
    optimise = [r for r in reports if r.data.get("phase") == "optimise"]
    assert [r.done for r in optimise] == [0, 30, 60, 90, 120, 150]
    assert all(r.total == 150 for r in optimise)
    assert "coords" in optimise[-1].data and np.isfinite(optimise[-1].data["kl"])
    assert any(r.data.get("phase") == "neighbours" for r in reports)


def test_tsne_frames_are_independent_copies():
    x, _ = blobs(n=120)
    frames = []
    run_tsne(x, TSNESettings(perplexity=10, early_exaggeration_iter=20, n_iter=20,
                             step_iters=10, n_jobs=1), on_partial=frames.append)
    assert not np.array_equal(frames[1], frames[-1])  # a later step did not overwrite it


def test_tsne_reduces_wide_embeddings_with_pca_first(monkeypatch):
    seen = []
    original = activation_maps.reduce_dims
    monkeypatch.setattr(activation_maps, "reduce_dims",
                        lambda x, dims, seed=0: seen.append(dims) or original(x, dims, seed=seed))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 80)).astype(np.float32)
    coords = run_tsne(x, TSNESettings(perplexity=10, early_exaggeration_iter=10, n_iter=10,
                                      pca_dims=12, n_jobs=1))
    assert seen == [12] and coords.shape == (120, 2)


def test_cancel_stops_the_optimisation_early():
    x, _ = blobs()
    frames = []
    with pytest.raises(Cancelled):
        run_tsne(x, FAST, on_partial=frames.append, cancel=lambda: len(frames) >= 2)
    assert len(frames) == 2  # the initial layout and one step, then it stopped


def test_cancel_during_the_neighbour_search_stops_before_any_step():
    x, _ = blobs()
    frames = []
    with pytest.raises(Cancelled):
        run_tsne(x, FAST, on_partial=frames.append, cancel=lambda: len(frames) >= 1)
    assert len(frames) == 1  # only the initial PCA layout


def test_tsne_refuses_too_few_points_and_bad_settings():
    with pytest.raises(ValueError, match="at least 5"):
        run_tsne(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="perplexity"):
        TSNESettings(perplexity=0)
    with pytest.raises(ValueError, match="neighbors"):
        TSNESettings(neighbors="hnsw")
    with pytest.raises(ValueError, match="unknown t-SNE settings: typo"):
        TSNESettings.from_dict({"typo": 1})


def test_settings_round_trip_and_cache_key_ignores_threads():
    settings = TSNESettings(perplexity=40, seed=3)
    assert TSNESettings.from_dict(settings.to_dict()) == settings
    a = MapCache.key("tsne", TSNESettings(n_jobs=1, step_iters=10), "f")
    assert a == MapCache.key("tsne", TSNESettings(n_jobs=2, step_iters=50), "f")
    assert a != MapCache.key("tsne", TSNESettings(perplexity=31), "f")


# -- lasso containment ----------------------------------------------------------------

def _winding_number_inside(point, polygon) -> bool:
    """Reference: the winding-number test, point by point (slow, independent)."""
    x, y = point
    winding = 0
    for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        cross = (bx - ax) * (y - ay) - (x - ax) * (by - ay)
        if ay <= y < by and cross > 0:
            winding += 1
        elif by <= y < ay and cross < 0:
            winding -= 1
    return winding != 0


def test_points_in_polygon_matches_a_winding_number_reference_on_a_concave_lasso():
    rng = np.random.default_rng(5)
    # A star-shaped (concave, simple) polygon like a hand-drawn lasso, 120 vertices.
    angles = np.sort(rng.uniform(0, 2 * np.pi, 120))
    radii = rng.uniform(0.3, 1.0, 120)
    polygon = np.c_[radii * np.cos(angles), radii * np.sin(angles)] + [0.2, -0.1]
    points = rng.uniform(-1.3, 1.3, (3000, 2))
    expected = np.array([_winding_number_inside(p, polygon) for p in points])
    got = points_in_polygon(points, polygon)
    assert 200 < expected.sum() < 2800  # the test really has points inside and outside
    np.testing.assert_array_equal(got, expected)


def test_points_in_polygon_degenerate_inputs_select_nothing():
    pts = np.zeros((4, 2))
    assert not points_in_polygon(pts, np.array([[0, 0], [1, 1]])).any()
    assert points_in_polygon(np.zeros((0, 2)), np.eye(3)[:, :2]).shape == (0,)


# -- cache ---------------------------------------------------------------------------------

def test_cache_round_trip_and_misses(tmp_path):
    rng = np.random.default_rng(6)
    ids = np.arange(50, dtype=np.int64) * 3
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    coords = rng.normal(size=(50, 2)).astype(np.float32)
    cache = MapCache(tmp_path / "runs" / "7")
    fp = embeddings_fingerprint(ids, emb)
    assert cache.load("tsne", FAST, fp, ids) is None
    path = cache.save("tsne", FAST, fp, ids, coords)
    assert path.parent == tmp_path / "runs" / "7" / "projections"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left
    np.testing.assert_array_equal(cache.load("tsne", FAST, fp, ids), coords)
    # Other settings, other embeddings (a re-scored run), other ids or method: misses.
    assert cache.load("tsne", TSNESettings(perplexity=29), fp, ids) is None
    emb2 = emb.copy()
    emb2[0, 0] += 1
    assert cache.load("tsne", FAST, embeddings_fingerprint(ids, emb2), ids) is None
    assert cache.load("tsne", FAST, fp, ids[::-1]) is None
    assert cache.load("pca", None, fp, ids) is None
    # A damaged file is a miss, not a crash.
    path.write_bytes(b"garbage")
    assert cache.load("tsne", FAST, fp, ids) is None
    assert cache.clear() == 1


def test_compute_map_computes_once_then_loads_from_the_cache(tmp_path, monkeypatch):
    x, _ = blobs(n=90)
    ids = np.arange(90, dtype=np.int64)
    cache = MapCache(tmp_path)
    settings = TSNESettings(perplexity=10, early_exaggeration_iter=10, n_iter=10, n_jobs=1)
    first = compute_map(x, ids, "tsne", settings, cache=cache)

    def must_not_run(*_a, **_k):
        raise AssertionError("t-SNE ran again although the map was cached")

    monkeypatch.setattr(activation_maps, "run_tsne", must_not_run)
    reports = []
    again = compute_map(x, ids, "tsne", settings, cache=cache, progress=reports.append)
    np.testing.assert_array_equal(first, again)
    assert reports and reports[-1].data.get("cached") is True
    pca = compute_map(x, ids, "pca", cache=cache)
    np.testing.assert_array_equal(pca, pca_2d(x))
    with pytest.raises(ValueError, match="unknown projection method"):
        compute_map(x, ids, "umap")
    with pytest.raises(ValueError, match="image ids"):
        compute_map(x, ids[:5], "pca")


def test_fft_grid_interval_widens_only_once_the_map_outgrows_the_cap():
    from core.activation_maps import _grid_interval

    capped = TSNESettings(max_grid_intervals=100)
    small = np.array([[-20.0, 0.0], [20.0, 5.0]])
    large = np.array([[-150.0, 0.0], [150.0, 10.0]])
    assert _grid_interval(small, capped) == 1.0
    assert _grid_interval(large, capped) == pytest.approx(3.0)
    assert _grid_interval(large, TSNESettings(max_grid_intervals=None)) == 1.0
    with pytest.raises(ValueError, match="max_grid_intervals"):
        TSNESettings(max_grid_intervals=2)
