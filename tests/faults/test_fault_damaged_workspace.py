"""Guarantee: a damaged workspace database gives every command one line naming the file
and the way out (``diesight repair DATA``), and the repair keeps every flag and label."""

from __future__ import annotations

import os

from fault_helpers import cli, error_line, integrity_ok
from scoring_fixtures import make_lot

from core.annotations import flags, set_flag, set_user_label, user_labels
from core.dataset import open_dataset
from core.workspace import Workspace, workspace_dir_for
from core.workspace_guard import JOURNAL_NAME, read_journal


def _annotated_lot(tmp_path):
    data = make_lot(tmp_path / "lot", good=12, bad=6, test=6)
    dataset = open_dataset(data, workers=1)
    ids = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    flagged = ["train/bad_1/12.png", "test/all_tests/19.png", "train/good_0/3.png"]
    set_flag(dataset.workspace, [ids[p] for p in flagged], True)
    set_flag(dataset.workspace, ids["train/good_0/3.png"], False)  # unflagged again
    set_user_label(dataset.workspace, ids["train/good_0/5.png"], 1)
    set_user_label(dataset.workspace, ids["test/all_tests/20.png"], 0)
    return data, {"train/bad_1/12.png", "test/all_tests/19.png"}, {
        "train/good_0/5.png": 1, "test/all_tests/20.png": 0}


def _by_path(data):
    workspace = Workspace.for_dataset(data)
    dataset = open_dataset(data, workers=1)
    paths = dict(zip(dataset.image_ids.tolist(), dataset.relpaths, strict=True))
    return ({paths[i] for i in flags(workspace)},
            {paths[i]: label for i, label in user_labels(workspace).items()})


def test_every_flag_and_label_is_journalled_by_path(tmp_path):
    data, flagged, labels = _annotated_lot(tmp_path)
    journal = read_journal(workspace_dir_for(data))
    assert {p for p, row in journal.items() if row["flagged"]} == flagged
    assert {p: row["user_label"] for p, row in journal.items()
            if row["user_label"] is not None} == labels


def test_truncated_database_one_line_then_repair_keeps_flags_and_labels(tmp_path,
                                                                       isolated_home):
    data, flagged, labels = _annotated_lot(tmp_path)
    db = workspace_dir_for(data) / "diesight.sqlite"
    os.truncate(db, 4096)  # a real damaged file: the first page only

    for command in (["scan", data], ["flag", data, "12"], ["runs", data],
                    ["export", data, "--scores", tmp_path / "out.csv"]):
        result = cli(*command, home=isolated_home, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        error_line(result, str(db), f"diesight repair {data}")

    result = cli("repair", data, home=isolated_home, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "damaged" in result.stdout and "restored 2 flag(s) and 2 label(s)" in result.stdout
    damaged = [p for p in db.parent.iterdir() if p.name.startswith("diesight.sqlite.damaged-")
               and not p.name.endswith(("-wal", "-shm"))]
    assert len(damaged) == 1 and damaged[0].stat().st_size == 4096
    assert integrity_ok(db)
    assert _by_path(data) == (flagged, labels)

    again = cli("repair", data, home=isolated_home, timeout=60)
    assert again.returncode == 0 and "healthy" in again.stdout


def test_a_workspace_older_than_the_journal_journals_its_flags_at_the_first_change(tmp_path):
    data, flagged, labels = _annotated_lot(tmp_path)
    (workspace_dir_for(data) / JOURNAL_NAME).unlink()  # as a workspace from before
    dataset = open_dataset(data, workers=1)
    ids = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    set_flag(dataset.workspace, ids["train/good_0/0.png"], True)
    journal = read_journal(workspace_dir_for(data))
    assert {p for p, row in journal.items() if row["flagged"]} == flagged | {
        "train/good_0/0.png"}
