"""What guards the workspace: one-line messages when it cannot be used, and the journal of
the user's work.

* :class:`WorkspaceError` — the workspace folder or its database cannot be used (a
  ``DIESIGHT_HOME`` that is a file or read-only, a damaged or unreadable database, a full
  disk); the message names the file and the way out, on one line.
* The **annotations journal** (``annotations.jsonl`` beside the database): every flag and
  relabel is appended there, by image path, in the same step that writes the database
  (core.annotations), so a damaged database loses none of the user's work.

The repair that uses both is ``core.recovery`` (it opens datasets, so it sits above
``core.dataset``; this module sits below ``core.workspace``).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

DB_NAME = "diesight.sqlite"
JOURNAL_NAME = "annotations.jsonl"
DAMAGED_SUFFIX = ".damaged-"

# sqlite3 messages that mean the file itself is damaged (not busy, not full).
_DAMAGE_SIGNS = ("malformed", "not a database", "file is encrypted", "corrupt")


class WorkspaceError(Exception):
    """The workspace cannot be used; the message names the file and the way out."""


# -- messages ---------------------------------------------------------------------------------


def is_damage(exc: BaseException) -> bool:
    """True for an sqlite3 error that means the database file is damaged."""
    return isinstance(exc, sqlite3.DatabaseError) and any(
        sign in str(exc).lower() for sign in _DAMAGE_SIGNS)


def database_error_message(db_path: Path, exc: sqlite3.Error,
                           data: str | os.PathLike | None = None) -> str:
    """One line for an sqlite3 error on the workspace database ``db_path``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    repair = f"diesight repair {data}" if data is not None else "diesight repair DATA"
    if is_damage(exc):
        return (f"The workspace database {db_path} is damaged ({text}). Run `{repair}`: it "
                f"moves the damaged file aside and rebuilds it from the folder, keeping your "
                f"flags and labels.")
    if "disk is full" in lowered or "no space" in lowered or (
            "disk i/o error" in lowered and _nearly_full(db_path)):
        return (f"disk full: cannot write the workspace database {db_path}; free some space "
                f"and run the command again (nothing was lost).")
    if "readonly" in lowered or "read-only" in lowered:
        return (f"The workspace database {db_path} is read-only; make it (and its folder) "
                f"writable, or set DIESIGHT_HOME to a writable folder.")
    if "locked" in lowered or "busy" in lowered:
        return (f"The workspace database {db_path} is busy (another DieSight process holds "
                f"it); try again when that one has finished.")
    if "unable to open" in lowered:
        return (f"The workspace database {db_path} cannot be opened; check that its folder "
                f"exists and is writable (DIESIGHT_HOME).")
    return f"The workspace database {db_path} failed: {text}."


def _nearly_full(path) -> bool:
    """True when the filesystem holding ``path`` has (almost) no room left: SQLite reports a
    write that fails for lack of space in its shared-memory or WAL file as a "disk I/O
    error"."""
    try:
        stats = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1024 * 1024


def folder_error_message(path: Path, exc: OSError, what: str = "the workspace folder") -> str:
    """One line for a workspace folder that cannot be created or written."""
    reason = exc.strerror or str(exc)
    home = os.environ.get("DIESIGHT_HOME")
    where = f" (DIESIGHT_HOME={home})" if home else ""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file is in the way; point DIESIGHT_HOME at a folder"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "point DIESIGHT_HOME at a writable folder"
    elif exc.errno == errno.ENOSPC:
        hint = "disk full: free some space and run the command again"
    else:
        hint = "check the path, or point DIESIGHT_HOME at another folder"
    return f"Cannot create {what} {path}{where}: {reason}; {hint}."


# -- the annotations journal --------------------------------------------------------------------


def journal_path(workspace_path: Path) -> Path:
    return Path(workspace_path) / JOURNAL_NAME


def append_journal(workspace_path: Path, rows: Iterable[dict]) -> None:
    """Append annotation rows (``relpath`` plus the annotation's columns) and sync them.

    Raises:
        OSError: the journal cannot be written (the caller's transaction then rolls back).
    """
    lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    if not lines:
        return
    fd = os.open(journal_path(workspace_path),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        data = lines.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(workspace_path: Path) -> dict[str, dict]:
    """The latest annotation of each image path in the journal (later lines win).

    A torn last line (a kill in mid-write) or a damaged line is skipped.
    """
    latest: dict[str, dict] = {}
    try:
        text = journal_path(workspace_path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return latest
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("relpath"), str):
            latest[row["relpath"]] = row
    return latest
