"""The "Generate Demo Data" dialog: where to write, how many images, how many bad, which fab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.demostyles import DEFAULT_STYLE, STYLES


@dataclass
class DemoRequest:
    """What the user asked for; the arguments of ``core.demodata.generate_demo_data``."""

    folder: Path
    n: int = 3000
    bad_fraction: float = 0.1
    seed: int = 0
    style: str = DEFAULT_STYLE


class DemoDataDialog(QDialog):
    """Asks for an output folder, an image count, the fraction of defective parts and the demo
    style (the synthetic fab)."""

    def __init__(self, folder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Generate Demo Data")
        self.folder_edit = QLineEdit(folder)
        self.folder_edit.setMinimumWidth(360)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(10, 200_000)
        self.count_spin.setSingleStep(500)
        self.count_spin.setGroupSeparatorShown(True)
        self.count_spin.setValue(3000)
        self.bad_spin = QDoubleSpinBox()
        self.bad_spin.setRange(0.0, 0.9)
        self.bad_spin.setDecimals(2)
        self.bad_spin.setSingleStep(0.01)
        self.bad_spin.setValue(0.10)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.style_combo = QComboBox()
        for name, style in STYLES.items():
            self.style_combo.addItem(name, name)
            self.style_combo.setItemData(self.style_combo.count() - 1, style.summary(),
                                         Qt.ItemDataRole.ToolTipRole)
        self.style_combo.setCurrentIndex(self.style_combo.findData(DEFAULT_STYLE))
        self.style_note = QLabel()
        self.style_note.setWordWrap(True)
        self.style_note.setObjectName("dialogHint")
        self.style_combo.currentIndexChanged.connect(self._show_style)
        self._show_style()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Generate")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self._ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.folder_edit.textChanged.connect(self._validate)

        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Output folder", row)
        form.addRow("Images", self.count_spin)
        form.addRow("Bad fraction", self.bad_spin)
        form.addRow("Random seed", self.seed_spin)
        form.addRow("Style", self.style_combo)
        form.addRow("", self.style_note)
        hint = QLabel("Writes synthetic part images in the Kaggle layout "
                      "(train/good_0, train/bad_1, test/all_tests) and opens the folder.")
        hint.setWordWrap(True)
        hint.setObjectName("dialogHint")
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self._validate()

    def request(self) -> DemoRequest:
        """The values entered."""
        return DemoRequest(Path(self.folder_edit.text().strip()).expanduser(),
                           self.count_spin.value(), self.bad_spin.value(),
                           self.seed_spin.value(), self.style_combo.currentData())

    def _browse(self) -> None:
        start = self.folder_edit.text().strip() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Demo data folder",
                                                  str(Path(start).parent))
        if folder:
            self.folder_edit.setText(folder)

    def _show_style(self) -> None:
        # Under the combo, so the difference between fabs is visible without hovering.
        self.style_note.setText(STYLES[self.style_combo.currentData()].summary())

    def _validate(self) -> None:
        self._ok.setEnabled(bool(self.folder_edit.text().strip()))
