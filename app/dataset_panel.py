"""The "Dataset" dock: what was opened, how it was understood, and what was left out.

Shows the folder, the detected layout, a table of image counts per split and class, every
skipped file with its reason, the counts of ignored entries and the workspace folder, so the
user can check at a glance that DieSight read the folder the way they expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QListWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.state import AppState

if TYPE_CHECKING:
    from core.dataset import Dataset

SPLIT_ORDER = ["train", "val", "test", "unlabelled"]
CLASS_COLUMNS = ["good", "bad", "unlabelled"]
EMPTY_TEXT = ("No dataset open.\n\nUse File ▸ Open Folder… (Ctrl+O), drop a folder on the "
              "window, or File ▸ Generate Demo Data… to try DieSight.")


def count_rows(counts: dict[str, dict[str, int]]) -> list[tuple[str, list[int]]]:
    """Table rows ``(split, [good, bad, unlabelled, total])`` plus a final ``Total`` row.

    Splits come in the usual order (train, val, test, unlabelled), then any others; splits
    without images are left out.
    """
    splits = [s for s in SPLIT_ORDER if s in counts] + sorted(set(counts) - set(SPLIT_ORDER))
    rows = []
    totals = [0] * (len(CLASS_COLUMNS) + 1)
    for split in splits:
        values = [int(counts[split].get(c, 0)) for c in CLASS_COLUMNS]
        values.append(sum(values))
        if values[-1] == 0:
            continue
        rows.append((split, values))
        totals = [a + b for a, b in zip(totals, values, strict=True)]
    rows.append(("total", totals))
    return rows


class CountsTable(QTableWidget):
    """The counts table, never narrower than its numbers and titles: a squeezed dock must
    not turn counts into "2,1…" nor cut the last column ("Tota"). Measured when asked,
    so the style sheet's fonts are the ones measured."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        header = self.horizontalHeader()
        columns = sum(max(self.sizeHintForColumn(c), header.sectionSizeHint(c))
                      for c in range(self.columnCount()))
        width = self.verticalHeader().sizeHint().width() + columns + 2 * self.frameWidth() + 4
        return QSize(width, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        hint = super().sizeHint()
        return QSize(max(hint.width(), self.minimumSizeHint().width()), hint.height())


class DatasetPanel(QWidget):
    """Summary of :attr:`AppState.dataset`; rebuilt whenever another dataset is opened, its
    counts whenever an image is relabelled."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.empty_label = QLabel(EMPTY_TEXT, objectName="emptyHint")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.path_label = self._value_label("datasetPath")
        self.layout_label = self._value_label("datasetLayout")
        self.size_label = self._value_label("datasetSize")
        self.counts_table = self._make_counts_table()
        self.skipped_title = self._section("Skipped files")
        self.skipped_list = QListWidget(objectName="skippedList")
        self.skipped_list.setAlternatingRowColors(True)
        self.skipped_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.skipped_list.setWordWrap(True)
        self.skipped_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.skipped_none = QLabel("None: every image file could be read.")
        self.ignored_label = self._value_label("ignoredCounts")
        self.workspace_label = self._value_label("workspacePath")
        self.details = QWidget()
        self._build_layout()
        state.dataset_changed.connect(self._on_dataset_change)
        # A relabel moves an image between columns: the counts are the labels as they stand.
        state.annotations_changed.connect(self._on_annotations_change)
        self._on_dataset_change()

    # -- construction --------------------------------------------------------------
    @staticmethod
    def _section(text: str) -> QLabel:
        return QLabel(text, objectName="sectionTitle")

    @staticmethod
    def _value_label(name: str) -> QLabel:
        label = QLabel(objectName=name)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    @staticmethod
    def _make_counts_table() -> QTableWidget:
        table = CountsTable(0, len(CLASS_COLUMNS) + 1, objectName="countsTable")
        table.setHorizontalHeaderLabels(["Good", "Bad", "Unlab.", "Total"])
        table.horizontalHeaderItem(2).setToolTip("Unlabelled")
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        table.setFrameShape(QFrame.Shape.NoFrame)
        table.setShowGrid(False)
        # Columns as wide as their numbers and titles; the spare room goes to the last.
        # (Stretch, not stretchLastSection: that one kept a width it once got, 100 px in
        # a 67-px room, after the dock narrowed, and cut "Total".)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(CLASS_COLUMNS), QHeaderView.ResizeMode.Stretch)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        table.verticalHeader().setDefaultSectionSize(24)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # The style sheet's bold, padded header is only measured once the table is shown.
        table.horizontalHeader().sectionResized.connect(lambda *_: table.updateGeometry())
        return table

    def _build_layout(self) -> None:
        details = QVBoxLayout(self.details)
        details.setContentsMargins(0, 0, 0, 0)
        details.setSpacing(4)
        for title, widget in (("Folder", self.path_label), ("Layout", self.layout_label),
                              ("Images", self.size_label)):
            details.addWidget(self._section(title))
            details.addWidget(widget)
        details.addWidget(self.counts_table)
        details.addWidget(self._section("Ignored"))
        details.addWidget(self.ignored_label)
        details.addWidget(self._section("Workspace"))
        details.addWidget(self.workspace_label)
        details.addWidget(self.skipped_title)
        details.addWidget(self.skipped_none)
        details.addWidget(self.skipped_list, 1)  # last, so a long list gets the room
        details.addStretch(0)  # takes the room instead while the list is hidden
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.details, 1)

    # -- handlers ------------------------------------------------------------------
    def _on_dataset_change(self) -> None:
        dataset = self.state.dataset
        self.empty_label.setVisible(dataset is None)
        self.details.setVisible(dataset is not None)
        if dataset is None:
            return
        self.path_label.setText(str(dataset.root))
        self.path_label.setToolTip(str(dataset.root))
        notes = getattr(dataset.layout, "notes", ())
        self.layout_label.setText("\n".join([dataset.layout.description,
                                             *(f"Note: {note}" for note in notes)]))
        h, w = dataset.image_size
        self.size_label.setText(f"{len(dataset.image_ids):,} images, cached at {w} × {h} px")
        self._fill_counts(self.state.counts_by_split())
        self._fill_skipped(dataset)
        self.ignored_label.setText(self._ignored_text(dataset.ignored))
        self.workspace_label.setText(str(dataset.workspace.path))
        self.workspace_label.setToolTip(str(dataset.workspace.path))

    def _on_annotations_change(self, _positions) -> None:
        if self.state.dataset is not None:
            self._fill_counts(self.state.counts_by_split())

    def _fill_counts(self, counts: dict[str, dict[str, int]]) -> None:
        rows = count_rows(counts)
        table = self.counts_table
        table.setRowCount(len(rows))
        # Not capitalize(): it would lower-case a lot's name ("lot July" -> "Lot july").
        table.setVerticalHeaderLabels([split[:1].upper() + split[1:] for split, _ in rows])
        for r, (split, values) in enumerate(rows):
            for c, value in enumerate(values):
                item = QTableWidgetItem(f"{value:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if split == "total" or c == len(values) - 1:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(r, c, item)
        header = table.horizontalHeader().height()
        table.setFixedHeight(header + sum(table.rowHeight(r) for r in range(len(rows))) + 4)
        table.resizeColumnsToContents()
        table.updateGeometry()

    def _fill_skipped(self, dataset: Dataset) -> None:
        self.skipped_list.clear()
        skipped = dataset.skipped
        self.skipped_title.setText(f"Skipped files ({len(skipped):,})")
        for entry in skipped:
            text = f"{entry.relpath} — {entry.reason}"
            self.skipped_list.addItem(text)
            self.skipped_list.item(self.skipped_list.count() - 1).setToolTip(text)
        self.skipped_list.setVisible(bool(skipped))
        self.skipped_none.setVisible(not skipped)

    @staticmethod
    def _ignored_text(ignored: dict[str, int]) -> str:
        parts = [f"{count:,} {why}" for why, count in sorted(ignored.items()) if count]
        return ", ".join(parts) if parts else "Nothing ignored."

    # -- for tests and later views -------------------------------------------------
    def count_cell(self, split: str, column: str) -> int:
        """The number shown for ``split`` (or ``total``) and a column (``good``/.../``total``)."""
        labels = [self.counts_table.verticalHeaderItem(r).text().lower()
                  for r in range(self.counts_table.rowCount())]
        c = (CLASS_COLUMNS + ["total"]).index(column)
        return int(self.counts_table.item(labels.index(split), c).text().replace(",", ""))

    def skipped_texts(self) -> list[str]:
        """The lines of the skipped-files list as shown."""
        return [self.skipped_list.item(i).text() for i in range(self.skipped_list.count())]
