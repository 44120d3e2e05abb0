"""File ▸ Export…: the current run's flagged-defect list, all scores, or a Kaggle submission.

The dialog only gathers choices; the files are written by ``core.export`` (atomically: a
failed export leaves an older file as it was) on a worker thread, with the shared
threshold of :class:`AppState`. It stays open after an export and says how many rows were
written, or why nothing was, so a user can write the three files one after the other. The
folder last exported to is remembered (``app.settings``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.settings import last_dialog_folder, remember_dialog_folder
from app.state import AppState
from app.workers import Task, TaskOwner, error_message
from core.evidence_export import export_flagged_evidence
from core.export import export_flagged, export_scores, export_submission
from core.progress import check_cancel, report

SETTINGS_KEY = "export"


@dataclass(frozen=True)
class ExportKind:
    """One kind of export.

    Attributes:
        key: ``flagged``, ``scores`` or ``submission``.
        title: radio button text.
        description: what the file holds (its columns).
        suffix: the default file name's ending.
    """

    key: str
    title: str
    description: str
    suffix: str


EXPORT_KINDS = (
    ExportKind("flagged", "Flagged defects",
               "The images you flagged (with when), highest score first. Columns: id, path, "
               "score, label, run, model, threshold, flagged_at, reason.", "flagged"),
    ExportKind("scores", "All scores",
               "Every image of the dataset. Columns: id, path, split, label, score, "
               "prediction (1 = defective at the threshold).", "scores"),
    ExportKind("submission", "Kaggle submission",
               "One row per test or unlabelled image: id (file name without extension), "
               "label (the defect probability).", "submission"),
)
KIND_BY_KEY = {kind.key: kind for kind in EXPORT_KINDS}


def evidence_folder(path: str | Path) -> Path:
    """Where the flagged list's heatmap overlays go: ``<list name>-evidence/`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}-evidence")


def run_export(dataset, run, kind: str, path: str | Path, threshold: float,
               include_predicted: bool = True, evidence: bool = False, *, progress=None,
               cancel=None) -> int:
    """Write one export (the function an export :class:`Task` runs).

    Args:
        dataset: the open dataset.
        run: the run whose scores are written.
        kind: ``flagged``, ``scores`` or ``submission``.
        path: the CSV file.
        threshold: the decision threshold (flagged list and prediction column).
        include_predicted: flagged list only: also list the images the run calls defective.
        evidence: flagged list only: also write each row's heatmap overlay and a contact
            sheet into :func:`evidence_folder` (``core.evidence_export``; this part reports
            progress and can be cancelled, the list itself is already written).
        progress, cancel: core's progress protocol (checked before writing; the write
            itself is one short atomic step).

    Returns:
        The number of rows written.
    """
    check_cancel(cancel)
    report(progress, "export", 0, 1, f"Writing {Path(path).name}")
    if kind == "flagged":
        rows = export_flagged(dataset, run, path, threshold, include_predicted=include_predicted)
        if evidence:
            export_flagged_evidence(dataset, run, evidence_folder(path), threshold,
                                    include_predicted=include_predicted, progress=progress,
                                    cancel=cancel)
    elif kind == "scores":
        rows = export_scores(dataset, run, path, threshold)
    elif kind == "submission":
        rows = export_submission(dataset, run, path)
    else:
        raise ValueError(f"unknown export {kind!r}; choose one of {', '.join(KIND_BY_KEY)}")
    report(progress, "export", 1, 1, f"Wrote {rows:,} rows")
    return rows


class ExportDialog(QDialog):
    """Choose an export and a file; Export writes it on a worker and reports the row count.

    Args:
        state: the shared state (dataset, current run, threshold, flags).
        settings: where the last export folder is remembered.
        parent: the main window.
        track: called with each export :class:`Task` (the main window shows it in the
            status bar with a Cancel button).

    Attributes:
        kind_buttons: radio button per kind key.
        path_edit: the file to write.
        include_predicted_check: flagged list: also list what the run calls defective.
        status_label: the outcome of the last export, or why exporting is not possible.
        export_button: starts the export.
        last_task: the latest export task (tests wait on it).
    """

    def __init__(self, state: AppState, settings: QSettings, parent: QWidget | None = None,
                 track: Callable[[Task], None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setObjectName("exportDialog")
        self.state = state
        self.settings = settings
        self.track = track
        self.tasks = TaskOwner(self, track=track)  # one export at a time
        self.tasks.busy_changed.connect(lambda _busy: self._check_ready())
        self.last_task: Task | None = None
        self._auto_name = True  # the file name follows the kind until the user types one
        self._build()
        self._on_kind_change()
        self._check_ready()

    # -- construction --------------------------------------------------------------
    def _build(self) -> None:
        self.context_label = QLabel(objectName="dialogHint")
        self.context_label.setWordWrap(True)
        self.kind_group = QButtonGroup(self)
        self.kind_buttons: dict[str, QRadioButton] = {}
        kinds = QGridLayout()
        kinds.setColumnStretch(1, 1)
        kinds.setVerticalSpacing(4)
        for row, kind in enumerate(EXPORT_KINDS):
            button = QRadioButton(kind.title)
            description = QLabel(kind.description, objectName="dialogHint")
            description.setWordWrap(True)
            self.kind_group.addButton(button, row)
            self.kind_buttons[kind.key] = button
            kinds.addWidget(button, row, 0, Qt.AlignmentFlag.AlignTop)
            kinds.addWidget(description, row, 1)
        self.kind_buttons["flagged"].setChecked(True)
        self.kind_group.idToggled.connect(lambda _id, on: on and self._on_kind_change())
        # Off by default: "flagged" means what the user flagged; the run's own calls are
        # an explicit addition (each row's 'reason' column then says which it is).
        self.include_predicted_check = QCheckBox()
        self.include_predicted_check.setChecked(False)
        self.evidence_check = QCheckBox(objectName="evidenceCheck")
        self.evidence_check.setToolTip("Per flagged image a PNG with the run's heatmap over "
                                       "it, and a contact sheet of them all (PNG and a one-page "
                                       "PDF to print), for the line")
        self.path_edit = QLineEdit(objectName="exportPath")
        self.path_edit.setMinimumWidth(420)
        self.path_edit.textEdited.connect(self._on_path_edit)
        self.path_edit.textChanged.connect(self._check_ready)
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Enter exports; it must not open the file dialog
        browse.clicked.connect(self._browse)
        self.status_label = QLabel(objectName="exportStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.export)
        buttons.rejected.connect(self.reject)

        file_row = QHBoxLayout()
        file_row.addWidget(self.path_edit, 1)
        file_row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(self.context_label)
        layout.addLayout(kinds)
        layout.addWidget(self.include_predicted_check)
        layout.addWidget(self.evidence_check)
        layout.addWidget(QLabel("File"))
        layout.addLayout(file_row)
        layout.addWidget(self.status_label)
        layout.addWidget(buttons)
        self.setMinimumWidth(620)

    # -- public --------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The chosen kind's key."""
        return EXPORT_KINDS[self.kind_group.checkedId()].key

    def set_kind(self, key: str) -> None:
        self.kind_buttons[key].setChecked(True)

    def set_path(self, path: str | Path) -> None:
        """Set the file to write (as if typed: the name no longer follows the kind)."""
        self._auto_name = False
        self.path_edit.setText(str(path))

    def default_name(self, kind: str | None = None) -> str:
        """``<folder name>-run<id>-<kind>.csv`` for the open dataset and current run."""
        suffix = KIND_BY_KEY[kind or self.kind].suffix
        dataset, run = self.state.dataset, self.state.current_run
        stem = Path(dataset.root).name if dataset is not None else "diesight"
        run_part = f"-run{run.id}" if run is not None else ""
        return f"{stem}{run_part}-{suffix}.csv"

    def problem(self) -> str | None:
        """Why nothing can be exported now (no dataset, run or scores), or None."""
        state = self.state
        if state.dataset is None:
            return "Open a folder first: there is nothing to export."
        if state.current_run is None:
            return "Select a run in the Training tab first: exports are a run's scores."
        if state.scores is None:
            return (f"Run {state.current_run.id} has no scores for this dataset yet: "
                    "score it in the Training tab first.")
        return None

    def export(self) -> Task | None:
        """Write the chosen export on a worker; the outcome shows in :attr:`status_label`.

        Returns:
            The task, or None when nothing can be exported (the label says why).
        """
        problem = self.problem()
        path_text = self.path_edit.text().strip()
        if problem is None and not path_text:
            problem = "Choose a file to write."
        if problem is not None:
            self._show_status(problem, ok=False)
            return None
        path = Path(path_text).expanduser()
        if path.suffix == "":
            path = path.with_suffix(".csv")
        state = self.state
        self._show_status(f"Writing {path.name}…", ok=True)
        self.last_task = self.tasks.start(
            run_export, state.dataset, state.current_run, self.kind, path, state.threshold,
            self.include_predicted_check.isChecked(),
            self.kind == "flagged" and self.evidence_check.isChecked(),
            title=f"Exporting {KIND_BY_KEY[self.kind].title.lower()}",
            on_done=lambda rows: self._on_export_done(path, rows),
            on_failed=lambda error: self._show_status(
                f"Nothing was written: {error_message(error)}", ok=False),
            on_cancelled=lambda: self._show_status("Export cancelled.", ok=False))
        return self.last_task

    # -- handlers ------------------------------------------------------------------
    def _on_kind_change(self) -> None:
        state = self.state
        self.include_predicted_check.setText(
            f"Also list the images the run calls defective (score ≥ {state.threshold:.3f})")
        self.include_predicted_check.setVisible(self.kind == "flagged")
        self.evidence_check.setVisible(self.kind == "flagged")
        self._name_evidence_folder()
        if self._auto_name:
            folder = (Path(self.path_edit.text()).parent if self.path_edit.text()
                      else self.default_folder())
            self.path_edit.setText(str(folder / self.default_name()))

    def default_folder(self) -> Path:
        """Where a new export goes: the folder last exported to, else beside the dataset
        folder (never inside it: the file would join the images), else the home folder."""
        remembered = self.settings.value(f"dialogs/{SETTINGS_KEY}")
        if remembered and Path(str(remembered)).is_dir():
            return Path(str(remembered))
        dataset = self.state.dataset
        if dataset is not None and Path(dataset.root).parent.is_dir():
            return Path(dataset.root).resolve().parent
        return Path(last_dialog_folder(self.settings, SETTINGS_KEY))

    def _on_path_edit(self, _text: str) -> None:
        self._auto_name = False
        self._name_evidence_folder()

    def _name_evidence_folder(self) -> None:
        name = evidence_folder(self.path_edit.text().strip() or "flagged.csv").name
        self.evidence_check.setText(f"Also write heatmap overlays and a contact sheet "
                                    f"(folder {name}/ beside the list)")

    def _browse(self) -> None:
        start = self.path_edit.text().strip() or str(self.default_folder())
        path, _ = QFileDialog.getSaveFileName(self, "Export to", start,
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.set_path(path)

    def _on_export_done(self, path: Path, rows: int) -> None:
        remember_dialog_folder(self.settings, SETTINGS_KEY, path.parent)
        text = f"Wrote {rows:,} row{'' if rows == 1 else 's'} to {path}"
        if self.kind == "flagged" and self.evidence_check.isChecked():
            text += f" and their heatmap overlays to {evidence_folder(path)}"
        self._show_status(text, ok=True)

    def _check_ready(self) -> None:
        problem = self.problem()
        self.export_button.setEnabled(problem is None and not self.tasks.busy
                                      and bool(self.path_edit.text().strip()))
        self._show_context()
        if problem is not None:
            self._show_status(problem, ok=False)

    def _show_context(self) -> None:
        state = self.state
        if state.dataset is None or state.current_run is None:
            self.context_label.setText("Exports write the current run's results as CSV.")
            return
        run = state.current_run
        flagged = int(state.flagged.sum())
        self.context_label.setText(
            f"<b>{Path(state.dataset.root).name}</b> · run {run.id} ({run.model}) · "
            f"threshold {state.threshold:.3f} · {flagged:,} flagged image"
            f"{'' if flagged == 1 else 's'}")

    def _show_status(self, text: str, ok: bool) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #1f6e43;" if ok else "color: #b23a3a;")
