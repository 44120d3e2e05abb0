"""GUI test fixtures: settings in a temporary INI file, and a private copy of the demo set.

Every test gets its own settings location, so no GUI test ever reads or writes the real
user's DieSight settings (recent folders, window layout).
"""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QSettings


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
