"""Run one core function off the GUI thread and hear about it on the GUI thread.

Every long job of the GUI (opening a folder, demo data, training, scoring, t-SNE, export)
is a :class:`Task`: the core function runs on a worker thread with core's usual ``progress``
and ``cancel`` keyword arguments, and the task re-emits what happens as Qt signals that are
always delivered on the GUI thread::

    task = Task(open_dataset, folder, title="Opening folder")
    task.progress.connect(bar.on_progress)      # core.progress.Progress, throttled
    task.done.connect(self._on_opened)          # the function's return value
    task.failed.connect(show_error)             # (exception, traceback text)
    task.cancelled.connect(...)                 # the function raised core.progress.Cancelled
    task.start()
    ...
    task.cancel()                               # the function's cancel() now returns True

Progress is throttled (:class:`core.progress.Throttle`), so a per-image callback over
30,000 images does not flood the event loop: at most one report per interval per task, plus
every change of stage and the final report.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from core.progress import Cancelled, Progress, Throttle

log = logging.getLogger(__name__)

# Tasks keep themselves alive while they run, so a caller that drops its reference does not
# lose the result (a deleted receiver would silently swallow the queued signals).
_RUNNING: set[Task] = set()
_POOL: QThreadPool | None = None


def task_pool() -> QThreadPool:
    """The pool long tasks run in, apart from the global pool (thumbnails keep flowing)."""
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setObjectName("diesight-tasks")
        # Several long tasks may overlap (scoring while a folder opens); the heavy lifting
        # inside them (torch, numpy) uses its own threads, so a few slots are enough.
        _POOL.setMaxThreadCount(4)
    return _POOL


def describe_error(error: BaseException, data=None) -> str:
    """A one-line message for a status bar or a message box: for the errors a user can
    cause, the same line the command line prints (core.errors: "disk full: ...", a damaged
    workspace naming the file and ``diesight repair``, a diverged run, ...); anything else
    (a bug) keeps its type name so it can be reported. ``data``: the dataset folder."""
    from core.errors import user_message

    text = user_message(error, data)
    if text:
        return text
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def is_user_error(error: BaseException) -> bool:
    """True when ``error`` is one a user can cause: its dialog shows no traceback."""
    from core.errors import is_user_error as core_is_user_error

    return core_is_user_error(error)


class _Relay(QObject):
    """Carries the worker thread's news to the task (queued, so it lands on the GUI thread)."""

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(object, str)
    cancelled = Signal()


class _Runnable(QRunnable):
    def __init__(self, job: Callable[[], None]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Task owns it; Qt deleting it under Python crashes
        self._job = job

    def run(self) -> None:
        self._job()


class Task(QObject):
    """One call of a core function on a worker thread.

    Args:
        fn: the core function; called as ``fn(*args, progress=..., cancel=..., **kwargs)``.
        *args: positional arguments for ``fn``.
        title: what the task does, for a status bar ("Opening folder").
        progress_interval: seconds between two progress signals (the throttle).
        pool: the thread pool to run in (default :func:`task_pool`).
        **kwargs: keyword arguments for ``fn``.

    Signals (all on the GUI thread; exactly one of done / failed / cancelled, then finished):
        progress(Progress): throttled progress reports.
        done(object): ``fn`` returned this value.
        failed(object, str): ``fn`` raised this exception; the str is its traceback.
        cancelled(): ``fn`` stopped because :meth:`cancel` was called.
        finished(): the task is over, whatever the outcome.
    """

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(object, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, title: str = "",
                 progress_interval: float = 0.1, pool: QThreadPool | None = None,
                 **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.title = title or getattr(fn, "__name__", "task")
        self.state = "new"  # new / running / done / failed / cancelled
        self.result: Any = None
        self.error: BaseException | None = None
        self.last_progress: Progress | None = None
        self._pool = pool
        self._cancel_event = threading.Event()
        self._throttle = Throttle(progress_interval)
        self._throttle_lock = threading.Lock()
        self._last_stage: str | None = None
        self._relay = _Relay()
        self._relay.progress.connect(self._on_worker_progress)
        self._relay.done.connect(self._on_worker_done)
        self._relay.failed.connect(self._on_worker_failed)
        self._relay.cancelled.connect(self._on_worker_cancelled)
        self._runnable = _Runnable(self._run_in_worker)

    # -- control (GUI thread) ------------------------------------------------------
    def start(self) -> Task:
        """Queue the function on the pool; returns self for chaining."""
        if self.state != "new":
            raise RuntimeError(f"task {self.title!r} was already started")
        self.state = "running"
        _RUNNING.add(self)
        (self._pool or task_pool()).start(self._runnable)
        return self

    def cancel(self) -> None:
        """Ask the function to stop at its next cancel check (returns at once)."""
        self._cancel_event.set()

    @property
    def is_running(self) -> bool:
        return self.state == "running"

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_event.is_set()

    # -- worker thread -------------------------------------------------------------
    def _run_in_worker(self) -> None:
        try:
            result = self.fn(*self.args, progress=self._report, cancel=self._cancel_event.is_set,
                             **self.kwargs)
        except Cancelled:
            self._relay.cancelled.emit()
        except BaseException as error:  # noqa: BLE001 - every failure must reach the user
            self._relay.failed.emit(error, traceback.format_exc())
        else:
            self._relay.done.emit(result)

    def _report(self, p: Progress) -> None:
        # Core may report from several of its own threads, hence the lock.
        with self._throttle_lock:
            new_stage = p.stage != self._last_stage
            last = bool(p.total) and p.done >= p.total
            if not self._throttle.ready(final=new_stage or last):
                return
            self._last_stage = p.stage
        self._relay.progress.emit(p)

    # -- back on the GUI thread ----------------------------------------------------
    @Slot(object)
    def _on_worker_progress(self, p: Progress) -> None:
        if self.state == "running":
            self.last_progress = p
            self.progress.emit(p)

    @Slot(object)
    def _on_worker_done(self, result: Any) -> None:
        self.result = result
        self._finish("done", self.done, result)

    @Slot(object, str)
    def _on_worker_failed(self, error: BaseException, trace: str) -> None:
        self.error = error
        log.error("Task %r failed:\n%s", self.title, trace)
        self._finish("failed", self.failed, error, trace)

    @Slot()
    def _on_worker_cancelled(self) -> None:
        self._finish("cancelled", self.cancelled)

    def _finish(self, state: str, signal, *values: Any) -> None:
        self.state = state
        try:
            signal.emit(*values)
        finally:
            self.finished.emit()
            _RUNNING.discard(self)


def running_tasks() -> list[Task]:
    """Tasks started and not yet finished (for a clean shutdown)."""
    return list(_RUNNING)
