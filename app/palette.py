"""Names and colours of the image labels, shared by every view (grid, viewer, later plots).

One place, so "bad" is the same red in the thumbnail frame, the viewer's chip, the ranked
list and the activation-space scatter.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

LABEL_NAMES = {1: "bad", 0: "good", -1: "unlabelled"}
LABEL_HEX = {1: "#d64545", 0: "#2e9e5b", -1: "#8a94a3"}
LABEL_COLOURS = {label: QColor(hex_code) for label, hex_code in LABEL_HEX.items()}
ACCENT = "#2f6fde"
# Charts of numbers (training curves, ROC): light, like a report.
CHART_BACKGROUND = "#ffffff"
CHART_AXIS_COLOUR = "#5d6673"
# Maps of images (the activation-space scatter): the image viewer's dark canvas, one dark
# surface for image data.
MAP_BACKGROUND = "#2a2f36"
MAP_AXIS_COLOUR = "#9aa4b2"


def label_name(label: int) -> str:
    """``bad`` / ``good`` / ``unlabelled`` for a label code (1 / 0 / -1)."""
    return LABEL_NAMES.get(int(label), "unlabelled")
