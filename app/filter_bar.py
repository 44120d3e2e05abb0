"""The strip above the image lists: labelled filters on the left, the row count on the right.

The thumbnail grid and the ranked list share it so that their filters look and sit alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget


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
