"""Guarantee: an export (any atomic write) leaves the old file or the whole new one, no
temporary file after an error, at most one after a kill -9 (removed by the next write),
the folder's normal permissions, and errors that name the file the user asked for."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fault_helpers import REPO

from core.atomic import TEMP_SUFFIX, atomic_write


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("."))


def test_a_kill_leaves_one_temp_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    script = f"""
import time
from core.atomic import atomic_write
with atomic_write({str(target)!r}) as fh:
    fh.write("x" * 100_000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    leftovers = _temps(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.endswith(TEMP_SUFFIX)
    assert target.read_text() == "old\n"  # the old file, whole
    with atomic_write(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    assert _temps(tmp_path) == []


def test_an_error_while_writing_leaves_no_temp_file_and_the_old_content(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("the exporter failed")
    assert target.read_text() == "old\n"
    assert _temps(tmp_path) == []


def test_new_files_get_the_umask_mode_and_existing_files_keep_theirs(tmp_path):
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.csv"
        with atomic_write(fresh) as fh:
            fh.write("a\n")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        shared = tmp_path / "shared.csv"
        shared.write_text("a\n")
        shared.chmod(0o664)
        with atomic_write(shared) as fh:
            fh.write("b\n")
        assert stat.S_IMODE(shared.stat().st_mode) == 0o664
    finally:
        os.umask(old_umask)


@pytest.fixture
def readonly_folder(tmp_path):
    """A folder nobody can write to: a read-only tmpfs as root, chmod 555 otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                              str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root without mount rights: no read-only folder to test with")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_folder_error_names_the_target_not_the_temp_file(readonly_folder):
    target = readonly_folder / "out.csv"
    with pytest.raises(OSError) as caught:
        with atomic_write(target) as fh:
            fh.write("x")
    assert caught.value.filename == str(target)
    assert TEMP_SUFFIX not in str(caught.value) and ".tmp" not in str(caught.value)


def test_export_cli_to_a_read_only_folder_says_so_in_one_line(readonly_folder, tmp_path,
                                                              isolated_home):
    from fault_helpers import cli, error_line
    from scoring_fixtures import make_lot, make_run

    from core.dataset import open_dataset
    from core.scoring import score_dataset

    data = make_lot(tmp_path / "lot", good=6, bad=4, test=2)
    dataset = open_dataset(data, workers=1)
    score_dataset(dataset, make_run(dataset.workspace), device="cpu")
    target = readonly_folder / "out.csv"
    result = cli("export", data, "--scores", target, home=isolated_home)
    assert result.returncode != 0
    line = error_line(result, str(target))
    assert ".tmp" not in line and TEMP_SUFFIX not in line
