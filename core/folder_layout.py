"""Recognising how a folder of images is labelled and split.

Understood layouts (folder names compared case-insensitively):

* ``kaggle``: ``train/good_0``, ``train/bad_1`` (labelled) and ``test/all_tests`` (unlabelled).
* ``split-folders``: class folders (good/bad, ok/ng, pass/fail, normal/defect, 0/1, ...)
  inside ``train/``, ``val/`` (valid, validation) and ``test/`` folders.
* ``class-folders``: two class folders directly under the root.
* ``split-unlabelled``: split folders without class folders.
* ``flat``: a folder of unlabelled images.
* ``csv``: a flat folder labelled by a CSV (file name or path, label).

Folder labels win. A labels CSV is used when the caller passes one (it then labels the
images the folders leave unlabelled) or, automatically, only when the folder is flat and
holds exactly one CSV that names its images: a CSV beside labelled folders (such as the
demo generator's ``ground_truth.csv`` answer key) must never label the test images by itself.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.imagefile import is_image_name

GOOD, BAD, UNLABELLED = 0, 1, -1
_LABEL_WORDS = {GOOD: "good", BAD: "bad"}

TRAIN, VAL, TEST, UNSPLIT = "train", "val", "test", "unlabelled"
SPLITS = (TRAIN, VAL, TEST, UNSPLIT)

_SPLIT_NAMES = {"train": TRAIN, "training": TRAIN,
                "val": VAL, "valid": VAL, "validation": VAL,
                "test": TEST, "testing": TEST}
_GOOD_NAMES = frozenset({"good", "ok", "pass", "passed", "normal", "0", "good_0", "negative",
                         "accept", "accepted", "false", "no"})
_BAD_NAMES = frozenset({"bad", "ng", "nok", "fail", "failed", "defect", "defective", "1",
                        "bad_1", "anomaly", "abnormal", "positive", "reject", "rejected",
                        "true", "yes"})
# Folder names only; "true"/"yes"/"no" make sense as CSV values, not as folder names.
_GOOD_FOLDERS = _GOOD_NAMES - {"false", "no"}
_BAD_FOLDERS = _BAD_NAMES - {"true", "yes"}
_KAGGLE_CLASSES = frozenset({"good_0", "bad_1"})
_KAGGLE_UNLABELLED = "all_tests"

_FILE_HEADERS = ("path", "filepath", "file_path", "relpath", "filename", "file_name", "file",
                 "image", "image_name", "image_path", "image_id", "img", "name", "id")
_LABEL_HEADERS = ("label", "labels", "class", "target", "y", "defect", "is_defect", "bad",
                  "is_bad", "category", "ground_truth", "gt")
_SPLIT_HEADERS = ("split", "subset", "set", "fold")

# An automatically found CSV must name at least this share of its rows' images.
_AUTO_CSV_MIN_MATCH = 0.5


@dataclass(frozen=True)
class Layout:
    """The layout found in a folder.

    Attributes:
        kind: 'kaggle', 'split-folders', 'class-folders', 'split-unlabelled', 'flat' or 'csv'.
        description: one line for the user saying what was found.
        labels_csv: the labels CSV used, if any.
        notes: further lines worth showing (unused CSVs, disagreements, unmatched rows).
    """

    kind: str
    description: str
    labels_csv: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class LayoutResult:
    """A layout plus the label (1 bad, 0 good, -1 none) and split of every image."""

    layout: Layout
    labels: np.ndarray
    splits: list[str]


class LabelsCsvError(ValueError):
    """A labels CSV that cannot be used; the message says why."""


@dataclass
class CsvLabels:
    """Labels read from a CSV, keyed by the file reference as written in the CSV."""

    path: Path
    labels: dict[str, int] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    unknown_labels: int = 0
    lines: dict[str, int] = field(default_factory=dict)  # key -> its line in the file


# --- folder names ----------------------------------------------------------------------


def class_of_folder(name: str) -> int | None:
    """1 for a 'bad' class-folder name, 0 for a 'good' one, None otherwise."""
    lowered = name.lower()
    if lowered in _BAD_FOLDERS:
        return BAD
    if lowered in _GOOD_FOLDERS:
        return GOOD
    return None


def split_of_folder(name: str) -> str | None:
    """'train' / 'val' / 'test' for a split-folder name, None otherwise."""
    return _SPLIT_NAMES.get(name.lower())


@dataclass(frozen=True)
class _FolderMeaning:
    label: int | None      # class from a class folder
    split: str | None      # split from split folders
    class_folder: str | None  # the path of the class (or all_tests) folder that decided it


def _interpret_folder(folder: str) -> _FolderMeaning:
    """Read a folder path top-down: split folders, then at most one class folder.

    Anything after the class folder is an ordinary subfolder and inherits its meaning;
    an unknown name before any class folder ends the interpretation (e.g. 'lots/1/' is
    not a 'bad' folder).
    """
    split = None
    parts = folder.split("/") if folder else []
    for depth, part in enumerate(parts):
        as_split = split_of_folder(part)
        if as_split is not None:
            split = as_split
            continue
        decided = "/".join(parts[:depth + 1])
        if part.lower() == _KAGGLE_UNLABELLED:
            return _FolderMeaning(None, split or TEST, decided)
        label = class_of_folder(part)
        if label is not None:
            return _FolderMeaning(label, split, decided)
        break
    return _FolderMeaning(None, split, None)


# --- detection ---------------------------------------------------------------------------


def detect_layout(relpaths: list[str], root: str | os.PathLike, *,
                  labels_csv: str | os.PathLike | None = None,
                  root_csv_files: list[str] | None = None) -> LayoutResult:
    """Find the layout of a folder and the label and split of each image.

    Args:
        relpaths: POSIX paths of the images relative to ``root``.
        root: the dataset folder (used to resolve paths written in a CSV).
        labels_csv: a CSV the user chose; it labels images the folders leave unlabelled.
        root_csv_files: CSV names directly in the root (candidates for a flat folder).

    Returns:
        The layout with per-image labels and splits aligned with ``relpaths``.

    Raises:
        LabelsCsvError: the chosen CSV cannot be read or names none of the images.
    """
    folders = _folder_meanings(relpaths)
    labels = np.full(len(relpaths), UNLABELLED, dtype=np.int8)
    splits: list[str | None] = [None] * len(relpaths)
    for i, relpath in enumerate(relpaths):
        meaning = folders[relpath.rpartition("/")[0]]
        if meaning.label is not None:
            labels[i] = meaning.label
        splits[i] = meaning.split
    kind, description = _describe_folders(folders)
    notes: list[str] = []
    used_csv = None
    if labels_csv is not None:
        used_csv = Path(labels_csv)
        notes += _apply_csv(read_labels_csv(used_csv), relpaths, root, labels, splits,
                            explicit=True)
        if kind == "flat":
            kind, description = "csv", f"Flat folder labelled by {used_csv.name}"
        else:
            description += f"; other images labelled by {used_csv.name}"
    elif kind == "flat":
        used_csv, csv_notes = _auto_csv(relpaths, root, root_csv_files or [], labels, splits)
        notes += csv_notes
        if used_csv is not None:
            kind, description = "csv", f"Flat folder labelled by {used_csv.name}"
    elif root_csv_files:
        notes.append(f"{', '.join(root_csv_files)} not used for labels: the folders define "
                     "them (pass --labels FILE to label the unlabelled images from a CSV)")
    final_splits = [_final_split(split, label) for split, label in zip(splits, labels, strict=True)]
    layout = Layout(kind, description, str(used_csv) if used_csv else None, tuple(notes))
    return LayoutResult(layout, labels, final_splits)


def _final_split(split: str | None, label: int) -> str:
    """Labelled images outside split folders train; unlabelled ones are 'unlabelled'."""
    if split is not None:
        return split
    return TRAIN if label != UNLABELLED else UNSPLIT


def _folder_meanings(relpaths: list[str]) -> dict[str, _FolderMeaning]:
    """Interpret each distinct folder once (30,000 images live in a handful of folders)."""
    folders = {relpath.rpartition("/")[0] for relpath in relpaths}
    return {folder: _interpret_folder(folder) for folder in folders}


def _describe_folders(folders: dict[str, _FolderMeaning]) -> tuple[str, str]:
    """Name the layout and describe it in one line."""
    class_folders = sorted({m.class_folder for m in folders.values() if m.class_folder})
    has_split = any(m.split for m in folders.values())
    leaf_names = {PurePosixPath(f).name.lower() for f in class_folders}
    shown = ", ".join(class_folders[:8]) + (", ..." if len(class_folders) > 8 else "")
    if has_split and leaf_names & (_KAGGLE_CLASSES | {_KAGGLE_UNLABELLED}):
        labelled = [f for f in class_folders if PurePosixPath(f).name.lower() != _KAGGLE_UNLABELLED]
        unlabelled = [f for f in class_folders if f not in labelled]
        text = "Kaggle layout: labelled " + (", ".join(labelled) or "none")
        if unlabelled:
            text += "; unlabelled " + ", ".join(unlabelled)
        return "kaggle", text
    if class_folders and has_split:
        return "split-folders", f"Class folders inside split folders ({shown})"
    if class_folders:
        return "class-folders", f"Class folders under the root ({shown})"
    if has_split:
        split_names = sorted({m.split for m in folders.values() if m.split})
        return "split-unlabelled", f"Unlabelled images in split folders ({', '.join(split_names)})"
    return "flat", f"Folder of unlabelled images ({len(folders)} folder(s))"


# --- labels CSV --------------------------------------------------------------------------


def read_labels_csv(path: str | os.PathLike) -> CsvLabels:
    """Read a labels CSV: a file column (name, path or stem) and a label column.

    Header names such as id/file/filename/path/image and label/class/target are
    recognised; without a header the first two columns are used. Labels may be 0/1,
    good/bad, ok/ng, pass/fail, normal/defect, ... An optional split column is honoured.

    Raises:
        LabelsCsvError: unreadable file, no usable columns, or no recognisable labels.
    """
    path = Path(path)
    rows, line_numbers = _read_rows(path)
    if not rows:
        raise LabelsCsvError(f"{path.name} is empty")
    file_col, label_col, split_col, body = _choose_columns(path, rows)
    result = CsvLabels(path)
    for row, line in zip(body, line_numbers[len(rows) - len(body):], strict=True):
        if len(row) <= max(file_col, label_col) or not row[file_col].strip():
            continue
        label = parse_label(row[label_col])
        if label is None:
            result.unknown_labels += 1
            continue
        key = row[file_col].strip()
        if key in result.labels and result.labels[key] != label:
            raise LabelsCsvError(
                f"{path}: {key!r} is labelled twice, differently: line {result.lines[key]} "
                f"says {_LABEL_WORDS[result.labels[key]]}, line {line} says "
                f"{_LABEL_WORDS[label]}; keep one of the two lines")
        result.lines.setdefault(key, line)
        result.labels[key] = label
        if split_col is not None and len(row) > split_col:
            split = split_of_folder(row[split_col].strip())
            if split is not None:
                result.splits[key] = split
    if not result.labels:
        raise LabelsCsvError(f"{path.name} has no rows with a recognisable label "
                             "(expected 0/1, good/bad, ok/ng, pass/fail, normal/defect)")
    return result


def parse_label(value: str) -> int | None:
    """1 bad, 0 good, None when the value is not a label DieSight knows."""
    text = value.strip().lower()
    if text in _BAD_NAMES:
        return BAD
    if text in _GOOD_NAMES:
        return GOOD
    try:
        number = float(text)
    except ValueError:
        return None
    return {0.0: GOOD, 1.0: BAD}.get(number)


def _read_rows(path: Path) -> tuple[list[list[str]], list[int]]:
    """The non-blank rows of a CSV and the line number of each."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LabelsCsvError(f"{path.name} is not a UTF-8 text file") from None
    except OSError as exc:
        raise LabelsCsvError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows, line_numbers = [], []
    reader = csv.reader(text.splitlines(), dialect)
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row)
                line_numbers.append(reader.line_num)
    except csv.Error as exc:
        raise LabelsCsvError(f"{path.name} line {reader.line_num}: not valid CSV ({exc})"
                             ) from None
    return rows, line_numbers


def _choose_columns(path: Path, rows: list[list[str]]):
    """(file column, label column, split column or None, data rows)."""
    header = [cell.strip().lower() for cell in rows[0]]
    file_col = _first_match(header, _FILE_HEADERS)
    label_col = _first_match(header, _LABEL_HEADERS, exclude=file_col)
    if file_col is not None or label_col is not None:
        if file_col is None or label_col is None:
            raise LabelsCsvError(
                f"{path.name}: header {rows[0]} needs a file column "
                f"(one of {', '.join(_FILE_HEADERS[:8])}, ...) and a label column "
                f"(one of {', '.join(_LABEL_HEADERS[:4])}, ...)")
        return file_col, label_col, _first_match(header, _SPLIT_HEADERS), rows[1:]
    # No header: the label column is the one whose values parse as labels.
    if len(rows[0]) < 2:
        raise LabelsCsvError(f"{path.name} needs two columns: a file name and a label")
    if _mostly_labels(rows, 1):
        return 0, 1, None, rows
    if _mostly_labels(rows, 0):
        return 1, 0, None, rows
    raise LabelsCsvError(f"{path.name}: no column of labels found "
                         "(expected 0/1, good/bad, ok/ng, pass/fail, normal/defect)")


def _first_match(header: list[str], names: tuple[str, ...], exclude: int | None = None):
    for name in names:
        if name in header and header.index(name) != exclude:
            return header.index(name)
    return None


def _mostly_labels(rows: list[list[str]], col: int) -> bool:
    sample = [row[col] for row in rows[:200] if len(row) > col]
    return bool(sample) and sum(parse_label(v) is not None for v in sample) >= 0.8 * len(sample)


class _ImageIndex:
    """Finds an image from a CSV reference: a relative path, a file name or a stem."""

    def __init__(self, relpaths: list[str], root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.by_path = {p.lower(): i for i, p in enumerate(relpaths)}
        self.by_name = self._unique(p.rpartition("/")[2].lower() for p in relpaths)
        self.by_stem = self._unique(os.path.splitext(p.rpartition("/")[2])[0].lower()
                                    for p in relpaths)

    @staticmethod
    def _unique(keys) -> dict[str, int]:
        """Keys that name exactly one image (an ambiguous name matches nothing)."""
        seen: dict[str, int] = {}
        duplicates = set()
        for i, key in enumerate(keys):
            if key in seen:
                duplicates.add(key)
            seen[key] = i
        for key in duplicates:
            del seen[key]
        return seen

    def find(self, reference: str) -> int | None:
        key = reference.strip().replace("\\", "/")
        if os.path.isabs(key):
            try:
                key = Path(key).resolve().relative_to(self.root).as_posix()
            except ValueError:
                key = key.rpartition("/")[2]
        key = key.lower()
        while key.startswith("./"):
            key = key[2:]
        # A path may carry leading folders above the root ('data/train/x.jpg').
        parts = key.split("/")
        for start in range(len(parts)):
            found = self.by_path.get("/".join(parts[start:]))
            if found is not None:
                return found
        name = parts[-1]
        if name in self.by_name:
            return self.by_name[name]
        return self.by_stem.get(os.path.splitext(name)[0] if is_image_name(name) else name)


def _apply_csv(labels_file: CsvLabels, relpaths: list[str], root, labels: np.ndarray,
               splits: list[str | None], *, explicit: bool) -> list[str]:
    """Label the images the folders left unlabelled; return notes for the user."""
    index = _ImageIndex(relpaths, root)
    matched = 0
    disagreements = 0
    named_by: dict[int, str] = {}  # image -> the first reference that labelled it
    for reference, label in labels_file.labels.items():
        i = index.find(reference)
        if i is None:
            continue
        first = named_by.setdefault(i, reference)
        if first != reference and labels_file.labels[first] != label:
            lines = labels_file.lines
            raise LabelsCsvError(
                f"{labels_file.path}: {relpaths[i]} is labelled twice, differently: line "
                f"{lines.get(first, '?')} ({first!r}) says "
                f"{_LABEL_WORDS[labels_file.labels[first]]}, line {lines.get(reference, '?')} "
                f"({reference!r}) says {_LABEL_WORDS[label]}; keep one of the two lines")
        matched += 1
        if labels[i] == UNLABELLED:
            labels[i] = label
            if splits[i] is None and reference in labels_file.splits:
                splits[i] = labels_file.splits[reference]
        elif labels[i] != label:
            disagreements += 1
    name = labels_file.path.name
    if matched == 0 and explicit:
        example = next(iter(labels_file.labels))
        raise LabelsCsvError(f"{name} names none of the {len(relpaths)} images in the folder "
                             f"(first entry: {example!r})")
    notes = []
    unmatched = len(labels_file.labels) - matched
    if unmatched:
        notes.append(f"{name}: {unmatched} row(s) name no image in the folder")
    if labels_file.unknown_labels:
        notes.append(f"{name}: {labels_file.unknown_labels} row(s) with an unknown label ignored")
    if disagreements:
        notes.append(f"{name}: folder labels kept for {disagreements} image(s) where the CSV "
                     "disagrees")
    return notes


def _auto_csv(relpaths: list[str], root, candidates: list[str], labels: np.ndarray,
              splits: list[str | None]) -> tuple[Path | None, list[str]]:
    """Use the single CSV of a flat folder when it names the folder's images."""
    if len(candidates) != 1:
        if candidates:
            return None, [f"{len(candidates)} CSV files found ({', '.join(candidates)}); "
                          "pass --labels FILE to choose the labels"]
        return None, []
    path = Path(root) / candidates[0]
    try:
        labels_file = read_labels_csv(path)
    except LabelsCsvError as exc:
        return None, [f"{candidates[0]} not used for labels: {exc}"]
    index = _ImageIndex(relpaths, root)
    matches = sum(index.find(ref) is not None for ref in labels_file.labels)
    if matches == 0 or matches < _AUTO_CSV_MIN_MATCH * len(labels_file.labels):
        return None, [f"{candidates[0]} not used for labels: it names {matches} of "
                      f"{len(labels_file.labels)} images in this folder"]
    return path, _apply_csv(labels_file, relpaths, root, labels, splits, explicit=False)


def count_by_split(labels: np.ndarray, splits) -> dict[str, dict[str, int]]:
    """{split: {'good': n, 'bad': n, 'unlabelled': n}} for the splits that occur.

    The standard splits come first in their usual order, then others (the 'lot <name>'
    splits of core.lots) by name.
    """
    counts: Counter = Counter(zip(splits, labels.tolist(), strict=True))
    result: dict[str, dict[str, int]] = {}
    others = sorted({str(split) for split, _ in counts} - set(SPLITS))
    for split in (*SPLITS, *others):
        row = {"good": counts[(split, GOOD)], "bad": counts[(split, BAD)],
               "unlabelled": counts[(split, UNLABELLED)]}
        if any(row.values()):
            result[split] = row
    return result
