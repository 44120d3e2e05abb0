"""Guarantees: a full disk is one line that says "disk full" and names the file, from every
command; a training that cannot write its checkpoint fails the run without leaving a
``best.pt`` (or a pending or temporary file) the database does not know; scores,
embeddings, flags and the database survive, and everything works again once space is
freed.

Two real injections: a file-size limit (``RLIMIT_FSIZE``: writes past it fail with EFBIG;
always runs) and, as root, a real tmpfs of a few MiB filled to the last byte (ENOSPC)."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from fault_helpers import REPO, cli, cli_env, error_line, integrity_ok
from scoring_fixtures import make_lot, make_run

from core.annotations import flags
from core.cli import EXIT_USER_ERROR
from core.dataset import open_dataset
from core.runs import get_run, list_runs
from core.score_store import EMBEDDINGS_FILE, load_scores
from core.workspace import Workspace

TRAINING = ("--model", "designed_resnet", "--image-size", "64", "--per-class", "16",
            "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--threads", "1")
# designed_resnet's checkpoint (weights + AdamW state) is about 34 MB; the database, the
# cache and the id files of these tiny lots stay far below this limit.
FILE_SIZE_LIMIT = 8 * 2**20


def _cli_with_file_size_limit(*args, home, limit: int) -> subprocess.CompletedProcess:
    def limit_writes():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "app.entry", *map(str, args)], cwd=REPO,
                          env=cli_env(home), capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, preexec_fn=limit_writes)


def _assert_no_unknown_checkpoint(workspace: Workspace, run_id: int) -> None:
    run = get_run(workspace, run_id)
    assert run.status == "failed" and run.message.startswith("Disk full"), run.message
    run_dir = workspace.run_dir(run_id)
    leftovers = [p.name for p in run_dir.iterdir()
                 if p.suffix in (".pt", ".pending", ".diesight-tmp") or "diesight-tmp" in p.name]
    assert run.checkpoint is None and leftovers == [], leftovers


def test_a_file_size_limit_fails_training_as_disk_full_naming_the_checkpoint(tmp_path,
                                                                           isolated_home):
    data = make_lot(tmp_path / "lot", good=24, bad=16, test=4)
    assert cli("scan", data, home=isolated_home).returncode == 0
    result = _cli_with_file_size_limit("train", data, *TRAINING, home=isolated_home,
                                       limit=FILE_SIZE_LIMIT)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    line = error_line(result, "disk full", "best.pt")
    assert "inline_container" not in result.stderr and ".pending" not in line
    workspace = Workspace.for_dataset(data)
    _assert_no_unknown_checkpoint(workspace, 1)
    assert integrity_ok(workspace.db_path)

    again = cli("train", data, "--resume", "1", home=isolated_home)  # room again
    assert again.returncode == 0, again.stderr
    assert get_run(workspace, 1).status == "finished"


@pytest.fixture
def small_disk(tmp_path):
    """A real 24 MiB tmpfs (root only)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("not root: no tmpfs can be mounted (the RLIMIT_FSIZE test still runs)")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("root without mount rights: no small filesystem to fill")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk) -> None:
    """Fill the filesystem to its last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_full_disk_is_one_line_from_every_command_and_loses_nothing(tmp_path, small_disk,
                                                                      monkeypatch):
    home = small_disk / "home"
    monkeypatch.setenv("DIESIGHT_HOME", str(home))
    data = make_lot(tmp_path / "lot", good=24, bad=16, test=4)
    dataset = open_dataset(data, workers=1)
    workspace = dataset.workspace
    run = make_run(workspace)  # best.pt of the bare model: 11 MB
    assert cli("score", data, "--run", run.id, "--device", "cpu", home=home).returncode == 0
    assert cli("flag", data, "3", home=home).returncode == 0
    flagged = flags(workspace)
    embeddings = workspace.run_dir(run.id) / EMBEDDINGS_FILE
    before = hashlib.sha256(embeddings.read_bytes()).hexdigest()
    ids, scores = load_scores(workspace, run.id)

    # Training: the checkpoint (34 MB) does not fit in what is left.
    result = cli("train", data, *TRAINING, home=home)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    error_line(result, "disk full", "best.pt")
    trained = max(r.id for r in list_runs(workspace))
    _assert_no_unknown_checkpoint(workspace, trained)

    _fill(small_disk)
    for command in (["flag", data, "5"], ["runs", data], ["scan", data],
                    ["score", data, "--run", run.id, "--device", "cpu"],
                    ["export", data, "--run", run.id, "--scores", small_disk / "out.csv"]):
        result = cli(*command, home=home)
        assert result.returncode == EXIT_USER_ERROR, (command, result.stderr)
        error_line(result, "disk full")
    assert not (small_disk / "out.csv").exists()

    (small_disk / "filler").unlink()
    assert hashlib.sha256(embeddings.read_bytes()).hexdigest() == before
    ids_after, scores_after = load_scores(workspace, run.id)
    assert np.array_equal(ids, ids_after) and np.array_equal(scores, scores_after)
    assert flags(workspace) == flagged
    assert integrity_ok(workspace.db_path)
    assert cli("flag", data, "5", home=home).returncode == 0
    exported = cli("export", data, "--run", run.id, "--scores", small_disk / "out.csv",
                   home=home)
    assert exported.returncode == 0, exported.stderr
