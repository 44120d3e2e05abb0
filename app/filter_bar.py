"""The strip above the image lists (labelled filters on the left, the row count on the right)
and its filter combo boxes.

The thumbnail grid and the ranked list share it so that their filters look and sit alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QWidget,
)

MIN_CHARS = 9  # what a squeezed filter still shows of its text ("Disagreem…")


class FilterCombo(QComboBox):
    """A combo as wide as its longest text when there is room; squeezed (a 1366-pixel
    screen with both docks open) it shrinks to about :data:`MIN_CHARS` characters and cuts
    its text with "…", the whole text in the tooltip."""

    def __init__(self, objectName: str = "") -> None:  # noqa: N803 - Qt's keyword
        super().__init__(objectName=objectName)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.currentTextChanged.connect(self._update_tooltip)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        full = super().sizeHint()
        metrics = self.fontMetrics()
        longest = max((metrics.horizontalAdvance(self.itemText(i))
                       for i in range(self.count())), default=0)
        narrow = metrics.averageCharWidth() * MIN_CHARS
        return QSize(full.width() - max(0, longest - narrow), full.height())

    def elided(self) -> bool:
        """True when the current text is cut."""
        return self._shown_text() != self.currentText()

    def _text_rect_width(self, option: QStyleOptionComboBox) -> int:
        return self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                           QStyle.SubControl.SC_ComboBoxEditField,
                                           self).width()

    def _shown_text(self) -> str:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideRight,
                                             self._text_rect_width(option))

    def _update_tooltip(self, *_args) -> None:
        self.setToolTip(self.currentText() if self.elided() else "")

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._update_tooltip()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt naming
        painter = QStylePainter(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self._shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


def filter_combo(choices: Sequence[tuple[str, str]], name: str) -> QComboBox:
    """A :class:`FilterCombo` of (key, text) choices; ``currentData()`` is the chosen
    key."""
    combo = FilterCombo(objectName=name)
    for key, text in choices:
        combo.addItem(text, key)
    return combo


def filter_bar(object_name: str, filters: Sequence[tuple[str, QWidget]], count: QWidget,
               extras: Sequence[QWidget] = ()) -> QWidget:
    """A bar named ``object_name`` (for its style sheet) holding each (caption, widget) of
    ``filters``, then ``extras``, then ``count`` at the right edge."""
    bar = QHBoxLayout()
    bar.setContentsMargins(8, 6, 8, 6)
    bar.setSpacing(6)
    for i, (caption, widget) in enumerate(filters):
        if i:
            bar.addSpacing(10)
        bar.addWidget(QLabel(caption))
        bar.addWidget(widget)
    for widget in extras:
        bar.addSpacing(10)
        bar.addWidget(widget)
    bar.addStretch(1)
    bar.addWidget(count)
    header = QWidget(objectName=object_name)
    header.setLayout(bar)
    return header
