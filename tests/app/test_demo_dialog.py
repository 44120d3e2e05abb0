"""The demo-data dialog's values and validation."""

from __future__ import annotations

from pathlib import Path

from app.demo_dialog import DemoDataDialog


def test_defaults_and_request(qtbot, tmp_path):
    dialog = DemoDataDialog(str(tmp_path / "demo"))
    qtbot.addWidget(dialog)
    request = dialog.request()
    assert request.folder == tmp_path / "demo"
    assert (request.n, request.bad_fraction, request.seed) == (3000, 0.1, 0)
    dialog.count_spin.setValue(500)
    dialog.bad_spin.setValue(0.25)
    assert (dialog.request().n, dialog.request().bad_fraction) == (500, 0.25)


def test_generate_needs_a_folder(qtbot):
    dialog = DemoDataDialog("")
    qtbot.addWidget(dialog)
    assert not dialog._ok.isEnabled()
    dialog.folder_edit.setText("~/demo")
    assert dialog._ok.isEnabled()
    assert dialog.request().folder == Path("~/demo").expanduser()
