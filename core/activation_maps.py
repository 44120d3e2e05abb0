"""2-D maps of a run's activation space: PCA (instant) and t-SNE (openTSNE, animated).

The activation-space view plots every image's embedding (the network's penultimate
activations, ``runs/<id>/embeddings.npy``) as a point; this module computes those points.

* :func:`pca_2d` — the first two principal components; well under a second.
* :func:`run_tsne` — openTSNE, run in steps of ``step_iters`` iterations so every step hands
  the current layout to ``on_partial`` (the plot animates while t-SNE converges) and checks
  ``cancel``. The nearest-neighbour search runs here in chunks, so it reports progress and
  can be cancelled too.
* :class:`MapCache` — finished maps as ``.npy`` files in the run folder, keyed by
  method, settings and a fingerprint of the embeddings, so re-opening a run is instant and a
  re-scored run never shows a stale map.
* :func:`points_in_polygon` — the lasso's containment test (numpy, even-odd rule).

Defaults: exact brute-force neighbours (scikit-learn, chunked) and FFT-accelerated gradients,
chosen on ``tests/benchmarks/bench_scatter.py``; the measurements are in the README
("t-SNE settings: which, and why").
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from core.atomic import atomic_write
from core.progress import CancelCheck, ProgressFn, check_cancel, report

METHODS = ("pca", "tsne")
NEIGHBOR_METHODS = ("exact", "annoy")
GRADIENT_METHODS = ("fft", "bh", "auto")
PROJECTIONS_DIR = "projections"

# Rows per neighbour-search call: scikit-learn's brute-force k-NN reduces distances in its
# own small blocks, so this only sets how often progress is reported and cancel checked
# (about 20 times per search); bigger calls have less per-call overhead.
_KNN_MIN_CHUNK = 2048
_KNN_CALLS = 20


@dataclass(frozen=True)
class TSNESettings:
    """How t-SNE is run. Only the fields that change the result enter the cache key.

    Attributes:
        perplexity: effective number of neighbours each point attends to (5..100 useful).
        n_iter: iterations after the early-exaggeration phase.
        early_exaggeration_iter: iterations with exaggerated attraction (cluster forming).
        early_exaggeration: the exaggeration factor of that phase.
        learning_rate: ``'auto'`` (n / exaggeration, Belkina et al. 2019) or a number.
        seed: random seed (PCA initialisation jitter); same seed, same map.
        pca_dims: embeddings wider than this are reduced by PCA first (ResNets: 512/2048-d).
        n_jobs: threads for neighbours and gradients; None leaves one core free for the GUI
            (on a busy 2-core machine one thread was also the faster; see the README).
        neighbors: ``'exact'`` (scikit-learn brute force, chunked, cancellable) or
            ``'annoy'`` (approximate; not cancellable while it builds).
        negative_gradient_method: ``'fft'`` (fast above a few thousand points), ``'bh'``
            (Barnes-Hut) or ``'auto'`` (openTSNE picks by size).
        step_iters: iterations between two partial frames / cancel checks.
        max_grid_intervals: caps the FFT interpolation grid at this many intervals per axis.
            openTSNE's grid has one interval per map unit, and the map grows to ~130 units
            at 10,000 points, where the FFT dominates each late iteration. The cap widens
            the interval as the map grows (faster at a barely changed KL divergence; see the
            README). None: no cap.
    """

    perplexity: float = 30.0
    n_iter: int = 750
    early_exaggeration_iter: int = 250
    early_exaggeration: float = 12.0
    learning_rate: float | str = "auto"
    seed: int = 0
    pca_dims: int = 50
    n_jobs: int | None = None
    neighbors: str = "exact"
    negative_gradient_method: str = "fft"
    step_iters: int = 25
    max_grid_intervals: int | None = 100

    def __post_init__(self) -> None:
        if not self.perplexity > 0:
            raise ValueError(f"perplexity must be positive, got {self.perplexity}")
        if self.n_iter < 0 or self.early_exaggeration_iter < 0:
            raise ValueError("iteration counts must not be negative")
        if self.step_iters < 1:
            raise ValueError(f"step_iters must be at least 1, got {self.step_iters}")
        if self.max_grid_intervals is not None and self.max_grid_intervals < 10:
            raise ValueError(f"max_grid_intervals must be at least 10, got "
                             f"{self.max_grid_intervals}")
        if self.pca_dims < 2:
            raise ValueError(f"pca_dims must be at least 2, got {self.pca_dims}")
        if self.neighbors not in NEIGHBOR_METHODS:
            raise ValueError(f"neighbors must be one of {NEIGHBOR_METHODS}, got {self.neighbors!r}")
        if self.negative_gradient_method not in GRADIENT_METHODS:
            raise ValueError(f"negative_gradient_method must be one of {GRADIENT_METHODS}, "
                             f"got {self.negative_gradient_method!r}")
        if self.learning_rate != "auto" and not (isinstance(self.learning_rate, (int, float))
                                                 and self.learning_rate > 0):
            raise ValueError(
                f"learning_rate must be 'auto' or positive, got {self.learning_rate!r}")

    @property
    def total_iters(self) -> int:
        return self.early_exaggeration_iter + self.n_iter

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TSNESettings:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown t-SNE settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def result_key(self) -> dict:
        """The settings that change the map (threads and frame rate do not)."""
        values = self.to_dict()
        for name in ("n_jobs", "step_iters"):
            values.pop(name)
        return values


# -- input checks and PCA ----------------------------------------------------------------

def _as_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as a finite float32 (n, d) array, or a ValueError saying what is wrong."""
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (images x features), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings are empty (shape {x.shape})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x).all(axis=1)).sum())
        raise ValueError(f"{bad} embedding row(s) contain NaN or infinity; re-score the run")
    return x


def reduce_dims(embeddings: np.ndarray, dims: int, *, seed: int = 0) -> np.ndarray:
    """Project onto the first ``dims`` principal components when the data is wider.

    Args:
        embeddings: (n, d) array.
        dims: the width to reduce to; narrower data is returned as float32 unchanged.
        seed: random state of the randomized SVD.

    Returns:
        float32 (n, min(d, dims)) array.
    """
    from sklearn.decomposition import PCA

    x = _as_matrix(embeddings)
    n, d = x.shape
    if d <= dims or n <= dims:
        return x
    # Randomized SVD: 30,000 x 2048 -> 50 in about a second instead of a full SVD's minute.
    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed)
    return pca.fit_transform(x).astype(np.float32)


def pca_2d(embeddings: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The first two principal components of the embeddings.

    Args:
        embeddings: (n, d) array, d >= 1.
        seed: random state of the randomized SVD (used for wide data only).

    Returns:
        float32 (n, 2); a second column of zeros when the data has a single feature or row.

    Raises:
        ValueError: not a 2-D array, empty, or containing NaN/inf.
    """
    from sklearn.decomposition import PCA

    x = _as_matrix(embeddings)
    n, d = x.shape
    out = np.zeros((n, 2), dtype=np.float32)
    components = min(2, n, d)
    if n < 2:
        return out
    solver = "randomized" if d > 100 and n > 500 else "full"
    pca = PCA(n_components=components, svd_solver=solver, random_state=seed)
    out[:, :components] = pca.fit_transform(x)
    return out


# -- t-SNE ---------------------------------------------------------------------------

def _n_threads(n_jobs: int | None) -> int:
    from core.device import cpu_count

    cores = cpu_count()
    if n_jobs is None or n_jobs == 0:
        return max(1, cores - 1)
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs


def exact_neighbors(x: np.ndarray, k: int, *, n_jobs: int = 1,
                    progress: ProgressFn | None = None,
                    cancel: CancelCheck | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every row (itself excluded), by brute force in chunks.

    Chunking lets a long search report progress and stop when asked.

    Returns:
        (indices int64 (n, k), euclidean distances float64 (n, k)), nearest first.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    index = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", n_jobs=n_jobs).fit(x)
    chunk = max(_KNN_MIN_CHUNK, -(-n // _KNN_CALLS))
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, chunk):
        check_cancel(cancel)
        stop = min(n, start + chunk)
        dist, idx = index.kneighbors(x[start:stop], n_neighbors=k + 1)
        # Each row's own point is usually first, but exact duplicates may come before it;
        # drop the row itself wherever it is, else the farthest of the k + 1.
        is_self = idx == np.arange(start, stop)[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        keep = ~is_self
        indices[start:stop] = idx[keep].reshape(-1, k)
        distances[start:stop] = dist[keep].reshape(-1, k)
        report(progress, "tsne", stop, n, f"Finding neighbours: {stop:,} / {n:,}",
               phase="neighbours")
    return indices, distances


def _affinities(x: np.ndarray, settings: TSNESettings, n_jobs: int,
                progress: ProgressFn | None, cancel: CancelCheck | None):
    from openTSNE import affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(x)
    k = min(n - 1, int(3 * settings.perplexity))
    if settings.neighbors == "annoy":
        report(progress, "tsne", 0, n, "Finding neighbours (Annoy)", phase="neighbours")
        result = affinity.PerplexityBasedNN(
            x, perplexity=settings.perplexity, method="annoy", n_jobs=n_jobs,
            random_state=settings.seed)
        check_cancel(cancel)
        return result
    indices, distances = exact_neighbors(x, k, n_jobs=n_jobs, progress=progress, cancel=cancel)
    return affinity.PerplexityBasedNN(
        knn_index=PrecomputedNeighbors(indices, distances),
        perplexity=settings.perplexity, n_jobs=n_jobs)


def _grid_interval(embedding: np.ndarray, settings: TSNESettings) -> float:
    """Map units per FFT interval for the next step: 1 until the map outgrows the cap."""
    if settings.max_grid_intervals is None:
        return 1.0
    extent = float(np.ptp(np.asarray(embedding), axis=0).max())
    return max(1.0, extent / settings.max_grid_intervals)


def _phases(settings: TSNESettings) -> list[tuple[int, float | None]]:
    """(iterations, exaggeration) of the two classic t-SNE phases."""
    return [(settings.early_exaggeration_iter, settings.early_exaggeration),
            (settings.n_iter, None)]


def run_tsne(embeddings: np.ndarray, settings: TSNESettings | None = None, *,
             progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
             on_partial=None) -> np.ndarray:
    """A t-SNE map of the embeddings, animated through ``on_partial``.

    Steps: PCA to ``settings.pca_dims`` when wider; a PCA initial layout (sent as the first
    frame at once); exact k-NN (k = 3 x perplexity) and perplexity affinities; early
    exaggeration then the normal phase, in steps of ``settings.step_iters`` iterations.
    After each step the layout goes to ``on_partial`` and into the progress report's
    ``data['coords']`` (so a GUI task relaying progress animates the plot with no extra
    plumbing), and ``cancel`` is checked.

    Args:
        embeddings: (n, d) array, n >= 5.
        settings: how to run; defaults to :class:`TSNESettings`.
        progress: receives ``Progress('tsne', done, total, message, phase=..., coords=...)``.
        cancel: returns True to stop; checked between neighbour chunks and steps.
        on_partial: called with a fresh float32 (n, 2) copy of the layout after each step.

    Returns:
        float32 (n, 2) coordinates.

    Raises:
        ValueError: bad embeddings (not 2-D, NaN/inf) or fewer than 5 points.
        core.progress.Cancelled: ``cancel`` returned True.
    """
    from openTSNE import TSNEEmbedding, initialization

    settings = settings or TSNESettings()
    x = _as_matrix(embeddings)
    n = len(x)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}")
    n_jobs = _n_threads(settings.n_jobs)
    total = settings.total_iters

    def send_frame(coords: np.ndarray, done: int, message: str, **extra) -> None:
        frame = np.asarray(coords, dtype=np.float32).copy()
        if on_partial is not None:
            on_partial(frame)
        report(progress, "tsne", done, total, message, phase="optimise", coords=frame, **extra)

    report(progress, "tsne", 0, total, "Reducing dimensions", phase="pca")
    x = reduce_dims(x, settings.pca_dims, seed=settings.seed)
    check_cancel(cancel)
    init = initialization.pca(x, random_state=settings.seed)
    send_frame(init, 0, "Initial layout (PCA)")
    affinities = _affinities(x, settings, n_jobs, progress, cancel)
    check_cancel(cancel)
    embedding = TSNEEmbedding(
        init, affinities, negative_gradient_method=settings.negative_gradient_method,
        learning_rate=settings.learning_rate, n_jobs=n_jobs, random_state=settings.seed)
    done = 0
    for phase_iters, exaggeration in _phases(settings):
        remaining = phase_iters
        while remaining > 0:
            step = min(settings.step_iters, remaining)
            # inplace + the embedding's own optimizer keep gains and momentum across steps,
            # so stepping gives the same descent as one long call.
            embedding.optimize(step, exaggeration=exaggeration, momentum=0.8,
                               learning_rate=settings.learning_rate, inplace=True,
                               ints_in_interval=_grid_interval(embedding, settings))
            remaining -= step
            done += step
            check_cancel(cancel)
            send_frame(embedding, done, f"t-SNE iteration {done} / {total}",
                       kl=float(embedding.kl_divergence))
    return np.asarray(embedding, dtype=np.float32).copy()


# -- lasso containment -----------------------------------------------------------------

def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points lie inside a closed polygon (even-odd rule), vectorised over points.

    Candidates outside the polygon's bounding box are rejected first, so a small lasso on
    100,000 points only ray-tests the few inside its box.

    Args:
        points: (n, 2) x, y.
        polygon: (m, 2) vertices in order; the closing edge is implied. m < 3 selects nothing.

    Returns:
        bool (n,) mask.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(pts), dtype=bool)
    if len(poly) < 3 or len(pts) == 0:
        return inside
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    candidates = np.flatnonzero((pts[:, 0] >= lo[0]) & (pts[:, 0] <= hi[0])
                                & (pts[:, 1] >= lo[1]) & (pts[:, 1] <= hi[1]))
    if len(candidates) == 0:
        return inside
    px, py = pts[candidates, 0], pts[candidates, 1]
    crossings = np.zeros(len(candidates), dtype=bool)
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    # One edge at a time keeps memory at O(candidates) for lassos with many vertices.
    for ax, ay, bx, by in zip(x1, y1, x2, y2, strict=True):
        if ay == by:
            continue  # a horizontal edge never crosses a horizontal ray
        straddles = (ay > py) != (by > py)
        x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
        crossings ^= straddles & (px < x_cross)
    inside[candidates] = crossings
    return inside


# -- cache ----------------------------------------------------------------------------

def embeddings_fingerprint(image_ids: np.ndarray, embeddings: np.ndarray) -> str:
    """A short digest of ids and embeddings: a re-scored run gets a different one."""
    digest = hashlib.blake2b(digest_size=16)
    ids = np.ascontiguousarray(image_ids, dtype=np.int64)
    emb = np.ascontiguousarray(embeddings)
    digest.update(str((ids.shape, emb.shape, emb.dtype.str)).encode())
    digest.update(memoryview(ids).cast("B"))
    digest.update(memoryview(emb).cast("B"))
    return digest.hexdigest()


_CACHE_DTYPE = np.dtype([("id", "<i8"), ("xy", "<f4", (2,))])


class MapCache:
    """Finished 2-D maps of one run, stored as ``.npy`` files in ``run_dir/projections``.

    A file holds a structured array (image id, x, y), written atomically, so a reader sees
    either the whole map or none. The file name encodes the method and a hash of the
    result-relevant settings and of the embeddings' fingerprint.

    Args:
        run_dir: the run's folder (``workspace.run_dir(run_id)``).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.folder = Path(run_dir) / PROJECTIONS_DIR

    @staticmethod
    def key(method: str, settings: TSNESettings | None, fingerprint: str) -> str:
        if method not in METHODS:
            raise ValueError(f"unknown projection method {method!r}; choose from {METHODS}")
        parts = {"method": method, "embeddings": fingerprint,
                 "settings": settings.result_key() if method == "tsne" and settings else None}
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def path(self, method: str, settings: TSNESettings | None, fingerprint: str) -> Path:
        return self.folder / f"{method}-{self.key(method, settings, fingerprint)}.npy"

    def load(self, method: str, settings: TSNESettings | None, fingerprint: str,
             image_ids: np.ndarray | None = None) -> np.ndarray | None:
        """The cached (n, 2) float32 map, or None when absent, unreadable or for other ids.

        Args:
            image_ids: when given, the cached ids must equal them (same order).
        """
        path = self.path(method, settings, fingerprint)
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # absent or damaged: recompute
        if table.dtype != _CACHE_DTYPE:
            return None
        if image_ids is not None and not np.array_equal(table["id"], np.asarray(image_ids)):
            return None
        return np.ascontiguousarray(table["xy"], dtype=np.float32)

    def save(self, method: str, settings: TSNESettings | None, fingerprint: str,
             image_ids: np.ndarray, coords: np.ndarray) -> Path:
        """Store a map atomically; returns its path."""
        ids = np.asarray(image_ids, dtype=np.int64)
        xy = np.asarray(coords, dtype=np.float32)
        if xy.shape != (len(ids), 2):
            raise ValueError(f"coords shape {xy.shape} does not match {len(ids)} image ids")
        table = np.empty(len(ids), dtype=_CACHE_DTYPE)
        table["id"], table["xy"] = ids, xy
        path = self.path(method, settings, fingerprint)
        with atomic_write(path, "wb") as fh:
            np.save(fh, table, allow_pickle=False)
        return path

    def clear(self) -> int:
        """Delete every cached map of this run; returns how many files went."""
        removed = 0
        for path in self.folder.glob("*.npy"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed


def compute_map(embeddings: np.ndarray, image_ids: np.ndarray, method: str,
                       settings: TSNESettings | None = None, *,
                       cache: MapCache | None = None,
                       progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
                       on_partial=None) -> np.ndarray:
    """A map from the cache, or computed (and then cached).

    Args:
        embeddings: (n, d), aligned with ``image_ids``.
        image_ids: int64 (n,).
        method: ``'pca'`` or ``'tsne'``.
        settings: t-SNE settings (ignored for PCA).
        cache: where finished maps live; None computes every time.
        progress, cancel, on_partial: as in :func:`run_tsne`.

    Returns:
        float32 (n, 2).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose from {METHODS}")
    ids = np.asarray(image_ids, dtype=np.int64)
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} image ids for {len(embeddings)} embeddings")
    settings = settings or TSNESettings()
    fingerprint = embeddings_fingerprint(ids, embeddings) if cache else ""
    if cache is not None:
        cached = cache.load(method, settings, fingerprint, ids)
        if cached is not None:
            report(progress, method, 1, 1, "Loaded from cache", cached=True)
            return cached
    if method == "pca":
        coords = pca_2d(embeddings, seed=settings.seed)
    else:
        coords = run_tsne(embeddings, settings, progress=progress, cancel=cancel,
                          on_partial=on_partial)
    if cache is not None:
        cache.save(method, settings, fingerprint, ids, coords)
    return coords
