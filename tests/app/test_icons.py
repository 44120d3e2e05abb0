"""Icons and style sheet ship with the package and load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

import resources
from app.icons import app_icon, icon, style_sheet
from app.main_window import create_application

ICON_NAMES = sorted(p.stem for p in Path(resources.__file__).parent.joinpath("icons").glob("*.svg"))
APP_SOURCES = sorted(Path(__file__).resolve().parents[2].joinpath("app").glob("*.py"))


@pytest.mark.parametrize("name", ICON_NAMES)
def test_every_icon_renders(qapp, name):
    pixmap = icon(name).pixmap(32, 32)
    assert not pixmap.isNull()
    image = pixmap.toImage()
    assert any(image.pixelColor(x, y).alpha() > 0 for x in range(32) for y in range(32))


def test_every_icon_the_code_asks_for_exists():
    used = set()
    for source in APP_SOURCES:
        used |= set(re.findall(r'icon\("([\w-]+)"\)', source.read_text()))
        used |= set(re.findall(r'_action\([^,]+, "([\w-]+)"', source.read_text()))
    assert used and used <= set(ICON_NAMES)


def test_application_gets_icon_and_style(qapp):
    app = create_application()
    assert app is QApplication.instance()
    assert not app_icon().isNull() and not app.windowIcon().isNull()
    assert app.styleSheet() == style_sheet() and "QToolBar" in style_sheet()
    app.setStyleSheet("")  # leave the shared test QApplication as it was
