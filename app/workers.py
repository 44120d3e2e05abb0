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

A view that runs one kind of work at a time (a map, a heatmap, a folder being opened) owns
it through a :class:`TaskOwner` (Orange3's ``ConcurrentMixin``): starting cancels the
previous task, whose late progress, partial results and result never reach the view; it
reports busy; typed partial results (a t-SNE frame) arrive latest-first on the GUI thread::

    self.maps = TaskOwner(self, track=status_corner.track)
    self.maps.start(compute_map, embeddings, title="t-SNE map",
                    on_partial=self._show_frame, on_done=self._show_map,
                    on_failed=self._report, on_cancelled=self._fall_back)

Progress is throttled (:class:`core.progress.Throttle`), so a per-image callback over
30,000 images does not flood the event loop: at most one report per interval per task, plus
every change of stage and the final report.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot
from shiboken6 import isValid

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


def error_message(error: BaseException, data=None) -> str:
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
    partial = Signal()  # a newer partial result waits in Task._partial
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
        partial_results: also call ``fn`` with ``on_partial=``; each value it passes
            arrives as :attr:`partial`. When the GUI falls behind, only the newest waiting
            value is delivered (an animation skips frames instead of lagging).
        **kwargs: keyword arguments for ``fn``.

    Signals (all on the GUI thread; exactly one of done / failed / cancelled, then finished):
        progress(Progress): throttled progress reports.
        partial(object): a partial result (``partial_results`` only), before the outcome.
        done(object): ``fn`` returned this value.
        failed(object, str): ``fn`` raised this exception; the str is its traceback.
        cancelled(): ``fn`` stopped because :meth:`cancel` was called.
        finished(): the task is over, whatever the outcome.
    """

    progress = Signal(object)
    partial = Signal(object)
    done = Signal(object)
    failed = Signal(object, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, title: str = "",
                 progress_interval: float = 0.1, pool: QThreadPool | None = None,
                 partial_results: bool = False, **kwargs: Any) -> None:
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
        self._partial_results = partial_results
        self._partial_lock = threading.Lock()
        self._partial: list = []  # the newest undelivered partial result, if any
        self._relay = _Relay()
        self._relay.progress.connect(self._on_worker_progress)
        self._relay.partial.connect(self._on_worker_partial)
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
        extra = {"on_partial": self._send_partial} if self._partial_results else {}
        try:
            result = self.fn(*self.args, progress=self._report, cancel=self._cancel_event.is_set,
                             **extra, **self.kwargs)
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

    def _send_partial(self, value: Any) -> None:
        with self._partial_lock:
            waiting = bool(self._partial)
            self._partial[:] = [value]
        if not waiting:  # one queued signal at a time; it picks up the newest value
            self._relay.partial.emit()

    # -- back on the GUI thread ----------------------------------------------------
    @Slot(object)
    def _on_worker_progress(self, p: Progress) -> None:
        if self.state == "running":
            self.last_progress = p
            self.progress.emit(p)

    @Slot()
    def _on_worker_partial(self) -> None:
        with self._partial_lock:
            values, self._partial = self._partial, []
        if values and self.state == "running":
            self.partial.emit(values[0])

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


@dataclass
class _Handlers:
    """What a :class:`TaskOwner` calls for its current task (any may be None)."""

    on_progress: Callable[[Progress], None] | None
    on_partial: Callable[[Any], None] | None
    on_done: Callable[[Any], None] | None
    on_failed: Callable[[BaseException], None] | None
    on_cancelled: Callable[[], None] | None


class TaskOwner(QObject):
    """One kind of background work of a view: at most one task of it at a time.

    :meth:`start` cancels the task started before (if still running) and starts the new
    one. A replaced or :meth:`discard`-ed task is disconnected at once: whatever it still
    sends (progress, partial results, its result or failure) never reaches the view, so a
    view cannot show a stale answer and needs no "is this still my task?" checks. The
    handlers run on the GUI thread; the owner is idle again before the outcome's handler
    runs, so a handler may start the next task (a fallback, the newest request).

    Args:
        parent: the view (a deleted view's owner goes with it; its handlers are never
            called after).
        track: called with each new task before it starts (the status bar's corner shows
            it and Esc cancels it).
        launch: starts a task instead of a plain :class:`Task` — the main window's
            ``run_task(fn, *args, title=..., **kwargs) -> Task`` (status bar, Cancel, error
            box); ``track`` is then not used.

    Signals:
        busy_changed(bool): True when a task starts while idle, False when the owner is
            idle again (the task ended, or was discarded).
    """

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, *,
                 track: Callable[[Task], None] | None = None,
                 launch: Callable[..., Task] | None = None) -> None:
        super().__init__(parent)
        self._track = track
        self._launch = launch
        self._task: Task | None = None
        self._handlers: _Handlers | None = None
        self._when_idle: Callable[[], None] | None = None
        self._ending = False  # an outcome's handler runs: a task it starts continues "busy"

    @property
    def current(self) -> Task | None:
        """The task whose news the view gets (None when idle)."""
        return self._task

    @property
    def busy(self) -> bool:
        return self._task is not None

    def start(self, fn: Callable[..., Any], *args: Any, title: str,
              on_done: Callable[[Any], None] | None = None,
              on_failed: Callable[[BaseException], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              on_progress: Callable[[Progress], None] | None = None,
              on_partial: Callable[[Any], None] | None = None,
              **kwargs: Any) -> Task:
        """Run ``fn`` on a worker, replacing the current task (which is cancelled).

        Args:
            fn, *args, **kwargs: the core function and its arguments, as for :class:`Task`.
            title: what it does ("t-SNE map").
            on_done: gets the result. on_failed: gets the exception.
            on_cancelled: the task stopped because :meth:`cancel` was called.
            on_progress: gets each throttled ``Progress``.
            on_partial: gets each partial result; ``fn`` is then called with an
                ``on_partial=`` keyword to send them.

        Returns:
            The started task.
        """
        was_busy = self.busy or self._ending
        self._forget(cancel=True)
        if on_partial is not None:
            kwargs["partial_results"] = True
        if self._launch is not None:
            task = self._launch(fn, *args, title=title, **kwargs)
        else:
            task = Task(fn, *args, title=title, **kwargs)
        self._task = task
        self._handlers = _Handlers(on_progress, on_partial, on_done, on_failed, on_cancelled)
        task.progress.connect(self._on_progress)
        task.partial.connect(self._on_partial)
        task.done.connect(self._on_done)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        if self._launch is None:
            if self._track is not None:
                self._track(task)
            task.start()
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    def cancel(self) -> None:
        """Ask the current task to stop; its outcome (usually on_cancelled) still arrives."""
        if self._task is not None:
            self._task.cancel()

    def discard(self) -> None:
        """Stop the current task and forget it: nothing it sends reaches the handlers."""
        if self._forget(cancel=True):
            self._when_idle = None
            self.busy_changed.emit(False)

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current task's outcome is handled (at once if idle).

        Only the newest callback waits: a view asking again and again while busy runs its
        latest request once, after the running task (which is not cancelled).
        """
        if not self.busy:
            callback()
            return
        self._when_idle = callback

    # -- the current task's news ---------------------------------------------------
    def _forget(self, *, cancel: bool) -> Task | None:
        task, self._task, self._handlers = self._task, None, None
        if task is None:
            return None
        for signal, slot in ((task.progress, self._on_progress),
                             (task.partial, self._on_partial), (task.done, self._on_done),
                             (task.failed, self._on_failed),
                             (task.cancelled, self._on_cancelled)):
            signal.disconnect(slot)
        if cancel and task.is_running:
            task.cancel()
        return task

    def _handler(self, name: str):
        if not isValid(self) or self._handlers is None:
            return None
        return getattr(self._handlers, name)

    @Slot(object)
    def _on_progress(self, p: Progress) -> None:
        handler = self._handler("on_progress")
        if handler is not None:
            handler(p)

    @Slot(object)
    def _on_partial(self, value: Any) -> None:
        handler = self._handler("on_partial")
        if handler is not None:
            handler(value)

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._end("on_done", result)

    @Slot(object, str)
    def _on_failed(self, error: BaseException, _trace: str) -> None:
        self._end("on_failed", error)

    @Slot()
    def _on_cancelled(self) -> None:
        self._end("on_cancelled")

    def _end(self, name: str, *values: Any) -> None:
        if not isValid(self) or self._handlers is None:
            return
        handler = getattr(self._handlers, name)
        self._forget(cancel=False)
        waiting, self._when_idle = self._when_idle, None
        self._ending = True
        try:
            if handler is not None:
                handler(*values)
        finally:
            self._ending = False
            if not self.busy:
                self.busy_changed.emit(False)
                if waiting is not None:
                    waiting()
