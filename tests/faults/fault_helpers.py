"""Helpers of the fault-injection suite: the real ``diesight`` command in a subprocess, the
one-line-error check every case makes, and the workspace checks after a fault."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, home: Path, timeout: float = 120,
        stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run ``diesight ARGS`` as its own process with ``DIESIGHT_HOME=home``."""
    return subprocess.run([sys.executable, "-m", "app.entry", *map(str, args)],
                          cwd=REPO, env=cli_env(home), capture_output=True, text=True,
                          timeout=timeout, stdin=stdin)


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, DIESIGHT_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def popen_cli(*args: str, home: Path) -> subprocess.Popen:
    """Start ``diesight ARGS`` without waiting; stderr is a pipe (progress lines)."""
    return subprocess.Popen([sys.executable, "-m", "app.entry", *map(str, args)], cwd=REPO,
                            env=cli_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one ``diesight ...:`` error line of a failed command; fails on a traceback, on
    more than one error line, or when a needle is not in it."""
    stderr = proc.stderr
    assert "Traceback" not in stderr, stderr
    assert "weights_only" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("diesight ")]
    assert len(errors) == 1, stderr
    line = errors[0]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def integrity_ok(db: Path) -> bool:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def widened_copy(source: Path, out: Path, copies: int) -> Path:
    """``source``'s Kaggle tree with every image present ``copies`` times (hard links when
    possible): a folder big enough for the decode pool, made in a fraction of a second."""
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.suffix.lower() != ".jpg":
            continue
        folder = out / path.parent.relative_to(source)
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            target = folder / f"{path.stem}_{copy}{path.suffix}"
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
    return out


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
