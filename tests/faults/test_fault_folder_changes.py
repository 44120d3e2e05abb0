"""Guarantees: after images are deleted, replaced and added, ``scan`` says how many were
removed, changed and new; a replacement is found by its content even when it kept the old
size and mtime (``os.utime``); a score made on the old picture is never exported as the new
picture's (``export`` warns on one line, ``runs`` says "partly (N stale)"); a flag set on
the old picture stays, marked "image changed since flagged", also after ``repair``
rebuilds the database from the journal; a schema-3 workspace keeps its flags, labels,
runs and scores when it is upgraded.

Real files, real processes: the folder is changed on disk and every command is the real
``diesight`` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time

import numpy as np
from fault_helpers import cli
from PIL import Image
from scoring_fixtures import IMAGE_SHAPE, make_lot, make_run

from core.annotations import flags, flags_on_changed_images, set_flag, set_user_label
from core.dataset import RACY_WINDOW_NS, open_dataset
from core.export import CHANGED_SINCE_FLAGGED, CHANGED_SINCE_SCORED, NOT_SCORED_YET
from core.score_store import load_embeddings, load_scores, score_freshness
from core.workspace import SCHEMA_VERSION, Workspace
from core.workspace_guard import JOURNAL_NAME

DELETED = [f"train/good_0/{i}.png" for i in range(10)]
REPLACED = ["train/good_0/12.png", "train/good_0/13.png", "train/bad_1/20.png",
            "train/bad_1/21.png"]
SAME_SIZE_AND_MTIME = "test/all_tests/30.png"  # the fifth replacement, with os.utime
ADDED = [f"test/all_tests/{i}.png" for i in range(100, 105)]
FLAGGED = [SAME_SIZE_AND_MTIME, "train/bad_1/20.png", "train/bad_1/22.png"]


def _save_uncompressed(path, pixels) -> None:
    """A PNG whose size depends only on its dimensions (stored, not deflated, blocks)."""
    Image.fromarray(pixels).save(path, compress_level=0)


def _change_the_folder(data) -> None:
    """Delete 10 images, replace 5 (one keeping its size and mtime), add 5."""
    for relpath in DELETED:
        (data / relpath).unlink()
    rng = np.random.default_rng(99)
    for relpath in REPLACED:
        Image.fromarray(rng.integers(0, 255, IMAGE_SHAPE, dtype=np.uint8)).save(data / relpath)
    same = data / SAME_SIZE_AND_MTIME
    before = same.stat()
    _save_uncompressed(same, np.full(IMAGE_SHAPE, 240, dtype=np.uint8))
    os.utime(same, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = same.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    for relpath in ADDED:
        Image.fromarray(rng.integers(0, 255, IMAGE_SHAPE, dtype=np.uint8)).save(data / relpath)


def _read_csv(path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def _scored_column(runs_output: str, run_id: int) -> str:
    row = next(line for line in runs_output.splitlines() if line.split()[:1] == [str(run_id)])
    return row


def test_deleted_replaced_and_added_images_are_reported_and_never_keep_old_scores(
        tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=14, bad=10, test=8)  # ids 0..31
    _save_uncompressed(data / SAME_SIZE_AND_MTIME, np.full(IMAGE_SHAPE, 90, dtype=np.uint8))
    # Older than the window in which a ctime cannot vouch for the bytes (core.dataset), so
    # the stat-only count of `runs` below is exact.
    time.sleep(RACY_WINDOW_NS / 1e9)
    first = cli("scan", data, home=isolated_home, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Changes:" not in first.stdout  # a first open: nothing to compare with
    workspace = Workspace.for_dataset(data)
    run = make_run(workspace)
    scored = cli("score", data, "--run", run.id, "--device", "cpu", home=isolated_home)
    assert scored.returncode == 0, scored.stderr
    assert cli("flag", data, *FLAGGED, home=isolated_home).returncode == 0
    old_ids, old_scores = load_scores(workspace, run.id)
    old_score = dict(zip(old_ids.tolist(), old_scores.tolist(), strict=True))

    _change_the_folder(data)

    before_scan = cli("runs", data, home=isolated_home)  # reads no file, opens nothing
    assert (f"Note: 20 image file(s) of {data} were added, removed or modified since it was "
            "last opened") in before_scan.stdout, before_scan.stdout
    again = cli("scan", data, home=isolated_home, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "Changes:   10 removed, 5 changed, 5 new since the last open" in again.stdout
    assert "Flags:     2 flagged image(s) changed since they were flagged" in again.stdout
    dataset = open_dataset(data, workers=1)
    assert dataset.stats.changed == 0 and dataset.stats.decoded == 0  # settled by the scan
    ids_now = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    same_row = ids_now[SAME_SIZE_AND_MTIME]
    assert (dataset.images[same_row] == 240).all()  # the cache holds the new picture

    runs = cli("runs", data, home=isolated_home)
    assert "partly (10 stale)" in _scored_column(runs.stdout, run.id), runs.stdout
    assert "Note:" not in runs.stdout
    embedded, _ = load_embeddings(workspace, run.id)  # the activation space's points
    assert not {ids_now[p] for p in REPLACED + [SAME_SIZE_AND_MTIME]} & set(embedded.tolist())

    exported = cli("export", data, "--run", run.id, "--scores", tmp_path / "scores.csv",
                   "--flagged", tmp_path / "flagged.csv", home=isolated_home)
    assert exported.returncode == 0, exported.stderr
    warnings = [line for line in exported.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"diesight export: warning: 10 image(s) changed or new since run {run.id} scored "
        f"them (5 changed, 5 new); re-score with `diesight score {data} --run {run.id}`",
        "diesight export: warning: 2 flagged image(s) changed since they were flagged "
        f"(kept, noted '{CHANGED_SINCE_FLAGGED}')"], exported.stderr
    rows = _read_csv(tmp_path / "scores.csv")
    assert len(rows) == 32 - 10 + 5 and not set(DELETED) & set(rows)
    for relpath in REPLACED + [SAME_SIZE_AND_MTIME]:
        assert (rows[relpath]["score"], rows[relpath]["prediction"],
                rows[relpath]["note"]) == ("", "", CHANGED_SINCE_SCORED)
    for relpath in ADDED:
        assert (rows[relpath]["score"], rows[relpath]["note"]) == ("", NOT_SCORED_YET)
    ids = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    for relpath in set(rows) - set(REPLACED) - {SAME_SIZE_AND_MTIME} - set(ADDED):
        assert float(rows[relpath]["score"]) == old_score[ids[relpath]]
        assert rows[relpath]["note"] == ""
    flagged = _read_csv(tmp_path / "flagged.csv")
    assert flagged[SAME_SIZE_AND_MTIME]["note"] == \
        f"{CHANGED_SINCE_FLAGGED}; {CHANGED_SINCE_SCORED}"
    assert flagged["train/bad_1/22.png"]["note"] == ""
    assert flagged["train/bad_1/20.png"]["flagged_at"]  # the flag itself stays

    rescored = cli("score", data, "--run", run.id, "--device", "cpu", home=isolated_home)
    assert rescored.returncode == 0, rescored.stderr
    assert _scored_column(cli("runs", data, home=isolated_home).stdout, run.id).split()[-3] \
        == "yes"
    after = cli("export", data, "--run", run.id, "--scores", tmp_path / "scores2.csv",
                home=isolated_home)
    assert after.returncode == 0 and "warning" not in after.stderr, after.stderr
    rows = _read_csv(tmp_path / "scores2.csv")
    assert all(row["score"] and not row["note"] for row in rows.values())
    # Scoring again does not acknowledge a flag: the user looks at the new picture.
    assert {ids[p] for p in (SAME_SIZE_AND_MTIME, "train/bad_1/20.png")} == \
        flags_on_changed_images(workspace)


def test_repair_keeps_the_mark_of_a_flag_on_a_changed_image(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=14, bad=10, test=8)
    _save_uncompressed(data / SAME_SIZE_AND_MTIME, np.full(IMAGE_SHAPE, 90, dtype=np.uint8))
    assert cli("scan", data, home=isolated_home).returncode == 0
    assert cli("flag", data, *FLAGGED, home=isolated_home).returncode == 0
    _change_the_folder(data)
    assert cli("scan", data, home=isolated_home).returncode == 0
    journal = (Workspace.for_dataset(data).path / JOURNAL_NAME).read_text().splitlines()
    same = [json.loads(line) for line in journal if SAME_SIZE_AND_MTIME in line]
    assert len(same[-1]["flagged_hash"]) == 32  # the picture it was flagged on, in hex

    db = Workspace.for_dataset(data).db_path
    os.truncate(db, 4096)  # a damaged database: the images and annotations tables are lost
    repaired = cli("repair", data, home=isolated_home)
    assert repaired.returncode == 0, repaired.stderr
    workspace = Workspace.for_dataset(data)
    dataset = open_dataset(data, workers=1)
    ids = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    assert set(flags(workspace)) == {ids[p] for p in FLAGGED}
    assert flags_on_changed_images(workspace) == {ids[SAME_SIZE_AND_MTIME],
                                                  ids["train/bad_1/20.png"]}


def _downgrade_to_schema_3(workspace: Workspace) -> None:
    """What a schema-3 DieSight left: no hashes, no change times, no score parts,
    user_version 3."""
    con = sqlite3.connect(workspace.db_path)
    with con:
        for table, column in (("images", "ctime_ns"), ("images", "content_hash"),
                              ("scores", "content_hash"), ("annotations", "flagged_hash"),
                              ("scores", "network_logit"), ("scores", "golden")):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        con.execute("PRAGMA user_version = 3")
    con.close()


def test_a_schema_3_workspace_keeps_flags_labels_runs_and_scores(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=14, bad=10, test=8)
    dataset = open_dataset(data, workers=1)
    workspace = dataset.workspace
    run = make_run(workspace)
    assert cli("score", data, "--run", run.id, "--device", "cpu",
               home=isolated_home).returncode == 0
    ids = dict(zip(dataset.relpaths, dataset.image_ids.tolist(), strict=True))
    set_flag(workspace, [ids["train/bad_1/20.png"], ids["train/bad_1/22.png"]], True)
    set_user_label(workspace, ids["train/good_0/3.png"], 1)
    old_ids, old_scores = load_scores(workspace, run.id)
    _downgrade_to_schema_3(workspace)
    # Changed under the old DieSight's eyes: a new mtime, as it would have seen it.
    Image.fromarray(np.zeros(IMAGE_SHAPE, dtype=np.uint8)).save(data / "train/bad_1/20.png")

    upgraded = open_dataset(data, workers=1)
    assert Workspace(workspace.path).schema_version() == SCHEMA_VERSION == 5
    assert upgraded.stats.changed == 1 and upgraded.stats.decoded == 1
    assert set(flags(workspace)) == {ids["train/bad_1/20.png"], ids["train/bad_1/22.png"]}
    assert upgraded.labels[upgraded.relpaths.index("train/good_0/3.png")] == 1
    assert flags_on_changed_images(workspace) == {ids["train/bad_1/20.png"]}
    freshness = score_freshness(workspace, run.id)
    assert (freshness.current, freshness.changed, freshness.new) == (31, 1, 0)
    new_ids, new_scores = load_scores(workspace, run.id)
    keep = old_ids != ids["train/bad_1/20.png"]
    assert np.array_equal(new_ids, old_ids[keep])
    assert np.array_equal(new_scores, old_scores[keep])
    assert cli("runs", data, home=isolated_home).stdout.count("partly (1 stale)") == 1
