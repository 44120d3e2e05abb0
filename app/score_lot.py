"""File ▸ Score New Lot…: a folder of new images joins the open dataset, scored by the current run.

The steps, each of which can stop with a one-line reason and no traceback:

1. choose the folder;
2. check it at once (``core.lots.check_lot_folder``: inside the dataset, overlapping a lot
   already added...), before asking anything else;
3. ask for the lot's name, offering a meaningful one (``.../lot-0712/test/all_tests`` is
   ``lot-0712``) and saying when the folder's own labels (good/bad folders) will not be
   used — a lot joins unlabelled;
4. score it on a worker (``core.lots.score_new_lot``); then the lot's images join every
   view as the split 'lot <name>', and the run, threshold and current image stay.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLineEdit

from app.settings import last_dialog_folder, remember_dialog_folder
from app.workers import Task, TaskOwner
from core.lots import (
    LotError,
    NewLot,
    check_lot_folder,
    count_labelled_images,
    default_lot_name,
    score_new_lot,
)

if TYPE_CHECKING:
    from app.main_window import MainWindow

TITLE = "Score New Lot"


class LotScoring(QObject):
    """The Score New Lot flow of a main window (its action, dialogs and task).

    Args:
        window: the main window (state, ``run_task``, message boxes, status bar, grid).
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.tasks = TaskOwner(self, launch=window.run_task)  # one lot at a time
        self.tasks.busy_changed.connect(lambda _busy: self.update_action())
        window.state.current_run_changed.connect(self.update_action)
        self.update_action()

    def update_action(self) -> None:
        """The action needs a current run and no lot being scored."""
        self.window.score_lot_action.setEnabled(
            self.window.state.current_run is not None and not self.tasks.busy)

    # -- the dialog flow -----------------------------------------------------------
    def choose(self) -> None:
        """Ask for a folder, check it, ask for a name, then score (the action's slot)."""
        settings = self.window.settings
        folder = QFileDialog.getExistingDirectory(self.window,
                                                  "Score new lot: choose its image folder",
                                                  last_dialog_folder(settings, "lot"))
        if not folder:
            return
        remember_dialog_folder(settings, "lot", Path(folder).parent)
        if not self.check(folder):
            return
        dialog = self.name_dialog(folder)
        if dialog.exec():
            self.score(folder, dialog.textValue().strip() or None)

    def check(self, folder: str | os.PathLike, name: str | None = None) -> bool:
        """True when ``folder`` can be scored as a lot; else the user is told why."""
        state = self.window.state
        if state.dataset is None or state.current_run is None:
            self._refuse("Open a dataset and choose a trained run first.")
            return False
        try:
            check_lot_folder(state.dataset, folder, name)
        except LotError as error:
            self._refuse(str(error))
            return False
        return True

    def name_dialog(self, folder: str | os.PathLike) -> QInputDialog:
        """The (not yet shown) dialog asking for the lot's name, with a warning when the
        folder's labels will not be used."""
        dialog = QInputDialog(self.window)
        dialog.setWindowTitle(TITLE)
        dialog.setInputMode(QInputDialog.InputMode.TextInput)
        dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
        text = "Name of the lot (its images get the split 'lot NAME'):"
        labelled = count_labelled_images(folder)
        if labelled:
            text = (f"{labelled:,} image{'s' if labelled != 1 else ''} of this folder "
                    "sit in class folders (good/bad). A lot joins unlabelled, so those "
                    "labels will not be used; to train or evaluate with them, open the "
                    "folder as a dataset instead.\n\n" + text)
        dialog.setLabelText(text)
        dialog.setTextValue(default_lot_name(folder))
        return dialog

    def _refuse(self, reason: str) -> None:
        self.window.show_message("Cannot score a new lot", reason)

    # -- scoring -------------------------------------------------------------------
    def score(self, folder: str | os.PathLike, name: str | None = None) -> Task | None:
        """Add ``folder`` to the open dataset as a lot and score it with the current run.

        Returns the task, or None when the folder cannot be a lot (the user is told).
        """
        if not self.check(folder, name):
            return None
        state = self.window.state
        path = Path(folder).expanduser()
        name = name or default_lot_name(path)
        return self.tasks.start(
            score_new_lot, state.dataset, state.current_run, path, name,
            title=f"Scoring lot {name}", workers=self.window.open_workers,
            on_done=self._on_scored,
            on_cancelled=lambda: self.window.statusBar().showMessage(
                "Scoring the new lot cancelled; the dataset is unchanged.", 10000))

    def _on_scored(self, new: NewLot) -> None:
        state = self.window.state
        dataset = state.dataset
        if dataset is None or Path(dataset.root) != Path(new.dataset.root):
            return  # another folder was opened meanwhile; the lot is saved in its workspace
        # The run, threshold, current image and selection carry over, remapped by id.
        state.replace_dataset(new.dataset)
        state.notify_runs_changed()  # the run's scores changed
        self.window.grid.set_filters("all", new.lot.split)  # show the new lot
        self.window.statusBar().showMessage(
            f"Lot {new.lot.name!r}: {len(new.result.image_ids):,} images scored with run "
            f"{new.result.run_id}; they are unlabelled, split {new.lot.split!r}.", 15000)
