"""The demo-data dialog's values and validation."""

from __future__ import annotations

from pathlib import Path

from app.demo_dialog import DemoDataDialog
from core.demostyles import STYLES


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


def test_style_combo_lists_every_style_and_sets_the_request(qtbot, tmp_path):
    dialog = DemoDataDialog(str(tmp_path / "demo"))
    qtbot.addWidget(dialog)
    combo = dialog.style_combo
    assert [combo.itemData(i) for i in range(combo.count())] == list(STYLES)
    assert dialog.request().style == "mixed"
    assert dialog.style_note.text() == STYLES["mixed"].summary()
    combo.setCurrentIndex(combo.findData("single"))
    assert dialog.request().style == "single"
    assert dialog.style_note.text() == STYLES["single"].summary()
