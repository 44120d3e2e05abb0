"""The truth CSV: the answer key a run is evaluated against (see :mod:`core.evaluation`).

Columns ``id,label`` (label 0/1, good/bad, ok/ng, ...) and optionally ``defect_type``,
``severity`` and ``split``; an id is an image's file name without extension.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.folder_layout import parse_label
from core.imagefile import IMAGE_EXTENSIONS

TRUTH_REQUIRED = ("id", "label")
TRUTH_OPTIONAL = ("defect_type", "severity", "split")


class TruthCsvError(ValueError):
    """A truth CSV that cannot be used; the one-line message names the file and the row."""


# -- the truth CSV ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TruthTable:
    """The rows of a truth CSV, in file order.

    Attributes:
        path: the file.
        ids: image ids (file stems; an extension or folder given in the CSV is dropped).
        labels: int8, 1 bad / 0 good.
        kinds: the ``defect_type`` column ('' where empty), or None without the column.
        severities: the ``severity`` column (NaN where empty), or None without the column.
        splits: the ``split`` column ('' where empty), or None without the column.
    """

    path: Path
    ids: list[str]
    labels: np.ndarray
    kinds: list[str] | None = None
    severities: np.ndarray | None = None
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def read_truth_csv(path: str | os.PathLike) -> TruthTable:
    """Read a truth CSV (see the module docstring).

    Raises:
        TruthCsvError: unreadable file, missing column, bad label or severity, empty or
            duplicate id; the message names the file and the line.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _parse_truth(path, csv.reader(fh))
    except UnicodeDecodeError:
        raise TruthCsvError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise TruthCsvError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise TruthCsvError(f"cannot read truth CSV {path}: {exc.strerror or exc}") from None


def _parse_truth(path: Path, reader) -> TruthTable:
    header = next(reader, None)
    if not header:
        raise TruthCsvError(f"{path}: empty file; a truth CSV starts with a header row "
                            "'id,label'")
    columns = _truth_columns(path, header)
    ids, labels, kinds, severities, splits = [], [], [], [], []
    first_line: dict[str, int] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        cells = _cells(path, line, row, columns)
        image_id = _truth_id(path, line, cells["id"])
        if image_id in first_line:
            raise TruthCsvError(f"{path}, line {line}: id {image_id!r} repeats line "
                                f"{first_line[image_id]}")
        first_line[image_id] = line
        ids.append(image_id)
        labels.append(_truth_label(path, line, cells["label"]))
        kinds.append(cells.get("defect_type", ""))
        severities.append(_truth_severity(path, line, cells.get("severity", "")))
        splits.append(cells.get("split", ""))
    if not ids:
        raise TruthCsvError(f"{path}: no rows under the header")
    return TruthTable(path, ids, np.array(labels, dtype=np.int8),
                      kinds if "defect_type" in columns else None,
                      np.array(severities, dtype=np.float64) if "severity" in columns else None,
                      splits if "split" in columns else None)


def _truth_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Column name -> index for the columns DieSight reads (names compared without case)."""
    names = [name.strip().lower() for name in header]
    for name in TRUTH_REQUIRED:
        if name not in names:
            found = ", ".join(n for n in names if n) or "none"
            raise TruthCsvError(f"{path}: no '{name}' column (found: {found}); a truth CSV "
                                "needs the columns id,label")
    return {name: names.index(name) for name in TRUTH_REQUIRED + TRUTH_OPTIONAL
            if name in names}


def _cells(path: Path, line: int, row: list[str], columns: dict[str, int]) -> dict[str, str]:
    needed = max(columns.values()) + 1
    if len(row) < needed:
        raise TruthCsvError(f"{path}, line {line}: {len(row)} cell(s), the header needs "
                            f"{needed}")
    return {name: row[index].strip() for name, index in columns.items()}


def _truth_id(path: Path, line: int, text: str) -> str:
    """The image id: a file stem. 'train/bad_1/123.jpg' and '123.jpg' both mean '123'."""
    name = text.replace("\\", "/").rpartition("/")[2]
    stem, ext = os.path.splitext(name)
    image_id = stem if ext.lower() in IMAGE_EXTENSIONS else name
    if not image_id:
        raise TruthCsvError(f"{path}, line {line}: empty id")
    return image_id


def _truth_label(path: Path, line: int, text: str) -> int:
    label = parse_label(text)
    if label is None:
        raise TruthCsvError(f"{path}, line {line}: label {text!r} is not 0/1 or good/bad")
    return label


def _truth_severity(path: Path, line: int, text: str) -> float:
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TruthCsvError(f"{path}, line {line}: severity {text!r} is not a number")
    return value
