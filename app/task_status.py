"""The status-bar corner that shows the running task: its title, a progress bar, Cancel.

It tracks every :class:`app.workers.Task` handed to :meth:`TaskStatus.track` and shows the
most recently started one still running (with "+N more" when several overlap); Cancel stops
that one. It hides itself when nothing runs.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QToolButton, QWidget

from app.elide import ElidedLabel
from app.icons import icon
from app.workers import Task
from core.progress import Progress


class TaskStatus(QWidget):
    """Progress of the running tasks for the status bar.

    Signals:
        busy_changed(bool): True when the first task starts, False when the last one ends.
    """

    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tasks: list[Task] = []
        # Long titles ("Scoring lot ...: decoding 1,234 / 5,678") end in "…", never cut.
        self.label = ElidedLabel(objectName="taskLabel", min_chars=24)
        self.label.setMaximumWidth(520)
        self.bar = QProgressBar(objectName="taskProgress")
        self.bar.setFixedWidth(220)
        self.bar.setTextVisible(True)
        self.cancel_button = QToolButton(objectName="taskCancel")
        self.cancel_button.setIcon(icon("cancel"))
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the running task (Esc)")
        self.cancel_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.cancel_button.clicked.connect(self.cancel_current)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(8)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.hide()

    @property
    def current(self) -> Task | None:
        """The task shown (the newest running one)."""
        return self._tasks[-1] if self._tasks else None

    def track(self, task: Task) -> None:
        """Show ``task`` until it finishes."""
        self._tasks.append(task)
        task.progress.connect(lambda p: self._on_task_progress(task, p))
        task.finished.connect(lambda: self._on_task_finish(task))
        if len(self._tasks) == 1:
            self.show()
            self.busy_changed.emit(True)
        self._show(task)

    def cancel_current(self) -> None:
        """Ask the shown task to stop; the label says so until it does."""
        task = self.current
        if task is not None:
            task.cancel()
            self.label.setText(f"{task.title}: cancelling…")
            self.cancel_button.setEnabled(False)

    def _on_task_progress(self, task: Task, p: Progress) -> None:
        if task is self.current:
            self._show_progress(task, p)

    def _on_task_finish(self, task: Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if self._tasks:
            self._show(self._tasks[-1])
        else:
            self.hide()
            self.busy_changed.emit(False)

    def _show(self, task: Task) -> None:
        self.cancel_button.setEnabled(not task.cancel_requested)
        if task.last_progress is not None:
            self._show_progress(task, task.last_progress)
        else:
            self.label.setText(f"{task.title}…")
            self.bar.setRange(0, 0)  # busy until the first report says how much there is

    def _show_progress(self, task: Task, p: Progress) -> None:
        if task.cancel_requested:
            return  # keep "cancelling…" on screen
        more = f"  (+{len(self._tasks) - 1} more)" if len(self._tasks) > 1 else ""
        detail = p.message or p.stage
        self.label.setText(f"{task.title}: {detail}{more}")
        self.label.setToolTip(self.label.text())
        if p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
            self.bar.setFormat(f"{p.done:,} / {p.total:,}")
        else:
            self.bar.setRange(0, 0)
