"""The status-bar task display: newest task shown, Cancel stops it, hidden when idle."""

from __future__ import annotations

import threading

from app.task_status import TaskStatus
from app.workers import Task
from core.progress import check_cancel, report


def _wait_for_release(release: threading.Event, *, progress=None, cancel=None):
    report(progress, "waiting", 1, 4, "waiting for the test")
    while not release.wait(0.005):
        check_cancel(cancel)
    return "released"


def test_shows_newest_task_and_cancels_it(qtbot):
    status = TaskStatus()
    qtbot.addWidget(status)
    busy = []
    status.busy_changed.connect(busy.append)
    release = threading.Event()
    first = Task(_wait_for_release, release, title="First")
    second = Task(_wait_for_release, release, title="Second")
    for task in (first, second):
        status.track(task)
        task.start()
    assert not status.isHidden()
    assert status.current is second
    qtbot.waitUntil(lambda: second.last_progress is not None, timeout=5000)
    qtbot.waitUntil(lambda: "(+1 more)" in status.label.text(), timeout=5000)
    assert status.bar.maximum() == 4 and status.bar.value() == 1

    status.cancel_button.click()
    assert "cancelling" in status.label.text()
    qtbot.waitUntil(lambda: second.state == "cancelled", timeout=5000)
    assert status.current is first and first.is_running
    release.set()
    qtbot.waitUntil(lambda: first.state == "done", timeout=5000)
    assert status.current is None and status.isHidden()
    assert busy == [True, False]
