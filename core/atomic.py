"""Atomic file writes: write to a temporary file beside the target, fsync, then rename,
so a crash or a kill never leaves a half-written export, cache index or checkpoint.

What a write promises (checked by ``tests/faults/test_fault_atomic.py``):

* the target is either its old self or the complete new file, never half;
* no temporary file stays behind after an error; a kill -9 leaves at most one per write
  in flight, named ``.<target name>.<pid>-<n>.diesight-tmp``, and the next write to the
  same target removes it (its writer being dead);
* a new file gets the permissions the umask gives any new file (0644 under umask 022, not
  the 0600 of ``tempfile.mkstemp``); an existing file keeps its mode;
* an error names the target (``OSError.filename``), never the temporary file.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".diesight-tmp"


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None):
    """Open a temporary file for writing; on success it replaces ``path`` in one step.

    Raises:
        OSError: the folder cannot be created or written, the disk is full, ...; its
            ``filename`` is ``path`` (what the user asked to write).
    """
    path = Path(path)
    binary = "b" in mode
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp, fd = _create_temp(path)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        try:
            with os.fdopen(fd, mode, encoding=None if binary else encoding,
                           newline=None if binary else newline) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            if exc.filename not in (None, str(tmp)):
                raise  # the caller's own file (one it reads, say): its name is the right one
            raise _naming(exc, path) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(path.parent)


def temp_name(path: Path) -> Path:
    """A new temporary file name for one write of ``path`` by this process."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_writes)}{TEMP_SUFFIX}")


_writes = itertools.count()
# A temporary file this old is a leftover even if its pid runs again (pids are reused).
STALE_AFTER_S = 24 * 3600


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files of ``path`` whose writer no longer runs (a killed write)."""
    removed = []
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        pid_text, _, count = name[len(prefix):-len(TEMP_SUFFIX)].partition("-")
        if not (pid_text.isdigit() and count.isdigit()):
            continue
        try:
            age = time.time() - os.stat(path.parent / name).st_mtime
            if _process_runs(int(pid_text)) and age < STALE_AFTER_S:
                continue
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
        except FileNotFoundError:
            pass
    return removed


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create the temporary file with the mode the target has or a new file would get."""
    tmp = temp_name(path)
    try:
        existing = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        existing = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
    try:
        if existing is not None:
            os.fchmod(fd, existing)
    except OSError:
        pass  # someone else's file in a shared folder: keep the umask's mode
    return tmp, fd


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error, naming the target instead of the temporary file (or nothing)."""
    code = exc.errno if exc.errno is not None else errno.EIO
    return OSError(code, exc.strerror or str(exc), str(path))  # OSError picks the subclass


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
