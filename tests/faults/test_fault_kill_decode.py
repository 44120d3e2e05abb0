"""Guarantee: kill -9 of a command in the middle of its first decode never locks the
workspace. The decode workers die with their parent and cannot hold the open lock, so the
next command opens the folder at once and the database stays intact."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from fault_helpers import REPO, alive, children_of, cli, integrity_ok, popen_cli, widened_copy

from core.workspace import workspace_dir_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="kills real processes and reads /proc (Linux)")


def _wait_for_decode(proc, deadline: float) -> list[int]:
    """Read the command's progress until decoding has begun; its workers' pids then."""
    buffered = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.05)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
            if not chunk:
                break
            buffered += chunk
        workers = children_of(proc.pid)
        if workers and ("decode" in buffered or "Found" in buffered):
            return workers
    raise AssertionError(f"the scan never started decoding in a pool:\n{buffered}")


def test_kill_9_during_first_decode_leaves_the_workspace_usable(demo_folder, tmp_path,
                                                                isolated_home):
    data = widened_copy(demo_folder, tmp_path / "data", copies=8)  # 1,920 images
    home = isolated_home
    proc = popen_cli("scan", data, "--workers", "2", home=home)
    try:
        workers = _wait_for_decode(proc, time.monotonic() + 90)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    # The workers end with their parent (not minutes later, not never).
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    lingering = [pid for pid in workers if alive(pid)]
    for pid in lingering:  # a failing run must not leave orphans behind
        os.kill(pid, signal.SIGKILL)
    assert not lingering, "decode workers outlived a kill -9"

    started = time.monotonic()
    result = cli("scan", data, "--workers", "2", home=home, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert "Waiting for another DieSight process" not in result.stderr
    assert "1,920" in result.stdout
    assert integrity_ok(workspace_dir_for(data) / "diesight.sqlite")


def test_a_lingering_worker_cannot_hold_the_open_lock(tmp_path):
    """Even a forked child that outlives its parent (here: a plain fork, which nothing
    tells to die) does not keep the workspace locked: the lock is the process's."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    script = f"""
import os, sys, time
from core.cache import exclusive_open
with exclusive_open({str(workspace)!r}):
    if os.fork() == 0:          # a child forked while the lock is held, like a pool worker
        time.sleep(30)
        os._exit(0)
    print("locked", flush=True)
    time.sleep(30)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "locked"
        children = children_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        from core.cache import exclusive_open

        started = time.monotonic()
        with exclusive_open(workspace, cancel=lambda: time.monotonic() - started > 10):
            pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()

