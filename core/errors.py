"""The policy for failures a user can cause, shared by the GUI and the command line.

:func:`user_message` turns such an error (a bad value, folder, file, CSV, checkpoint or run;
a damaged, full or read-only workspace) into the one line DieSight shows for it, and
returns None for anything else (a bug, whose type name and traceback are worth keeping).
The exit codes below are what every ``diesight`` command returns
(``core.cli_common.run_command`` applies them; tests/faults/test_fault_exit_codes.py).
"""

from __future__ import annotations

import errno
import os
import sqlite3

EXIT_OK = 0
EXIT_BUG = 1          # an unexpected error: Python's own exit code for a traceback
EXIT_USER_ERROR = 2   # what was asked cannot be done: a bad option value, folder, file, CSV,
#                       checkpoint or run, a damaged, full or read-only workspace, a run that
#                       another process is training; one line on stderr says why
EXIT_CANCELLED = 130  # Ctrl-C (a run stopped this way can be resumed)

# A full disk, a full quota, or a file-size limit: all "disk full" to the user.
DISK_FULL_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG")
                             if hasattr(errno, name))


def is_user_error(exc: BaseException) -> bool:
    """True for the errors a user can cause (their message is written for the user)."""
    from core.checkpoint import CheckpointError
    from core.dataset import DatasetError
    from core.workspace_guard import WorkspaceError

    # A bare KeyError or IndexError is a bug; core's own LookupErrors (no scores yet) are not.
    return isinstance(exc, (ValueError, OSError, DatasetError, CheckpointError,
                            WorkspaceError, sqlite3.DatabaseError)) or \
        type(exc).__module__.startswith("core.")


def user_message(exc: BaseException, data: str | os.PathLike | None = None) -> str | None:
    """The one line shown for a user error, or None when ``exc`` is not one (a bug).

    Args:
        exc: the error.
        data: the dataset folder the command or window works on (names the workspace
            database and the ``diesight repair`` command for a database error).
    """
    if not is_user_error(exc):
        return None
    if isinstance(exc, sqlite3.DatabaseError):
        from core.workspace import workspace_dir_for
        from core.workspace_guard import database_error_message

        db = (workspace_dir_for(data) / "diesight.sqlite" if data is not None
              else "the workspace database")
        return database_error_message(db, exc, data)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        what = f"cannot write {exc.filename}" if exc.filename else "cannot write a file"
        return (f"disk full: {what} ({exc.strerror or 'no space left'}); free some space and "
                f"run the command again")
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        hint = {errno.EROFS: "; choose a writable folder",
                errno.EACCES: "; check the permissions or choose another folder"}
        return f"{exc.strerror}{where}{hint.get(exc.errno, '')}"
    text = " ".join(str(exc).split("\n")).strip()
    return text or type(exc).__name__
