"""Icons and the style sheet from the ``resources`` package.

SVG icons are loaded by file path when the package sits on disk (Qt's SVG icon engine then
renders them crisply at every size and greys them out when disabled); from a zipped install
they are rendered once into a few pixmap sizes instead.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

import resources

log = logging.getLogger(__name__)

_PIXMAP_SIZES = (16, 20, 24, 32, 48, 64, 128, 256)


@cache
def icon(name: str) -> QIcon:
    """The icon ``resources/icons/<name>.svg`` (an empty icon, logged, if it is missing)."""
    source = resources.resource_path(f"icons/{name}.svg")
    if not source.is_file():
        log.warning("icon %r is missing from resources/icons", name)
        return QIcon()
    if isinstance(source, Path):
        return QIcon(str(source))
    return _rendered_icon(source.read_bytes())


def app_icon() -> QIcon:
    """The application icon (a die under a magnifier)."""
    return icon("diesight")


def style_sheet() -> str:
    """The application style sheet (``resources/style.qss``), its ``@ICONS@`` pointing at
    the icon folder (the sheet's arrow images)."""
    icons = Path(str(resources.resource_path("icons"))).as_posix()
    return resources.read_text("style.qss").replace("@ICONS@", icons)


def _rendered_icon(svg: bytes) -> QIcon:
    renderer = QSvgRenderer(QByteArray(svg))
    result = QIcon()
    for size in _PIXMAP_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        result.addPixmap(QPixmap.fromImage(image))
    return result
