"""The decoded-image cache: one file of uint8 grayscale rows, memory-mapped read-only.

Row ``i`` of the file holds image id ``i`` (height x width bytes), so the whole lot is one
``np.memmap`` of shape (rows, H, W) that views and training slice without copying, and
a 30,000-image lot costs no resident memory until pixels are touched.

Decoding runs in a process pool. Workers write pixels straight into the file with
``os.pwrite`` and return only metadata, so the parent never copies pixels. The parent
syncs the file to disk *before* it hands a batch of results to ``commit`` (which marks
the rows valid in the database): a killed or cancelled run therefore never leaves a
database row pointing at pixels that were not written, and the next open finishes the job.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.imagefile import UnreadableImage, decode_failure_reason, decode_gray, read_size
from core.progress import CancelCheck, Cancelled, ProgressFn, Throttle, check_cancel, report

CACHE_FILE_NAME = "images.u8"
LOCK_FILE_NAME = "open.lock"

# Below this many files a pool costs more to start (a fork, or a fresh interpreter per
# worker under 'spawn') than it saves, so the parent decodes them itself.
IN_PROCESS_LIMIT = 256
MAX_CHUNK = 256
MIN_CHUNK = 16
# Results are committed (after one fdatasync) at most this often: one sync per chunk
# would stall the parent on the disk 100+ times per lot.
COMMIT_INTERVAL_S = 1.0


class DecodeResult(NamedTuple):
    """What a worker reports for one file; ``reason`` is None when the row was written.

    ``content_hash`` is the :func:`content_hash` of the bytes the row was decoded from.
    A NamedTuple: 30,000 of them cross the process boundary, and tuples pickle cheapest.
    """

    row: int
    orig_width: int
    orig_height: int
    reason: str | None = None
    content_hash: bytes | None = None


Job = tuple[int, str]  # (row, absolute path)
CommitFn = Callable[[list[DecodeResult]], None]


class ImageCache:
    """The cache file of a workspace: fixed-size rows of (height, width) uint8 pixels."""

    def __init__(self, path: str | os.PathLike, height: int, width: int) -> None:
        self.path = Path(path)
        self.height = height
        self.width = width
        self.row_bytes = height * width

    def rows_stored(self) -> int:
        """How many whole rows the file holds (0 when it does not exist)."""
        try:
            return self.path.stat().st_size // self.row_bytes
        except FileNotFoundError:
            return 0

    def ensure_rows(self, rows: int) -> None:
        """Grow the file (sparsely) to hold ``rows`` rows; it never shrinks."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            if fh.tell() < rows * self.row_bytes:
                fh.truncate(rows * self.row_bytes)

    def open_readonly(self) -> np.ndarray:
        """The whole cache as a read-only (rows, H, W) memmap."""
        rows = self.rows_stored()
        if rows == 0:
            return np.zeros((0, self.height, self.width), dtype=np.uint8)
        return np.memmap(self.path, dtype=np.uint8, mode="r",
                         shape=(rows, self.height, self.width))


def content_hash(data: bytes) -> bytes:
    """The fingerprint of a file's bytes that tells a replaced image from the one decoded.

    BLAKE2b cut to 128 bits: faster than SHA-256 or MD5 in CPython, and far from any
    accidental collision among a dataset's files.
    """
    return hashlib.blake2b(data, digest_size=16).digest()


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file.

    Raises:
        UnreadableImage: the file cannot be read (the reason a user can act on).
    """
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UnreadableImage(decode_failure_reason(exc, path)) from exc


def most_common_size(paths: Sequence[str], sample: int = 64) -> tuple[int, int] | None:
    """The most frequent (height, width) among evenly spaced files' headers.

    Only headers are read, so this costs milliseconds even for a big lot. Ties go to the
    larger size (less detail lost by resizing). None when no sampled file is readable.
    """
    if not paths:
        return None
    step = max(1, len(paths) // sample)
    sizes = [size for size in (read_size(p) for p in paths[::step]) if size is not None]
    if not sizes and step > 1:  # every sampled file broken: try them all before giving up
        sizes = [size for size in (read_size(p) for p in paths) if size is not None]
    if not sizes:
        return None
    counts: dict[tuple[int, int], int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    return max(counts, key=lambda size: (counts[size], size[0] * size[1]))


# --- workers ---------------------------------------------------------------------------

_worker_target: tuple[int, int, int] | None = None  # (fd, height, width) in a pool worker


def _init_worker(cache_path: str, height: int, width: int, parent_pid: int) -> None:
    global _worker_target
    die_with_parent(parent_pid)
    _worker_target = (os.open(cache_path, os.O_WRONLY), height, width)


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid`` ends, however it ends.

    A pool worker orphaned by a kill -9 of its parent would otherwise wait for ever on its
    task pipe (it holds the pipe's write end too) and keep every descriptor it inherited.
    On Linux the kernel sends SIGKILL at the parent's death (PR_SET_PDEATHSIG); a parent
    that died before that was set is caught by the parent-pid check after it.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no usable libc: the watchdog below still runs
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    if not sys.platform.startswith("linux"):
        _start_parent_watchdog(parent_pid)


_PR_SET_PDEATHSIG = 1


def _start_parent_watchdog(parent_pid: int) -> None:
    """Elsewhere: a daemon thread that ends the process once it is orphaned."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _decode_chunk_in_worker(jobs: list[Job]) -> list[DecodeResult]:
    assert _worker_target is not None, "worker not initialised"
    return decode_chunk(jobs, *_worker_target)


def decode_chunk(jobs: list[Job], fd: int, height: int, width: int) -> list[DecodeResult]:
    """Decode files and write each into its row of the cache file open as ``fd``.

    Each file is read once: its bytes are hashed (the result's ``content_hash``) and
    decoded from memory. Never raises for a bad file: its result carries the reason instead.
    """
    row_bytes = height * width
    results = []
    for row, path in jobs:
        try:
            data = read_image_bytes(path)
            pixels, (orig_width, orig_height) = decode_gray(path, (height, width), data=data)
            _write_row(fd, pixels, row * row_bytes)
        except UnreadableImage as exc:
            results.append(DecodeResult(row, 0, 0, str(exc)))
            continue
        except OSError as exc:  # the cache itself failed (disk full?): that is fatal
            raise OSError(f"cannot write the image cache: {exc.strerror or exc}") from exc
        results.append(DecodeResult(row, orig_width, orig_height, None, content_hash(data)))
    return results


def _write_row(fd: int, pixels: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(pixels)).cast("B")
    while view:  # pwrite may write less than asked (rare, but then the row would be torn)
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _chunks(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start:start + size]


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    from core.device import cpu_count

    return cpu_count()


# --- the parent --------------------------------------------------------------------------


class _Committer:
    """Collects results and hands them to ``commit`` after syncing the cache file."""

    def __init__(self, cache: ImageCache, commit: CommitFn, progress: ProgressFn | None,
                 total: int) -> None:
        self.cache = cache
        self.commit = commit
        self.progress = progress
        self.total = total
        self.done = 0
        self.pending: list[DecodeResult] = []
        self.last_commit = time.monotonic()
        self.started = time.monotonic()
        self.throttle = Throttle(0.2)

    def add(self, results: list[DecodeResult]) -> None:
        self.pending.extend(results)
        self.done += len(results)
        if time.monotonic() - self.last_commit >= COMMIT_INTERVAL_S:
            self.flush()
        if self.throttle.ready(final=self.done == self.total):
            rate = self.done / max(time.monotonic() - self.started, 1e-6)
            report(self.progress, "decode", self.done, self.total,
                   f"{self.done:,}/{self.total:,} images ({rate:,.0f}/s)", images_per_s=rate)

    def flush(self) -> None:
        if self.pending:
            fd = os.open(self.cache.path, os.O_RDONLY)
            try:
                _sync(fd)  # pixels reach the disk before the rows are marked valid
            finally:
                os.close(fd)
            batch, self.pending = self.pending, []
            self.commit(batch)
        self.last_commit = time.monotonic()


# fdatasync skips the metadata flush fsync also does; macOS only has fsync.
_sync = getattr(os, "fdatasync", os.fsync)


def decode_into_cache(cache: ImageCache, jobs: list[Job], commit: CommitFn, *,
                      workers: int | None = None, progress: ProgressFn | None = None,
                      cancel: CancelCheck | None = None) -> None:
    """Decode ``jobs`` into their cache rows, committing results in synced batches.

    Args:
        cache: the cache file; it must already hold every job's row (``ensure_rows``).
        jobs: (row, absolute path) pairs.
        commit: called with batches of results once their pixels are on disk.
        workers: processes to use (default: all CPUs); 1 decodes in this process.
        progress: receives 'decode' reports.
        cancel: checked between chunks.

    Raises:
        Cancelled: after committing every chunk that finished.
    """
    if not jobs:
        return
    workers = workers or default_workers()
    committer = _Committer(cache, commit, progress, len(jobs))
    try:
        if workers == 1 or len(jobs) <= IN_PROCESS_LIMIT:
            _decode_here(cache, jobs, committer, cancel)
        else:
            _decode_in_pool(cache, jobs, committer, workers, cancel)
    finally:
        committer.flush()


def _decode_here(cache: ImageCache, jobs: list[Job], committer: _Committer,
                 cancel: CancelCheck | None) -> None:
    fd = os.open(cache.path, os.O_WRONLY)
    try:
        for chunk in _chunks(jobs, 32):
            check_cancel(cancel)
            committer.add(decode_chunk(chunk, fd, cache.height, cache.width))
    finally:
        os.close(fd)


def _decode_in_pool(cache: ImageCache, jobs: list[Job], committer: _Committer, workers: int,
                    cancel: CancelCheck | None) -> None:
    chunk_size = max(MIN_CHUNK, min(MAX_CHUNK, math.ceil(len(jobs) / (workers * 4))))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                               initializer=_init_worker,
                               initargs=(str(cache.path), cache.height, cache.width,
                                         os.getpid()))
    chunk_of: dict[Future, list[Job]] = {}
    cancelled = False
    try:
        for chunk in _chunks(jobs, chunk_size):
            chunk_of[pool.submit(_decode_chunk_in_worker, chunk)] = chunk
        pending = set(chunk_of)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in finished:
                if not future.cancelled():
                    committer.add(future.result())
                    del chunk_of[future]
            if not cancelled and cancel is not None and cancel():
                cancelled = True
                for future in pending:
                    future.cancel()  # chunks already running finish and are kept
                pending = {f for f in pending if not f.cancelled()}
    except BrokenProcessPool:
        # A worker died (killed, out of memory, or a main script without a __main__
        # guard under 'spawn'): finish the chunks it left here rather than fail the open.
        pool.shutdown(wait=True, cancel_futures=True)
        leftover = [job for chunk in chunk_of.values() for job in chunk]
        _decode_here(cache, leftover, committer, cancel)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if cancelled:
        raise Cancelled()


def _pool_context() -> multiprocessing.context.BaseContext:
    """'fork' where it is safe and cheap, 'spawn' otherwise.

    Forking a multi-threaded process (the GUI runs this from a worker thread of a Qt
    process) can deadlock the child, so only a single-threaded process without Qt forks;
    spawn costs a fresh interpreter per worker and re-imports the main script.
    """
    if (sys.platform.startswith("linux") and threading.active_count() == 1
            and not any(name.startswith("PySide6") for name in sys.modules)):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


# --- one open at a time ------------------------------------------------------------------


@contextmanager
def exclusive_open(workspace_path: str | os.PathLike, cancel: CancelCheck | None = None,
                   progress: ProgressFn | None = None):
    """Hold the workspace's open lock, so two opens never decode into it at once.

    Two locks, both released by the kernel or the interpreter when their owner ends:

    * between processes, a POSIX record lock (``fcntl.lockf``) on ``open.lock``. Unlike
      ``flock``, a record lock belongs to the process, not to the open file: a forked
      decode worker never holds it, so a kill -9 of the opener frees it at once even if
      a worker lingered;
    * between threads of this process (record locks do not exclude those), a
      ``threading.Lock`` per workspace.
    """
    key = str(Path(workspace_path).resolve())
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    waited = _wait_for(lambda: thread_lock.acquire(blocking=False), False, cancel,
                       progress)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock available
            yield
            return
        fd = os.open(Path(workspace_path) / LOCK_FILE_NAME,
                     os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            def try_lock() -> bool:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except OSError:  # EACCES or EAGAIN: held by another process
                    return False

            _wait_for(try_lock, waited, cancel, progress)
            try:  # who holds it, for a person looking at the file; never worth failing for
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass
            yield
        finally:
            os.close(fd)  # closing drops the record lock
    finally:
        thread_lock.release()


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _wait_for(try_acquire: Callable[[], bool], waited: bool, cancel: CancelCheck | None,
              progress: ProgressFn | None) -> bool:
    """Poll ``try_acquire`` until it succeeds, saying once that it waits (unless ``waited``
    says that was said already); returns whether it waited."""
    while not try_acquire():
        if not waited:
            report(progress, "wait", message="Waiting for another DieSight process "
                                             "that is opening this folder...")
            waited = True
        check_cancel(cancel)
        time.sleep(0.1)
    return waited
