"""When the workspace itself fails: ``diesight repair DATA``.

:func:`repair_workspace` moves the damaged database aside as
``diesight.sqlite.damaged-<UTC time>``, salvages every table that can still be read, rebuilds
the rest from the folder (core.dataset) and restores flags and labels from the journal
(core.workspace_guard, which also holds the one-line messages of a workspace that cannot be
used).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.workspace_guard import (
    DAMAGED_SUFFIX,
    DB_NAME,
    WorkspaceError,
    folder_error_message,
    read_journal,
)

# -- repair -----------------------------------------------------------------------------------


@dataclass
class RepairReport:
    """What :func:`repair_workspace` did."""

    healthy: bool = False                 # nothing to repair
    damaged_copy: Path | None = None      # where the damaged database went
    salvaged: dict[str, int] = field(default_factory=dict)   # table -> rows kept
    lost: list[str] = field(default_factory=list)            # tables that could not be read
    flags: int = 0                        # flags restored
    labels: int = 0                       # relabels restored
    images: int = 0                       # images in the rebuilt workspace

    def lines(self) -> list[str]:
        if self.healthy:
            return ["The workspace database is healthy: nothing to repair."]
        lines = [f"Moved the damaged database to {self.damaged_copy}."]
        if self.salvaged:
            lines.append("Kept from it: " + ", ".join(
                f"{table} ({rows:,} rows)" for table, rows in self.salvaged.items()))
        if self.lost:
            lines.append("Could not read (rebuilt from the folder or dropped): "
                         + ", ".join(self.lost))
        lines.append(f"Rebuilt: {self.images:,} images; restored {self.flags:,} flag(s) and "
                     f"{self.labels:,} label(s) from the annotations journal.")
        return lines


# Tables copied from a damaged database, in an order that satisfies the foreign keys.
_SALVAGE_ORDER = ("meta", "images", "annotations", "lots", "runs", "epochs", "scores")


def check_database(db_path: Path) -> str | None:
    """None when ``db_path`` passes ``PRAGMA integrity_check``, else what is wrong."""
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def repair_workspace(root: str | os.PathLike, *, labels_csv=None, force: bool = False,
                     progress=None, cancel=None) -> RepairReport:
    """Rebuild the workspace database of the dataset folder ``root``.

    Args:
        root: the dataset folder.
        labels_csv: as for ``open_dataset``.
        force: rebuild even when the database passes the integrity check.

    Returns:
        What was kept, lost and restored.

    Raises:
        DatasetError: the folder cannot be opened (the damaged database is already aside).
        WorkspaceError: the workspace folder cannot be written.
    """
    from core.dataset import DatasetError, open_dataset
    from core.workspace import Workspace, workspace_dir_for

    if not Path(root).expanduser().is_dir():  # before anything is moved
        raise DatasetError(f"Folder not found: {root}")
    folder = workspace_dir_for(root)
    db_path = folder / DB_NAME
    report = RepairReport()
    if db_path.exists() and not force and check_database(db_path) is None:
        report.healthy = True
        return report
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    damaged = folder / f"{DB_NAME}{DAMAGED_SUFFIX}{stamp}"
    salvaged: dict[str, list] = {}
    if db_path.exists():
        try:
            for suffix in ("", "-wal", "-shm"):  # the WAL belongs to the damaged file
                if Path(f"{db_path}{suffix}").exists():
                    os.replace(f"{db_path}{suffix}", f"{damaged}{suffix}")
        except OSError as exc:
            raise WorkspaceError(folder_error_message(folder, exc, "a file in")) from None
        report.damaged_copy = damaged
        salvaged, report.lost = _salvage(damaged)
    workspace = Workspace(folder, root)
    report.salvaged = _restore_tables(workspace, salvaged, report.lost)
    if "images" not in salvaged:
        _set_aside_id_files(folder, stamp)
    dataset = open_dataset(root, labels_csv=labels_csv, workspace=workspace,
                           progress=progress, cancel=cancel)
    report.images = len(dataset)
    report.flags, report.labels = _replay_journal(workspace)
    return report


def _salvage(damaged: Path) -> tuple[dict[str, tuple[list[str], list]], list[str]]:
    """Read what can be read of each table: {table: (columns, rows)}, tables lost."""
    found: dict[str, tuple[list[str], list]] = {}
    lost: list[str] = []
    try:
        con = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return found, list(_SALVAGE_ORDER)
    try:
        for table in _SALVAGE_ORDER:
            if table == "annotations" and "images" not in found:
                lost.append(table)  # by image id: the journal restores them by path
                continue
            if table == "epochs" and "runs" not in found:
                lost.append(table)
                continue
            if table == "scores" and not ("runs" in found and "images" in found):
                lost.append(table)  # scores of unknown runs or image ids mean nothing
                continue
            try:
                cursor = con.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
                rows = cursor.fetchall()
                found[table] = ([d[0] for d in cursor.description], rows)
            except sqlite3.DatabaseError:
                lost.append(table)
    finally:
        con.close()
    return found, lost


def _restore_tables(workspace, salvaged: dict[str, tuple[list[str], list]],
                    lost: list[str]) -> dict[str, int]:
    kept: dict[str, int] = {}
    with workspace.transaction() as con:
        for table in _SALVAGE_ORDER:
            if table not in salvaged:
                continue
            columns, rows = salvaged[table]
            have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            keep = [i for i, c in enumerate(columns) if c in have]
            names = ", ".join(columns[i] for i in keep)
            marks = ", ".join("?" for _ in keep)
            try:
                con.executemany(f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})",
                                [[row[i] for i in keep] for row in rows])
            except sqlite3.DatabaseError:
                lost.append(table)
                continue
            kept[table] = len(rows)
    return kept


def _set_aside_id_files(folder: Path, stamp: str) -> None:
    """Image ids change when the images table is rebuilt: move each run's id-keyed arrays
    (embeddings, held-out ids) aside so nothing pairs them with the wrong images."""
    for run_dir in (folder / "runs").glob("*"):
        arrays = list(run_dir.glob("*.npy"))
        if not arrays:
            continue
        aside = run_dir / f"stale-{stamp}"
        aside.mkdir(exist_ok=True)
        for array in arrays:
            os.replace(array, aside / array.name)


def _replay_journal(workspace) -> tuple[int, int]:
    """Apply the journal's latest annotation of each path to the rebuilt database."""
    latest = read_journal(workspace.path)
    if not latest:
        return 0, 0
    with workspace.transaction() as con:
        ids = dict(con.execute("SELECT relpath, id FROM images").fetchall())
        rows = [(ids[relpath], int(bool(row.get("flagged"))), row.get("flagged_at"),
                 row.get("user_label"), row.get("labelled_at"),
                 _hash_from_journal(row.get("flagged_hash")))
                for relpath, row in latest.items() if relpath in ids]
        con.executemany("INSERT OR REPLACE INTO annotations (image_id, flagged, flagged_at, "
                        "user_label, labelled_at, flagged_hash) VALUES (?, ?, ?, ?, ?, ?)",
                        rows)
    flags = sum(1 for row in rows if row[1])
    labels = sum(1 for row in rows if row[3] is not None)
    return flags, labels


def _hash_from_journal(text) -> bytes | None:
    """The picture hash a journal line kept for a flag (hex); None for lines without one."""
    if not isinstance(text, str):
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:  # a damaged line: the flag stays, unverified
        return None
