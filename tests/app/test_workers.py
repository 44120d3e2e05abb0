"""Task: results, failures and cancellation arrive on the GUI thread; progress is throttled."""

from __future__ import annotations

import threading
import time

import pytest

from app.workers import Task, error_message, running_tasks
from core.progress import Progress, check_cancel, report


def _add(a, b, *, progress=None, cancel=None):
    report(progress, "add", 1, 1)
    return a + b, threading.current_thread() is threading.main_thread()


def _explode(*, progress=None, cancel=None):
    raise RuntimeError("sensor on fire")


def _count_until_cancelled(started: threading.Event, *, progress=None, cancel=None):
    for i in range(10_000):
        check_cancel(cancel)
        report(progress, "count", i, 10_000)
        started.set()
        time.sleep(0.001)
    return "finished without noticing the cancel"


def _flood(n, *, progress=None, cancel=None):
    for i in range(1, n + 1):
        report(progress, "flood", i, n)
    return n


def test_done_delivers_result_on_gui_thread(qtbot):
    task = Task(_add, 2, b=3, title="adding")
    handled_on = []
    task.done.connect(lambda result: handled_on.append(threading.current_thread()))
    with qtbot.waitSignal(task.finished, timeout=5000):
        task.start()
    assert task.state == "done"
    assert task.result == (5, False)  # the function itself ran on a worker thread
    assert handled_on == [threading.main_thread()]
    assert task not in running_tasks()


def test_failure_carries_exception_and_traceback(qtbot):
    task = Task(_explode, title="exploding")
    with qtbot.waitSignal(task.failed, timeout=5000) as failed:
        task.start()
    error, trace = failed.args
    assert isinstance(error, RuntimeError)
    assert "_explode" in trace and "sensor on fire" in trace
    assert task.state == "failed" and task.error is error


def test_cancel_stops_the_function(qtbot):
    started = threading.Event()
    task = Task(_count_until_cancelled, started, title="counting")
    outcomes = []
    task.done.connect(lambda r: outcomes.append("done"))
    task.cancelled.connect(lambda: outcomes.append("cancelled"))
    task.start()
    assert started.wait(5)
    task.cancel()
    qtbot.waitUntil(lambda: not task.is_running, timeout=5000)
    assert outcomes == ["cancelled"]
    assert task.cancel_requested


def test_progress_is_throttled_but_keeps_the_final_report(qtbot):
    task = Task(_flood, 30_000, title="flooding", progress_interval=0.05)
    received: list[Progress] = []
    task.progress.connect(received.append)
    with qtbot.waitSignal(task.finished, timeout=10_000):
        task.start()
    assert task.result == 30_000
    assert 1 <= len(received) < 200  # not 30,000 queued events
    assert (received[-1].done, received[-1].total) == (30_000, 30_000)


def test_a_task_cannot_start_twice(qtbot):
    task = Task(_add, 1, 1)
    with qtbot.waitSignal(task.finished, timeout=5000):
        task.start()
    with pytest.raises(RuntimeError):
        task.start()


@pytest.mark.parametrize(("error", "expected"), [
    (ValueError("n must be positive"), "n must be positive"),
    (FileExistsError("out holds files already"), "out holds files already"),
    (KeyError("x"), "KeyError: 'x'"),
    (RuntimeError(), "RuntimeError"),
])
def test_error_message(error, expected):
    assert error_message(error) == expected


# -- TaskOwner: one task at a time, stale news dropped -----------------------------------------

from dataclasses import dataclass  # noqa: E402

from app.workers import TaskOwner  # noqa: E402


def _wait_then_return(value, release: threading.Event, *, progress=None, cancel=None):
    release.wait(5)
    report(progress, "wait", 1, 1)
    return value


@dataclass(frozen=True)
class _Frame:
    step: int


def _frames(n, *, progress=None, cancel=None, on_partial=None):
    for step in range(n):
        check_cancel(cancel)
        on_partial(_Frame(step))
    return n


def test_owner_start_cancels_the_previous_task_and_drops_its_late_result(qtbot):
    owner = TaskOwner()
    results, busy = [], []
    owner.busy_changed.connect(busy.append)
    release = threading.Event()
    first = owner.start(_wait_then_return, "old", release, title="first",
                        on_done=results.append, on_progress=lambda p: results.append("progress"))
    already = threading.Event()
    already.set()
    second = owner.start(_wait_then_return, "new", already, title="second",
                         on_done=results.append)
    assert first.cancel_requested and owner.current is second
    release.set()  # the first one ignores its cancel check and returns anyway
    qtbot.waitUntil(lambda: not first.is_running and not second.is_running, timeout=10000)
    assert first.state == "done" and first.result == "old"
    assert results == ["new"]  # neither the old result nor its progress reached the view
    assert busy == [True, False] and not owner.busy


def test_owner_delivers_typed_partial_results_newest_first_then_the_result(qtbot):
    owner = TaskOwner()
    events = []
    owner.start(_frames, 2000, title="frames", on_partial=events.append,
                on_done=lambda n: events.append(("done", n)))
    qtbot.waitUntil(lambda: not owner.busy, timeout=10000)
    frames = [e for e in events if isinstance(e, _Frame)]
    assert events[-1] == ("done", 2000)
    assert frames and frames[-1] == _Frame(1999)
    assert len(frames) < 2000  # the GUI got the newest frame, not a queue of all of them
    steps = [f.step for f in frames]
    assert steps == sorted(steps)


def test_owner_discard_drops_everything_and_cancel_keeps_the_outcome(qtbot):
    owner = TaskOwner()
    outcomes = []
    started = threading.Event()
    task = owner.start(_count_until_cancelled, started, title="counting",
                       on_cancelled=lambda: outcomes.append("cancelled"),
                       on_progress=lambda p: outcomes.append("progress"))
    assert started.wait(5)
    owner.discard()
    qtbot.waitUntil(lambda: task.state == "cancelled", timeout=5000)
    assert outcomes.count("cancelled") == 0 and owner.current is None

    started.clear()
    task = owner.start(_count_until_cancelled, started, title="counting",
                       on_cancelled=lambda: outcomes.append("cancelled"))
    assert started.wait(5)
    owner.cancel()
    qtbot.waitUntil(lambda: task.state == "cancelled", timeout=5000)
    assert outcomes[-1] == "cancelled" and not owner.busy


def test_owner_handler_may_start_the_next_task_and_busy_never_flickers(qtbot):
    owner = TaskOwner()
    busy, results = [], []
    owner.busy_changed.connect(busy.append)

    def then_second(_result):
        owner.start(_add, 10, 20, title="second", on_done=results.append)

    owner.start(_add, 1, 2, title="first", on_done=then_second)
    qtbot.waitUntil(lambda: not owner.busy, timeout=5000)
    assert results == [(30, False)]
    assert busy == [True, False]


def test_owner_when_idle_runs_the_newest_waiting_request_after_the_current_task(qtbot):
    owner = TaskOwner()
    calls = []
    release = threading.Event()
    owner.start(_wait_then_return, "slow", release, title="slow",
                on_done=lambda r: calls.append(r))
    owner.when_idle(lambda: calls.append("older request"))
    owner.when_idle(lambda: calls.append("newest request"))
    assert calls == []  # the running task is not cancelled
    release.set()
    qtbot.waitUntil(lambda: not owner.busy and len(calls) == 2, timeout=5000)
    assert calls == ["slow", "newest request"]
    owner.when_idle(lambda: calls.append("at once"))
    assert calls[-1] == "at once"


def test_owner_failure_and_track_and_launch(qtbot):
    tracked, errors = [], []
    owner = TaskOwner(track=tracked.append)
    task = owner.start(_explode, title="exploding", on_failed=errors.append)
    assert tracked == [task]
    qtbot.waitUntil(lambda: not owner.busy, timeout=5000)
    assert isinstance(errors[0], RuntimeError)

    launched = []

    def launch(fn, *args, title, **kwargs):
        launched.append(title)
        return Task(fn, *args, title=title, **kwargs).start()

    owner = TaskOwner(launch=launch)
    results = []
    owner.start(_add, 2, 2, title="via the window", on_done=results.append)
    qtbot.waitUntil(lambda: not owner.busy, timeout=5000)
    assert launched == ["via the window"] and results == [(4, False)]


def test_owner_of_a_deleted_view_calls_nothing(qtbot):
    from PySide6.QtWidgets import QWidget

    view = QWidget()
    owner = TaskOwner(view)
    results = []
    release = threading.Event()
    task = owner.start(_wait_then_return, "late", release, title="late", on_done=results.append)
    view.deleteLater()
    qtbot.waitUntil(lambda: not _is_valid(owner), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: task.state == "done", timeout=5000)
    assert results == []


def _is_valid(obj) -> bool:
    from shiboken6 import isValid

    return isValid(obj)
