"""Guarantees: every command exits with the same code for the same kind of failure
(core.cli's table: 0 done, 2 user error with one line on stderr, 130 cancelled, 1 only for
a bug); a DIESIGHT_HOME that is a file or read-only is one line naming the path; a second
``train --resume`` of a run another process is training is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fault_helpers import REPO, cli, cli_env, error_line
from scoring_fixtures import make_lot, make_run

from core.cli import EXIT_USER_ERROR
from core.dataset import open_dataset
from core.runs import update_run


def test_the_same_folder_error_has_the_same_code_and_words_in_scan_and_train(tmp_path,
                                                                          isolated_home):
    missing = tmp_path / "nowhere"
    lines = {}
    for command in ("scan", "train"):
        result = cli(command, missing, home=isolated_home, timeout=60)
        assert result.returncode == EXIT_USER_ERROR, result.stderr
        lines[command] = error_line(result, f"Folder not found: {missing}")
    assert lines["scan"].split(":", 1)[1] == lines["train"].split(":", 1)[1]


def test_option_values_out_of_range_are_user_errors(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=2, bad=2, test=0)
    result = cli("scan", data, "--workers", "0", home=isolated_home, timeout=60)
    assert result.returncode == EXIT_USER_ERROR
    error_line(result, "--workers")


def test_diesight_home_that_is_a_file_is_one_line_naming_it(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    data = make_lot(tmp_path / "lot", good=2, bad=2, test=0)
    for command in (["scan", data], ["flag", data, "0"], ["train", data]):
        result = cli(*command, home=home, timeout=60)
        assert result.returncode == EXIT_USER_ERROR, result.stderr
        error_line(result, str(home), "DIESIGHT_HOME")


@pytest.fixture
def readonly_home(tmp_path):
    """A DIESIGHT_HOME on a read-only filesystem (a tmpfs mounted read-only; root only)."""
    home = tmp_path / "rohome"
    home.mkdir()
    if os.geteuid() != 0:
        home.chmod(0o555)
        yield home
        home.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(home)],
                      capture_output=True).returncode != 0:
        pytest.skip("root without mount rights: no read-only filesystem to test with")
    try:
        yield home
    finally:
        subprocess.run(["umount", str(home)], check=False)


def test_diesight_home_on_a_read_only_filesystem_is_one_line_naming_it(tmp_path,
                                                                      readonly_home):
    data = make_lot(tmp_path / "lot", good=2, bad=2, test=0)
    result = cli("scan", data, home=readonly_home, timeout=60)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    error_line(result, str(readonly_home), "writable")


def test_a_second_resume_of_a_run_in_training_is_one_line(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=6, bad=4, test=0)
    dataset = open_dataset(data, workers=1)
    run = make_run(dataset.workspace)
    update_run(dataset.workspace, run.id, status="cancelled")
    holder = subprocess.Popen(  # the first `train --resume`, as far as the lock can tell
        [sys.executable, "-c",
         "import sys, time\n"
         "from core.runs import claim_run\n"
         "from core.workspace import Workspace\n"
         f"claim_run(Workspace.for_dataset({str(data)!r}), {run.id})\n"
         "print('held', flush=True)\n"
         "time.sleep(60)\n"],
        cwd=REPO, env=cli_env(isolated_home), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli("train", data, "--resume", run.id, "--device", "cpu",
                     home=isolated_home, timeout=120)
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    error_line(result, f"Run {run.id} is already being trained")
