"""The "Generate Demo Data" dialog: where to write, how many images, how many bad."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
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


@dataclass
class DemoRequest:
    """What the user asked for; the arguments of ``core.demodata.generate_demo_data``."""

    folder: Path
    n: int = 3000
    bad_fraction: float = 0.1
    seed: int = 0


class DemoDataDialog(QDialog):
    """Asks for an output folder, an image count and the fraction of defective parts."""

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
                           self.seed_spin.value())

    def _browse(self) -> None:
        start = self.folder_edit.text().strip() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Demo data folder",
                                                  str(Path(start).parent))
        if folder:
            self.folder_edit.setText(folder)

    def _validate(self) -> None:
        self._ok.setEnabled(bool(self.folder_edit.text().strip()))
