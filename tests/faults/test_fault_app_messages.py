"""Guarantee: the app shows a user's failure as the same one line the command line prints,
in a dialog without a traceback (a damaged workspace names the file and ``diesight repair``;
a full disk says "disk full"); only a bug keeps its traceback, under the dialog's details."""

from __future__ import annotations

import errno
import os

import pytest
from PySide6.QtCore import QSettings
from scoring_fixtures import make_lot

from app.main_window import MainWindow
from app.workers import error_message, is_user_error
from core.dataset import open_dataset
from core.errors import user_message
from core.workspace import workspace_dir_for

OPEN_TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "diesight.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    return window


def test_opening_a_damaged_workspace_shows_the_repair_line_without_a_traceback(qtbot, window,
                                                                              tmp_path):
    data = make_lot(tmp_path / "lot", good=6, bad=4, test=2)
    open_dataset(data, workers=1)
    db = workspace_dir_for(data) / "diesight.sqlite"
    os.truncate(db, 4096)  # a real damaged file

    task = window.open_folder(data)
    with qtbot.waitSignal(task.finished, timeout=OPEN_TIMEOUT_MS):
        pass
    assert task.state == "failed"
    box = window.message_box
    assert box is not None and box.isVisible()
    text = box.text()
    assert "\n" not in text and str(db) in text and f"diesight repair {data}" in text
    assert "Traceback" not in (box.detailedText() or "")
    box.close()


def test_the_app_and_the_command_line_share_one_message_policy(tmp_path):
    target = tmp_path / "out.csv"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    assert error_message(full) == user_message(full)
    assert error_message(full).startswith(f"disk full: cannot write {target}")
    limit = OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(target))
    assert error_message(limit).startswith("disk full")
    diverged = ValueError("Run 3 diverged: the training loss became NaN; lower --lr.")
    assert error_message(diverged) == str(diverged) and is_user_error(diverged)
    bug = ZeroDivisionError("division by zero")
    assert not is_user_error(bug)
    assert error_message(bug) == "ZeroDivisionError: division by zero"
