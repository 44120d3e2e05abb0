"""GUI test fixtures: settings in a temporary INI file, a private copy of the demo set, and
a clean slate between tests.

Every test gets its own settings location, so no GUI test ever reads or writes the real
user's DieSight settings (recent folders, window layout).
"""

from __future__ import annotations

import gc
import shutil
import time

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QSettings

# How long a test's leftover background tasks get to stop after being cancelled.
LEFTOVER_TASK_SECONDS = 30


@pytest.fixture(autouse=True)
def clean_slate(qapp):
    """After each test: stop its leftover tasks, then free its widgets, in a quiet moment.

    Without this, a test's windows are deleted (deleteLater) and their Python wrappers
    collected whenever the *next* test happens to run the event loop and the collector,
    possibly while that test's worker is busy; CI saw that abort ("pure virtual method
    called" during garbage collection) and hang. Collecting once before the deferred
    deletes frees wrappers while their C++ objects are still alive, and once after.
    """
    yield
    from app.workers import running_tasks

    for task in running_tasks():
        task.cancel()
    deadline = time.monotonic() + LEFTOVER_TASK_SECONDS
    while running_tasks() and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.01)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qapp.processEvents()
    gc.collect()
    # What survives (modules, torch, session fixtures) is not scanned again after every
    # test: scanning it each time made the GUI suite minutes slower.
    gc.freeze()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory):
    """Redirect QSettings' INI location for the user scope to a temporary folder."""
    folder = tmp_path_factory.mktemp("settings")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.SystemScope, str(folder))
    return folder


@pytest.fixture
def settings(isolated_settings):
    """A fresh settings file for one MainWindow (pass it to a second window to reopen)."""
    return QSettings(str(isolated_settings / "diesight.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def demo_copy(demo_folder, tmp_path):
    """A private copy of the shared demo set that a test may change."""
    return shutil.copytree(demo_folder, tmp_path / "demo-copy")


@pytest.fixture
def window(qtbot, settings):
    """A shown main window (one decoding worker: the tests share two cores)."""
    from app.main_window import MainWindow

    window = MainWindow(settings=settings)
    window.open_workers = 1
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


@pytest.fixture
def scored_window(qtbot, window, demo_folder):
    """The window with the demo set open and a scored run (threshold 0.4) current."""
    from test_activation_tab import new_run, store_run_scores

    task = window.open_folder(demo_folder)
    qtbot.waitUntil(lambda: not task.is_running, timeout=60_000)
    dataset = window.state.dataset
    run = new_run(dataset, threshold=0.4)
    store_run_scores(dataset, run)
    window.state.set_current_run(run)
    return window
