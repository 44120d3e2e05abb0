"""Realistic synthetic inspection images, with ground truth, in the public Kaggle "Nexperia" layout.

DieSight needs data to demo, test and benchmark on without shipping the real Kaggle set. This
module draws semiconductor parts lying in carrier-tape pockets the way the Nexperia camera sees
them (267 rows x 275 columns, 8-bit grayscale JPEG): a mostly dark frame, bright bracket-shaped
pocket walls left and right, bright tape edges near the top and bottom, a dark package body in
the centre with faint (often upside-down) marking and a band of fine bright stripes, and bright
metallic leads above and below. Every image gets its own exposure, blur, noise and a few pixels
of jitter, and about ``bad_fraction`` of them one of 13 planted defects, from obvious (empty
pocket, two parts) to subtle (a small particle, a slightly rotated part), recorded with a
severity and a bounding box.

That is the default "mixed" demo style. :mod:`core.demostyles` defines others (another fab's
product, pocket, lighting, noise and defect mix) from the same renderer, through the optional
:class:`Product` fields and :class:`Lighting`; ``generate_demo_data(..., style=NAME)`` draws one.

Written layout::

    OUT/train/good_0/<32 hex>.jpg
    OUT/train/bad_1/<32 hex>.jpg
    OUT/test/all_tests/<32 hex>.jpg      (unlabelled on disk, like Kaggle)
    OUT/ground_truth.csv                 (one row per image, see GROUND_TRUTH_COLUMNS)

The output depends only on ``seed``: the label/split plan comes from ``SeedSequence(seed)`` and
everything about image ``i`` (file name included) from ``SeedSequence(seed, spawn_key=(i,))``, so
any worker count writes the same bytes.

This module plans and writes the data set; the pictures come from :mod:`core.demo_scene`
(products, pocket, lighting) and :mod:`core.demo_render` (defects, :func:`render_part`).
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from core.atomic import atomic_write

# The renderer's public names, importable from here as before the split.
from core.demo_render import (  # noqa: F401
    DEFECT_TYPES,
    DEFECT_WEIGHTS,
    SUBTLE_FRACTION,
    pick_product,
    render_part,
)
from core.demo_scene import IMAGE_SHAPE, PRODUCTS, Lighting, Product  # noqa: F401
from core.demostyles import DemoStyle, get_style
from core.progress import CancelCheck, Cancelled, ProgressFn, Throttle, check_cancel, report

GROUND_TRUTH_NAME = "ground_truth.csv"
GROUND_TRUTH_COLUMNS = ("id", "label", "defect_type", "severity", "split",
                        "bbox_x", "bbox_y", "bbox_w", "bbox_h")
FOLDERS = {("train", 0): "train/good_0", ("train", 1): "train/bad_1",
           ("test", 0): "test/all_tests", ("test", 1): "test/all_tests"}
NO_DEFECT = "none"


# --- the data set ---------------------------------------------------------------------------------

class _Job(NamedTuple):
    index: int
    label: int
    split: str
    defect: str | None
    severity: float


class _Row(NamedTuple):
    index: int
    id: str
    label: int
    defect: str
    severity: float
    split: str
    bbox: tuple[int, int, int, int] | None


@dataclass
class DemoSummary:
    """What :func:`generate_demo_data` wrote.

    Attributes:
        out: the data set's root folder.
        ground_truth: path of the ground-truth CSV.
        counts: ``{split: {"good": n, "bad": n}}`` for "train" and "test".
        defects: number of bad images per defect type of the style.
        seconds: wall time of the whole run.
        style: name of the demo style drawn (see :mod:`core.demostyles`).
    """

    out: Path
    ground_truth: Path
    counts: dict[str, dict[str, int]]
    defects: dict[str, int]
    seconds: float
    style: str = "mixed"

    @property
    def images(self) -> int:
        return sum(n for split in self.counts.values() for n in split.values())

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _style(name: str) -> DemoStyle:
    return get_style(name)


def _plan(n: int, bad_fraction: float, test_fraction: float, seed: int,
          style: DemoStyle) -> list[_Job]:
    """Labels, splits, defect types and severities for all images (from the seed alone)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n_bad = round(n * bad_fraction)
    order = rng.permutation(n)
    bad = np.zeros(n, bool)
    bad[order[:n_bad]] = True
    test = np.zeros(n, bool)
    for members in (np.flatnonzero(bad), np.flatnonzero(~bad)):   # stratified test split
        test[rng.permutation(members)[:round(len(members) * test_fraction)]] = True
    types = style.defect_types
    weights = np.array([style.defect_weights[t] for t in types], float)
    kinds = rng.choice(len(types), size=n, p=weights / weights.sum())
    subtle = rng.random(n) < style.subtle_fraction
    severity = np.where(subtle, rng.uniform(0.12, 0.35, n), rng.uniform(0.35, 1.0, n))
    return [_Job(i, int(bad[i]), "test" if test[i] else "train",
                 types[kinds[i]] if bad[i] else None,
                 round(float(severity[i]), 3) if bad[i] else 0.0)
            for i in range(n)]


def _write_jpeg(path: Path, pixels: np.ndarray, quality: int) -> None:
    """Encodes in memory, writes a hidden temp file and renames it into place, so a killed run
    never leaves a half-written JPEG. No fsync per image: that would cost more than the render
    and only matters for power loss, which a demo set can simply regenerate after."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _make_image(out: Path, seed: int, style: DemoStyle, job: _Job) -> _Row:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(job.index,)))
    name = rng.bytes(16).hex()
    pixels, bbox = style.render(rng, job.defect, job.severity)
    _write_jpeg(out / FOLDERS[job.split, job.label] / f"{name}.jpg", pixels, style.jpeg_quality)
    return _Row(job.index, name, job.label, job.defect or NO_DEFECT, job.severity, job.split, bbox)


def _render_chunk(out: str, seed: int, style: str, jobs: list[_Job]) -> list[_Row]:
    """Worker entry point: renders and writes a run of images (the style travels by name,
    since a style's render function need not pickle)."""
    drawn = _style(style)
    return [_make_image(Path(out), seed, drawn, job) for job in jobs]


def _chunks_in_process(out: Path, seed: int, style: str, chunks: list[list[_Job]],
                       cancel: CancelCheck | None) -> Iterator[list[_Row]]:
    for chunk in chunks:
        check_cancel(cancel)
        yield _render_chunk(str(out), seed, style, chunk)


def _chunks_in_pool(out: Path, seed: int, style: str, chunks: list[list[_Job]], workers: int,
                    cancel: CancelCheck | None) -> Iterator[list[_Row]]:
    """Runs chunks on a process pool, a few at a time so that a cancel takes effect soon.

    On cancel the chunks already handed to workers still finish (their files are complete and
    get ground-truth rows); then :class:`Cancelled` is raised.
    """
    # "spawn": the GUI calls this from a thread, and forking a threaded Qt process is unsafe.
    context = multiprocessing.get_context("spawn")
    todo = deque(chunks)
    cancelled = False
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        running = deque(pool.submit(_render_chunk, str(out), seed, style, todo.popleft())
                        for _ in range(min(len(todo), 2 * workers)))
        while running:
            yield running.popleft().result()
            cancelled = cancelled or (cancel is not None and cancel())
            if todo and not cancelled:
                running.append(pool.submit(_render_chunk, str(out), seed, style,
                                           todo.popleft()))
    if cancelled:
        raise Cancelled()


def _default_workers(n: int) -> int:
    from core.device import cpu_count

    return max(1, min(cpu_count(), n // 150))   # a small set is done before a pool would even start


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; demo data is written to a new or empty folder")
    for folder in set(FOLDERS.values()):
        (out / folder).mkdir(parents=True, exist_ok=True)


def _write_ground_truth(path: Path, rows: list[_Row]) -> None:
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(GROUND_TRUTH_COLUMNS)
        for r in sorted(rows):
            box = [str(v) for v in r.bbox] if r.bbox is not None else ["", "", "", ""]
            writer.writerow([r.id, r.label, r.defect, f"{r.severity:.3f}", r.split, *box])


def _validate(n: int, bad_fraction: float, test_fraction: float, seed: int,
              workers: int | None, style: str) -> DemoStyle:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction must be within 0..1, got {bad_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be within 0..1 (1 excluded), got {test_fraction}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return _style(style)


def _summarise(out: Path, rows: list[_Row], seconds: float, style: DemoStyle) -> DemoSummary:
    counts = {split: {"good": 0, "bad": 0} for split in ("train", "test")}
    defects = dict.fromkeys(style.defect_types, 0)
    for r in rows:
        counts[r.split]["bad" if r.label else "good"] += 1
        if r.label:
            defects[r.defect] += 1
    return DemoSummary(out, out / GROUND_TRUTH_NAME, counts, defects, seconds, style.name)


def generate_demo_data(out: str | os.PathLike, n: int = 3000, bad_fraction: float = 0.1,
                       seed: int = 0, *, test_fraction: float = 0.2, workers: int | None = None,
                       progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
                       style: str = "mixed") -> DemoSummary:
    """Writes a labelled synthetic image set in the Kaggle Nexperia layout.

    Args:
        out: a new or empty folder.
        n: number of images.
        bad_fraction: share of defective images (exactly ``round(n * bad_fraction)``).
        seed: the output is a function of the seed alone (not of ``workers``).
        test_fraction: share of images (of each class) put into ``test/all_tests``.
        workers: processes rendering in parallel; None picks one per CPU for large sets.
        progress: receives ``Progress("demo", done, n, ...)`` reports.
        cancel: checked between batches of images.
        style: the demo style ("fab") to draw, a name from :data:`core.demostyles.STYLES`;
            it decides the look, the defect types and their mix, and the JPEG quality.

    Returns:
        Counts per split and class, counts per defect type, and the time taken.

    Raises:
        ValueError: a parameter is out of range, or the style is unknown.
        FileExistsError: ``out`` holds files already.
        Cancelled: ``cancel`` returned True. The images written so far are complete and
            ``ground_truth.csv`` lists exactly them, so the folder stays consistent.
    """
    drawn = _validate(n, bad_fraction, test_fraction, seed, workers, style)
    start = time.monotonic()
    out = Path(out)
    _prepare(out)
    jobs = _plan(n, bad_fraction, test_fraction, seed, drawn)
    workers = workers or _default_workers(n)
    size = max(4, min(48, math.ceil(n / (4 * workers))))
    chunks = [jobs[i:i + size] for i in range(0, n, size)]
    batches = (_chunks_in_process(out, seed, drawn.name, chunks, cancel) if workers == 1
               else _chunks_in_pool(out, seed, drawn.name, chunks, workers, cancel))
    rows: list[_Row] = []
    throttle = Throttle()
    try:
        for batch in batches:
            rows.extend(batch)
            if throttle.ready(final=len(rows) == n):
                rate = len(rows) / max(1e-9, time.monotonic() - start)
                report(progress, "demo", len(rows), n, f"{rate:.0f} images/s", images_per_s=rate)
    finally:
        # Also on cancel or a worker failure: the ground truth lists exactly the finished files.
        _write_ground_truth(out / GROUND_TRUTH_NAME, rows)
    return _summarise(out, rows, time.monotonic() - start, drawn)
