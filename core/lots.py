"""Lots: new folders of production images scored with a dataset's runs.

A *lot* is an image folder added to an existing dataset's workspace, so a run trained on
the dataset scores it and its images join the ranked list, the exports and the activation
space beside the training images, as "unlabelled, lot <name>". Compare
``diesight score NEWLOT --run DATA@ID``, which opens the new folder as a dataset of its
own (its own workspace, its own ranked list and plots).

How a lot lives in the workspace:

* the ``lots`` table holds its name and absolute folder; every ``open_dataset`` of the
  root scans the registered lot folders too (one extra ``scandir`` walk per lot), so a lot
  stays part of the dataset until it is removed;
* its images are rows of the ``images`` table and the cache like the root's, so ids are
  stable and the root's ids never change; their ``relpath`` is the file's absolute POSIX
  path, which keeps them unique and makes ``dataset.root / relpath`` (``Dataset.path``)
  and every export's ``path`` column the real file;
* every lot image is unlabelled (label -1) with the split ``'lot <name>'``, even when the
  lot folder has class folders: a lot is production data, and it never trains a model
  (training uses the 'train' split only). The user can still relabel single images;
* a lot folder that has gone missing is reported as a skipped entry and its images are
  left out (``present = 0``) until it is back, like files vanished from the root.

Nothing is ever written into a lot folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.annotations import now_iso
from core.dataset import Dataset, open_dataset
from core.folderscan import SkippedFile
from core.lot_folders import Lot, list_lots, lot_path_prefix, lot_split
from core.progress import CancelCheck, ProgressFn
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.runs import RunRecord
    from core.scoring import ScoreResult

__all__ = ["Lot", "LotError", "NewLot", "add_lot", "list_lots", "lot_image_ids",
           "lot_positions", "lot_split", "remove_lot", "score_new_lot"]

MAX_NAME_LENGTH = 64
# Names become split values shown in filters and CSV files: one line, no path separators.
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass
class NewLot:
    """What :func:`score_new_lot` produced.

    Attributes:
        dataset: the dataset reopened with the lot.
        lot: the lot as registered.
        result: the scores and embeddings of the lot's images (merged into the run's).
    """

    dataset: Dataset
    lot: Lot
    result: ScoreResult


class LotError(ValueError):
    """A folder that cannot be added as a lot; the message says why.

    Attributes:
        skipped: files of the folder that could not be read (shown with the message).
    """

    def __init__(self, message: str, skipped: list[SkippedFile] | None = None) -> None:
        super().__init__(message)
        self.skipped = skipped or []


def lot_positions(dataset: Dataset, name: str) -> np.ndarray:
    """Positions (ascending) of the lot's present images in ``dataset``."""
    return np.flatnonzero(np.asarray(dataset.splits) == lot_split(name))


def lot_image_ids(dataset: Dataset, name: str) -> np.ndarray:
    """Image ids of the lot's present images in ``dataset``."""
    return dataset.image_ids[lot_positions(dataset, name)]


# --- the lots table ------------------------------------------------------------------------


def remove_lot(workspace: Workspace, name: str) -> None:
    """Unregister a lot; its images leave the dataset (their rows and scores are kept).

    Raises:
        LotError: no lot has that name.
    """
    lot = _lot_named(workspace, name)
    if lot is None:
        raise LotError(f"No lot named {name!r} in this dataset.")
    _unregister(workspace, lot)


def _lot_named(workspace: Workspace, name: str) -> Lot | None:
    return next((lot for lot in list_lots(workspace) if lot.name == name), None)


def _unregister(workspace: Workspace, lot: Lot) -> None:
    """Drop the lot's row and mark its images not present (as the next open would)."""
    prefix = lot_path_prefix(lot.folder)
    with workspace.transaction() as con:
        con.execute("DELETE FROM lots WHERE name = ?", (lot.name,))
        # substr rather than LIKE: folder names may contain % and _.
        con.execute("UPDATE images SET present = 0 WHERE substr(relpath, 1, ?) = ?",
                    (len(prefix), prefix))


def _register(workspace: Workspace, folder: Path, name: str) -> Lot | None:
    """Register ``folder`` as lot ``name``; returns the folder's previous entry, if any.

    Re-adding a folder keeps its date; a new name renames it (its images' split follows on
    the next open).
    """
    previous = next((lot for lot in list_lots(workspace) if lot.folder == folder), None)
    with workspace.transaction() as con:
        if previous is None:
            con.execute("INSERT INTO lots (name, folder, added_at) VALUES (?, ?, ?)",
                        (name, str(folder), now_iso()))
        else:
            con.execute("UPDATE lots SET name = ? WHERE folder = ?", (name, str(folder)))
    return previous


def _restore(workspace: Workspace, folder: Path, name: str, previous: Lot | None) -> None:
    """Undo :func:`_register` after the add failed or was cancelled."""
    if previous is None:
        _unregister(workspace, Lot(name, folder, ""))
    else:
        with workspace.transaction() as con:
            con.execute("UPDATE lots SET name = ? WHERE folder = ?",
                        (previous.name, str(folder)))


# --- checking a new lot ---------------------------------------------------------------------


def _checked_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise LotError(f"Lot folder not found: {path}")
    if not path.is_dir():
        raise LotError(f"Not a folder: {path}")
    return path.resolve()


def _checked_name(name: str | None, folder: Path) -> str:
    """The lot's name: the one given (trimmed) or the folder's name."""
    name = (name if name is not None else folder.name).strip()
    if not name:
        raise LotError("A lot needs a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise LotError(f"Lot name too long ({len(name)} characters; at most "
                       f"{MAX_NAME_LENGTH}).")
    if _BAD_NAME_CHARS.search(name):
        raise LotError(f"Lot name {name!r} may not contain slashes or control characters.")
    return name


def _check_place(root: Path, folder: Path, name: str | None, lots: list[Lot]) -> None:
    """A lot may not overlap the dataset or another lot, nor take another lot's name."""
    if folder == root or folder.is_relative_to(root):
        raise LotError(f"{folder} is inside the dataset folder {root}: its images are "
                       "part of the dataset already.")
    if root.is_relative_to(folder):
        raise LotError(f"The dataset folder {root} is inside {folder}; choose a folder "
                       "that holds only the new lot.")
    for lot in lots:
        if lot.folder == folder:
            continue  # adding the same folder again rescans it (and may rename it)
        if name is not None and lot.name == name:
            raise LotError(f"A lot named {name!r} exists already ({lot.folder}); "
                           "choose another name.")
        if folder.is_relative_to(lot.folder) or lot.folder.is_relative_to(folder):
            raise LotError(f"{folder} overlaps lot {lot.name!r} ({lot.folder}).")


def check_lot_folder(dataset: Dataset, folder: str | os.PathLike,
                     name: str | None = None) -> Path:
    """Whether ``folder`` can become a lot of ``dataset``, before anything is scanned.

    The checks :func:`add_lot` makes first (the folder exists, overlaps neither the dataset
    nor another lot; with ``name``, the name is usable and free), so a window can say so
    before it asks for a name.

    Returns:
        The folder, resolved.

    Raises:
        LotError: the reason, in one line naming the folder.
    """
    path = _checked_folder(folder)
    checked_name = _checked_name(name, path) if name is not None else None
    _check_place(Path(dataset.root).resolve(), path, checked_name, list_lots(dataset.workspace))
    return path


def default_lot_name(folder: str | os.PathLike) -> str:
    """The name offered for a lot: the folder's name, unless that is a layout word.

    ``.../lot-0712/test/all_tests`` is named after ``lot-0712``, not ``all_tests``: split,
    class and ``all_tests`` folder names say nothing about which lot it is.
    """
    path = Path(folder).expanduser().resolve()
    for part in (path, *path.parents):
        if part.name and not _is_layout_word(part.name):
            return part.name[:MAX_NAME_LENGTH]
    return path.name[:MAX_NAME_LENGTH] or "lot"


def _is_layout_word(name: str) -> bool:
    from core.folder_layout import class_of_folder, split_of_folder

    return (class_of_folder(name) is not None or split_of_folder(name) is not None
            or name.lower() in ("all_tests", "images", "imgs", "data"))


def count_labelled_images(folder: str | os.PathLike) -> int:
    """Images of ``folder`` inside class folders (good/, bad/, ...): labels a lot drops.

    A lot's images always join as unlabelled, so a window can warn before the labels of
    a labelled folder are left unused.
    """
    from core.folder_layout import class_of_folder
    from core.imagefile import is_image_name

    root = Path(folder).expanduser()
    count = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        parts = Path(dirpath).relative_to(root).parts
        if any(class_of_folder(part) is not None for part in parts):
            count += sum(1 for name in filenames if is_image_name(name))
    return count


# --- adding and scoring ----------------------------------------------------------------------


def add_lot(dataset: Dataset, folder: str | os.PathLike, name: str | None = None, *,
            progress: ProgressFn | None = None, cancel: CancelCheck | None = None,
            workers: int | None = None) -> Dataset:
    """Add a folder to ``dataset`` as a lot and reopen the dataset with its images.

    The lot's images are decoded into the dataset's cache (new rows; the dataset's own ids
    do not change) as unlabelled images with the split ``'lot <name>'``. Adding a folder
    that is a lot already rescans it (new files join) and, with another ``name``, renames
    it. A failed or cancelled add leaves the lots as they were.

    Args:
        dataset: the opened dataset.
        folder: the lot's image folder (never written to).
        name: the lot's name (default: the folder's name).
        progress: receives the open's 'scan' and 'decode' reports.
        cancel: checked between steps and chunks.
        workers: decoding processes (default: all CPUs; 1 decodes in this process).

    Returns:
        The dataset reopened with the lot.

    Raises:
        LotError: the folder is missing, overlaps the dataset or another lot, has no
            readable images, or the name is unusable or taken.
        core.dataset.DatasetError: the dataset itself cannot be reopened.
        core.progress.Cancelled: ``cancel`` returned True.
    """
    updated, _lot, _previous = _add(dataset, folder, name, progress, cancel, workers)
    return updated


def _add(dataset: Dataset, folder, name: str | None, progress: ProgressFn | None,
         cancel: CancelCheck | None, workers: int | None) -> tuple[Dataset, Lot, Lot | None]:
    """:func:`add_lot`, also returning the lot and the folder's previous registration."""
    folder = _checked_folder(folder)
    name = _checked_name(name, folder)
    workspace = dataset.workspace
    _check_place(Path(dataset.root).resolve(), folder, name, list_lots(workspace))
    previous = _register(workspace, folder, name)
    try:
        updated = open_dataset(dataset.root, labels_csv=_labels_csv_of(dataset),
                               workspace=workspace, progress=progress, cancel=cancel,
                               workers=workers)
        lot = next(lot for lot in updated.lots if lot.folder == folder)
        if len(lot_positions(updated, name)) == 0:
            skipped = [s for s in updated.skipped if s.relpath.startswith(lot_path_prefix(folder))]
            raise LotError(_no_images_message(folder, skipped), skipped)
    except BaseException:
        _restore(workspace, folder, name, previous)
        raise
    return updated, lot, previous


def _labels_csv_of(dataset: Dataset) -> str | None:
    """The labels CSV the dataset was opened with, so reopening keeps its labels."""
    csv_path = dataset.layout.labels_csv
    return csv_path if csv_path and Path(csv_path).is_file() else None


def _no_images_message(folder: Path, skipped: list[SkippedFile]) -> str:
    if skipped:
        return (f"None of the images in {folder} could be read "
                f"({len(skipped)} file(s) skipped).")
    return f"No images found in {folder}."


def score_new_lot(dataset: Dataset, run: RunRecord | int | str, folder: str | os.PathLike,
                  name: str | None = None, *, batch_size: int | None = None,
                  device: str = "auto", progress: ProgressFn | None = None,
                  cancel: CancelCheck | None = None, workers: int | None = None) -> NewLot:
    """Add ``folder`` as a lot of ``dataset`` and score its images with ``run``.

    The one mechanism behind ``diesight score DATA --lot FOLDER`` and the app's
    "Score New Lot…": :func:`add_lot`, then ``core.scoring.score_dataset`` over the lot's
    images only, merged into the run's stored scores and embeddings (the other images'
    scores stay as they were). All or nothing: when scoring fails or is cancelled, a lot
    added by this call is removed again (its decoded pixels stay cached for a retry).

    Args:
        dataset: the opened dataset.
        run: a run record, its id, 'latest', or 'OTHER_DATA@ID'.
        folder: the lot's image folder (never written to).
        name: the lot's name (default: the folder's name).
        batch_size: images per forward pass (default: scoring's).
        device: 'auto', 'cuda' or 'cpu'.
        progress: receives 'scan', 'decode' and 'score' reports.
        cancel: checked between steps, chunks and batches.
        workers: decoding processes.

    Returns:
        The reopened dataset, the lot and its scores.

    Raises:
        LotError, core.dataset.DatasetError, core.checkpoint.CheckpointError,
        core.progress.Cancelled: as for :func:`add_lot` and ``score_dataset``.
    """
    from core.scoring import as_run, score_dataset

    run = as_run(dataset.workspace, run)  # a bad run reference fails before anything changes
    updated, lot, previous = _add(dataset, folder, name, progress, cancel, workers)
    try:
        result = score_dataset(updated, run, only_ids=lot_image_ids(updated, lot.name),
                               batch_size=batch_size, device=device, progress=progress,
                               cancel=cancel)
    except BaseException:
        _restore(dataset.workspace, lot.folder, lot.name, previous)
        raise
    return NewLot(updated, lot, result)
