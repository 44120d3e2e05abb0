"""A label that shrinks with "…" instead of widening its window or being clipped mid-word.

A plain QLabel's minimum width is its whole text, so a long count or file name either
widens the window (past the screen, on a 1366-pixel laptop) or, when the window cannot
grow, is cut off mid-character. :class:`ElidedLabel` asks for little room, shows as much
of the text as fits ending in "…", and puts the whole text in its tooltip when cut.
:class:`CompactToolButton` does the same for an icon-and-text tool button: squeezed, it
shows its icon only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
    QStyle,
    QStyleOptionToolButton,
    QToolButton,
    QWidget,
)


class ElidedLabel(QLabel):
    """A one-line plain-text label elided at the right (or ``mode``) when narrow.

    Args:
        text: the text.
        min_chars: how many average characters it still shows at its narrowest.
        mode: where the "…" goes (``Qt.TextElideMode``).
        objectName: as for QLabel.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *, min_chars: int = 6,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
                 objectName: str = "") -> None:  # noqa: N803 - Qt's keyword
        super().__init__(text, parent)
        if objectName:
            self.setObjectName(objectName)
        self._min_chars = min_chars
        self._mode = mode
        self._own_tooltip = ""
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        hint = super().minimumSizeHint()
        margins = self.contentsMargins()
        width = (self.fontMetrics().averageCharWidth() * self._min_chars
                 + margins.left() + margins.right() + 2 * self.margin())
        return QSize(min(width, super().sizeHint().width()), hint.height())

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt naming
        self._own_tooltip = text
        super().setToolTip(text)

    @property
    def elided(self) -> bool:
        """True when the text does not fit and is shown cut with "…"."""
        return self.fontMetrics().horizontalAdvance(self.text()) > self._text_width()

    def displayed_text(self) -> str:
        """What is on screen: the text, or its elided form."""
        return self.fontMetrics().elidedText(self.text(), self._mode, self._text_width())

    def _text_width(self) -> int:
        return max(0, self.contentsRect().width() - 2 * self.margin())

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        rect = self.contentsRect().adjusted(self.margin(), self.margin(), -self.margin(),
                                            -self.margin())
        self.style().drawItemText(painter, rect, int(self.alignment()), self.palette(),
                                  self.isEnabled(), self.displayed_text(),
                                  self.foregroundRole())
        # The whole text on hover when it is cut (a tooltip set by the owner wins).
        if not self._own_tooltip:
            QLabel.setToolTip(self, self.text() if self.elided else "")


class CompactToolButton(QToolButton):
    """A tool button with icon and text that drops its text when squeezed below it.

    Its size hint is the icon-and-text size, its minimum the icon-only size, so a row of
    them never forces a dock wider; the text stays in the tooltip's reach (set one).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        # A tool button's policy is Fixed (minimum = hint); this one may shrink to its icon.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def _hint_for(self, style: Qt.ToolButtonStyle) -> QSize:
        # QToolButton::sizeHint's sum for a style, without switching the shown style.
        option = QStyleOptionToolButton()
        self.initStyleOption(option)
        option.toolButtonStyle = style
        width, height = self.iconSize().width(), self.iconSize().height()
        if style != Qt.ToolButtonStyle.ToolButtonIconOnly and self.text():
            metrics = self.fontMetrics()
            text = metrics.size(Qt.TextFlag.TextShowMnemonic, self.text())
            width += 4 + text.width() + 2 * metrics.horizontalAdvance(" ")
            height = max(height, text.height())
        else:
            option.text = ""  # the style sheet style measures the option's text too
        return self.style().sizeFromContents(QStyle.ContentsType.CT_ToolButton, option,
                                             QSize(width, height), self)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return self._hint_for(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return self._hint_for(Qt.ToolButtonStyle.ToolButtonIconOnly)

    @property
    def compact(self) -> bool:
        """True when squeezed to its icon."""
        return self.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        # The hints do not depend on the style shown, so this cannot oscillate.
        fits = self.width() >= self.sizeHint().width()
        style = (Qt.ToolButtonStyle.ToolButtonTextBesideIcon if fits
                 else Qt.ToolButtonStyle.ToolButtonIconOnly)
        if style != self.toolButtonStyle():
            super().setToolButtonStyle(style)
        super().resizeEvent(event)


class CollapsingLabel(QLabel):
    """A word-wrapped note that takes no room while it has no text (a status line that is
    empty most of the time must not push a 768-px window off the screen)."""

    def __init__(self, text: str = "", parent: QWidget | None = None, **kwargs) -> None:
        super().__init__(text, parent, **kwargs)
        self.setWordWrap(True)
        self.setVisible(bool(text))

    def setText(self, text: str) -> None:  # noqa: N802  (Qt's name)
        super().setText(text)
        self.setVisible(bool(text))

    def clear(self) -> None:
        super().clear()
        self.setVisible(False)
