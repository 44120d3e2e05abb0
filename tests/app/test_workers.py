"""Task: results, failures and cancellation arrive on the GUI thread; progress is throttled."""

from __future__ import annotations

import threading
import time

import pytest

from app.workers import Task, describe_error, running_tasks
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
def test_describe_error(error, expected):
    assert describe_error(error) == expected
