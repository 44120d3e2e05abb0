"""Lots: a new folder added to a dataset, kept on reopen, scored and merged, from the CLI too."""

from __future__ import annotations

import csv
import sqlite3

import numpy as np
import pytest
from ingest_helpers import snapshot
from PIL import Image
from scoring_fixtures import make_lot, make_run

from core.cli import main
from core.dataset import open_dataset, summary_lines
from core.export import export_scores
from core.lots import (
    LotError,
    add_lot,
    list_lots,
    lot_image_ids,
    lot_positions,
    lot_split,
    remove_lot,
    score_new_lot,
)
from core.progress import Cancelled
from core.ranking import ranked_images
from core.runs import RunNotFound
from core.score_store import aligned_scores, load_embeddings, load_scores
from core.scoring import score_dataset
from core.workspace import _MIGRATIONS, SCHEMA_VERSION, Workspace


@pytest.fixture
def dataset(tmp_path):
    return open_dataset(make_lot(tmp_path / "data"), workers=1)


@pytest.fixture
def lot_folder(tmp_path):
    # Class folders on purpose: a lot's images are unlabelled all the same.
    return make_lot(tmp_path / "new lot 7", good=2, bad=2, test=3, seed=5, first_id=500)


def lot_files(folder) -> list[str]:
    return sorted(p.as_posix() for p in folder.rglob("*.png"))


# --- adding -------------------------------------------------------------------------------


def test_added_lot_joins_unlabelled_and_keeps_the_datasets_ids(dataset, lot_folder):
    before = snapshot(lot_folder)
    updated = add_lot(dataset, lot_folder, workers=1)

    n = len(dataset)
    kept = updated.positions(dataset.image_ids)
    assert (kept >= 0).all()
    assert [updated.relpaths[p] for p in kept] == dataset.relpaths
    assert np.array_equal(updated.labels[kept], dataset.labels)
    assert np.array_equal(updated.splits[kept], dataset.splits)

    positions = lot_positions(updated, "new lot 7")
    assert len(updated) == n + 7 and len(positions) == 7
    assert lot_image_ids(updated, "new lot 7").min() > dataset.image_ids.max()  # new rows
    assert (updated.labels[positions] == -1).all()
    assert set(updated.splits[positions].tolist()) == {lot_split("new lot 7")} == {"lot new lot 7"}
    assert sorted(updated.path(p).as_posix() for p in positions) == lot_files(lot_folder)
    for p in positions:
        pixels = np.asarray(Image.open(updated.path(p)).convert("L"))
        assert np.array_equal(updated.images[updated.image_ids[p]], pixels)
    assert updated.counts()["lot new lot 7"] == {"good": 0, "bad": 0, "unlabelled": 7}
    assert [(lot.name, lot.folder, lot.missing) for lot in updated.lots] == [
        ("new lot 7", lot_folder.resolve(), False)]
    assert snapshot(lot_folder) == before  # nothing written into the lot folder


def test_reopening_the_root_keeps_the_lot_without_decoding(dataset, lot_folder):
    updated = add_lot(dataset, lot_folder, "July", workers=1)
    again = open_dataset(dataset.root, workers=1)
    assert again.stats.decoded == 0
    assert np.array_equal(again.image_ids, updated.image_ids)
    assert again.relpaths == updated.relpaths
    assert len(lot_positions(again, "July")) == 7
    text = "\n".join(summary_lines(again))
    assert "lot July" in text and f"July: 7 images from {lot_folder.resolve()}" in text


def test_missing_lot_folder_is_reported_and_its_images_come_back(dataset, lot_folder, tmp_path):
    updated = add_lot(dataset, lot_folder, "July", workers=1)
    moved = lot_folder.rename(tmp_path / "elsewhere")
    gone = open_dataset(dataset.root, workers=1)
    assert len(gone) == len(dataset) and len(lot_positions(gone, "July")) == 0
    assert gone.lots[0].missing
    [skipped] = gone.skipped
    assert skipped.relpath == lot_folder.resolve().as_posix() + "/"
    assert "lot 'July': folder not found" in skipped.reason
    assert "folder not found or unreadable" in "\n".join(summary_lines(gone))

    moved.rename(lot_folder)
    back = open_dataset(dataset.root, workers=1)
    assert np.array_equal(back.image_ids, updated.image_ids) and back.stats.decoded == 0


def test_adding_the_same_folder_again_rescans_and_may_rename(dataset, lot_folder):
    first = add_lot(dataset, lot_folder, "July", workers=1)
    Image.fromarray(np.full((72, 74), 9, np.uint8)).save(lot_folder / "late.png")
    second = add_lot(first, lot_folder, "August", workers=1)
    assert [lot.name for lot in list_lots(dataset.workspace)] == ["August"]
    assert len(lot_positions(second, "July")) == 0
    ids = lot_image_ids(second, "August")
    assert len(ids) == 8 and set(lot_image_ids(first, "July")) < set(ids)


@pytest.mark.parametrize("where, name, message", [
    ("missing", None, "Lot folder not found"),
    ("file", None, "Not a folder"),
    ("inside", None, "inside the dataset folder"),
    ("parent", None, "is inside"),
    ("empty", None, "No images found"),
    ("broken", None, "None of the images"),
    ("lot", "", "needs a name"),
    ("lot", "a/b", "slashes"),
    ("lot", "x" * 65, "too long"),
    ("other", "July", "exists already"),
    ("nested", "Nested", "overlaps lot"),
])
def test_unusable_lots_are_refused_and_change_nothing(dataset, lot_folder, tmp_path, where,
                                                      name, message):
    add_lot(dataset, lot_folder, "July", workers=1)
    other = make_lot(tmp_path / "other", good=0, bad=0, test=2, first_id=900)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_text("not an image")
    (tmp_path / "a file").write_text("x")
    folder = {"missing": tmp_path / "nope", "file": tmp_path / "a file",
              "inside": dataset.root / "train", "parent": tmp_path,
              "empty": tmp_path / "empty", "broken": tmp_path / "broken", "lot": other,
              "other": other, "nested": lot_folder / "train"}[where]
    before = list_lots(dataset.workspace)
    with pytest.raises(LotError, match=message):
        add_lot(dataset, folder, name, workers=1)
    assert list_lots(dataset.workspace) == before
    assert len(open_dataset(dataset.root, workers=1)) == len(dataset) + 7


def test_cancelled_add_leaves_no_lot(dataset, tmp_path):
    big = make_lot(tmp_path / "big", good=0, bad=0, test=70, first_id=700)  # > 1 chunk
    decoded = []

    def progress(report) -> None:
        if report.stage == "decode":
            decoded.append(report.done)

    with pytest.raises(Cancelled):
        add_lot(dataset, big, progress=progress, cancel=lambda: bool(decoded), workers=1)
    assert decoded and decoded[-1] < 70
    assert list_lots(dataset.workspace) == []
    again = open_dataset(dataset.root, workers=1)
    assert np.array_equal(again.image_ids, dataset.image_ids)
    # Adding it again reuses the pixels decoded before the cancel.
    added = add_lot(again, big, workers=1)
    assert added.stats.reused == len(dataset) + decoded[-1] and len(added) == len(dataset) + 70


def test_removed_lot_leaves_the_dataset(dataset, lot_folder):
    add_lot(dataset, lot_folder, "July", workers=1)
    remove_lot(dataset.workspace, "July")
    assert np.array_equal(open_dataset(dataset.root, workers=1).image_ids, dataset.image_ids)
    with pytest.raises(LotError, match="No lot named"):
        remove_lot(dataset.workspace, "July")


def test_a_version_1_workspace_migrates_and_keeps_its_data(tmp_path):
    path = tmp_path / "old-workspace"
    path.mkdir()
    con = sqlite3.connect(path / "diesight.sqlite")
    con.executescript("BEGIN;" + _MIGRATIONS[1] + "; PRAGMA user_version = 1; COMMIT;")
    con.execute("INSERT INTO meta (key, value) VALUES ('image_height', '72')")
    con.commit()
    con.close()

    workspace = Workspace(path)
    assert workspace.schema_version() == SCHEMA_VERSION
    assert workspace.get_meta("image_height") == "72"
    assert list_lots(workspace) == []


# --- scoring --------------------------------------------------------------------------------


def test_scoring_a_new_lot_merges_into_the_runs_scores(dataset, lot_folder, tmp_path):
    run = make_run(dataset.workspace)
    score_dataset(dataset, run, device="cpu")
    old_ids, old_scores = load_scores(dataset.workspace, run.id)
    old_emb_ids, old_embeddings = load_embeddings(dataset.workspace, run.id)

    new = score_new_lot(dataset, run, lot_folder, "July", device="cpu", workers=1)
    lot_ids = lot_image_ids(new.dataset, "July")
    assert np.array_equal(new.result.image_ids, lot_ids)
    assert new.lot.name == "July" and new.lot.split == "lot July"

    ids, scores = load_scores(dataset.workspace, run.id)
    assert np.array_equal(ids, new.dataset.image_ids)
    assert np.array_equal(scores[np.isin(ids, old_ids)], old_scores)  # untouched
    assert np.array_equal(scores[np.isin(ids, lot_ids)], new.result.scores)
    emb_ids, embeddings = load_embeddings(dataset.workspace, run.id)
    assert np.array_equal(emb_ids, new.dataset.image_ids)
    assert np.array_equal(embeddings[np.isin(emb_ids, old_emb_ids)], old_embeddings)
    assert np.array_equal(embeddings[np.isin(emb_ids, lot_ids)], new.result.embeddings)
    assert not np.isnan(aligned_scores(new.dataset, run.id)).any()

    # The lot in the ranked list and the exports, with the real file paths.
    ranking = ranked_images(new.dataset, run.id, split="lot July")
    assert len(ranking) == 7 and set(ranking.relpaths) == set(lot_files(lot_folder.resolve()))
    out = tmp_path / "scores.csv"
    export_scores(new.dataset, run, out)
    rows = [row for row in csv.DictReader(out.open()) if row["split"] == "lot July"]
    assert sorted(row["path"] for row in rows) == lot_files(lot_folder.resolve())
    assert {row["label"] for row in rows} == {""}  # unlabelled


def test_scoring_only_some_ids_checks_them(dataset):
    run = make_run(dataset.workspace)
    with pytest.raises(ValueError, match="not present"):
        score_dataset(dataset, run, device="cpu", only_ids=[int(dataset.image_ids.max()) + 1])
    with pytest.raises(ValueError, match="no images to score"):
        score_dataset(dataset, run, device="cpu", only_ids=[])
    # Without earlier scores, a partial scoring stores just those images.
    result = score_dataset(dataset, run, device="cpu", only_ids=dataset.image_ids[:3])
    assert np.array_equal(load_scores(dataset.workspace, run.id)[0], dataset.image_ids[:3])
    assert np.array_equal(load_embeddings(dataset.workspace, run.id)[1], result.embeddings)


def test_cancelled_lot_scoring_removes_the_new_lot_and_keeps_scores(dataset, lot_folder):
    run = make_run(dataset.workspace)
    score_dataset(dataset, run, device="cpu")
    before = load_scores(dataset.workspace, run.id)
    scoring = []

    def progress(report) -> None:
        if report.stage == "score":
            scoring.append(report.done)

    with pytest.raises(Cancelled):
        score_new_lot(dataset, run, lot_folder, device="cpu", batch_size=2, workers=1,
                      progress=progress, cancel=lambda: bool(scoring))
    assert list_lots(dataset.workspace) == []
    after = load_scores(dataset.workspace, run.id)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert np.array_equal(open_dataset(dataset.root, workers=1).image_ids, dataset.image_ids)


def test_a_bad_run_changes_nothing(dataset, lot_folder):
    with pytest.raises(RunNotFound):
        score_new_lot(dataset, 42, lot_folder, device="cpu", workers=1)
    assert list_lots(dataset.workspace) == []


# --- the command line -------------------------------------------------------------------------


def test_cli_score_lot_then_scan_shows_it(dataset, lot_folder, capsys):
    run = make_run(dataset.workspace)
    assert main(["score", str(dataset.root), "--run", str(run.id), "--device", "cpu",
                 "--lot", str(lot_folder), "--lot-name", "July", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Added lot 'July'" in out and "Scored 7 images" in out
    assert out.count("lot July") >= 4  # the added line and the three top rows
    assert str(lot_folder.resolve() / "train") in out
    ids, _ = load_scores(dataset.workspace, run.id)
    assert len(ids) == 7  # only the lot was scored

    assert main(["scan", str(dataset.root)]) == 0
    out = capsys.readouterr().out
    assert "lot July" in out and "July: 7 images from" in out


def test_cli_lot_errors_are_one_line(dataset, lot_folder, capsys):
    run = make_run(dataset.workspace)
    assert main(["score", str(dataset.root), "--lot-name", "x"]) == 2
    assert "--lot-name needs --lot" in capsys.readouterr().err
    assert main(["score", str(dataset.root), "--run", str(run.id), "--device", "cpu",
                 "--lot", str(dataset.root / "train")]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err
    assert "--lot FOLDER" in _help_text(capsys)


def _help_text(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = capsys.readouterr().out
    assert "--run DATA@3" in out  # the other way: a new folder as its own dataset
    return out
