"""The strip above the image lists (labelled filters on the left, the row count on the right)
and its filter combo boxes.

The thumbnail grid and the ranked list share it so that their filters look and sit alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QWidget


def filter_combo(choices: Sequence[tuple[str, str]], name: str) -> QComboBox:
    """A combo of (key, text) choices, as wide as its longest text; ``currentData()`` is the
    chosen key."""
    combo = QComboBox(objectName=name)
    for key, text in choices:
        combo.addItem(text, key)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    # Never squeezed below its text ("Disagreements (1,234)") by a narrow tab.
    combo.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
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
