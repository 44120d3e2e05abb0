"""CSV exports parse back exactly, and a failed export leaves the old file alone."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scoring_fixtures import make_lot, make_run

import core.export
from core.annotations import flags, set_flag
from core.dataset import open_dataset
from core.export import (
    FLAGGED_COLUMNS,
    SCORES_COLUMNS,
    export_flagged,
    export_scores,
    export_submission,
)
from core.scoring import NoScoresError, store_scores


@pytest.fixture
def scored(tmp_path):
    """A lot whose run has awkward scores (no short decimal form) and a threshold of 0.6."""
    dataset = open_dataset(make_lot(tmp_path / "lot"), workers=1)
    run = make_run(dataset.workspace, threshold=0.6)
    n = len(dataset.image_ids)
    scores = np.random.default_rng(11).random(n) / 3 + np.arange(n) / (n + 7)
    scores[0] = 1 / 3
    scores[1] = 2.0 ** -40
    store_scores(dataset.workspace, run.id, dataset.image_ids, scores,
                 np.zeros((n, 32), np.float32))
    return dataset, run, scores


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _label_text(label) -> str:
    return "" if label == -1 else str(int(label))


def test_flagged_list_round_trips_exactly(scored, tmp_path):
    dataset, run, scores = scored
    user = dataset.image_ids[[0, 1, 5]]
    set_flag(dataset.workspace, user, True)
    stamps = flags(dataset.workspace)
    out = tmp_path / "flagged.csv"
    count = export_flagged(dataset, run, out)

    rows = _read(out)
    assert list(rows[0]) == list(FLAGGED_COLUMNS) and len(rows) == count
    predicted = np.flatnonzero(scores >= 0.6)
    expected = set(dataset.positions(user).tolist()) | set(predicted.tolist())
    assert len(predicted) > 0 and len(rows) == len(expected)
    by_path = {dataset.relpaths[p]: p for p in expected}
    for row in rows:
        p = by_path[row["path"]]
        assert row["id"] == dataset.ids[p]
        assert float(row["score"]) == scores[p]  # exact, not approximately
        assert row["label"] == _label_text(dataset.labels[p])
        assert (row["run"], row["model"], row["threshold"]) == (str(run.id), run.model, "0.6")
        assert row["flagged_at"] == stamps.get(int(dataset.image_ids[p]), "")
        why = [w for w, yes in (("flagged", int(dataset.image_ids[p]) in stamps),
                                ("score >= threshold", scores[p] >= 0.6)) if yes]
        assert row["reason"] == "; ".join(why) and why
    listed = [float(row["score"]) for row in rows]
    assert listed == sorted(listed, reverse=True)


def test_flagged_list_of_user_flags_only_with_given_threshold(scored, tmp_path):
    dataset, run, _ = scored
    set_flag(dataset.workspace, dataset.image_ids[[2]], True)
    out = tmp_path / "mine.csv"
    assert export_flagged(dataset, run.id, out, 0.25, include_predicted=False) == 1
    (row,) = _read(out)
    assert row["path"] == dataset.relpaths[2] and row["threshold"] == "0.25"


def test_scores_export_has_every_image(scored, tmp_path):
    dataset, run, scores = scored
    out = tmp_path / "scores.csv"
    assert export_scores(dataset, run, out) == len(dataset.image_ids)
    rows = _read(out)
    assert list(rows[0]) == list(SCORES_COLUMNS)
    assert [row["path"] for row in rows] == dataset.relpaths
    assert [row["split"] for row in rows] == dataset.splits.tolist()
    assert [float(row["score"]) for row in rows] == scores.tolist()
    assert [row["label"] for row in rows] == [_label_text(x) for x in dataset.labels]
    assert [int(row["prediction"]) for row in rows] == (scores >= 0.6).astype(int).tolist()


def test_submission_is_kaggle_id_label_for_test_images(scored, tmp_path):
    dataset, run, scores = scored
    out = tmp_path / "submission.csv"
    count = export_submission(dataset, run, out)
    with open(out, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert header == ["id", "label"]
    test = np.flatnonzero(dataset.splits == "test")
    assert count == len(rows) == len(test) > 0
    expected = {dataset.ids[p]: scores[p] for p in test}
    assert {i: float(label) for i, label in rows} == expected
    assert [int(i) for i, _ in rows] == sorted(int(i) for i in expected)


def test_exports_need_scores(scored, tmp_path):
    dataset, _, _ = scored
    unscored = make_run(dataset.workspace, seed=1)
    for export in (export_flagged, export_scores, export_submission):
        with pytest.raises(NoScoresError, match="diesight score"):
            export(dataset, unscored, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_submission_refuses_unscored_test_images(scored, tmp_path):
    dataset, run, scores = scored
    keep = dataset.splits != "test"
    keep[np.flatnonzero(~keep)[1:]] = True  # one test image left without a score
    store_scores(dataset.workspace, run.id, dataset.image_ids[keep], scores[keep],
                 np.zeros((int(keep.sum()), 32), np.float32))
    with pytest.raises(NoScoresError, match="1 test"):
        export_submission(dataset, run, tmp_path / "s.csv")


def test_failed_export_leaves_the_old_file(scored, tmp_path, monkeypatch):
    dataset, run, _ = scored
    out = tmp_path / "scores.csv"
    out.write_text("old contents\n")
    written = []

    def failing_number(value):
        written.append(value)
        if len(written) == 5:
            raise OSError("disk full")
        return repr(float(value))

    monkeypatch.setattr(core.export, "_number", failing_number)
    with pytest.raises(OSError, match="disk full"):
        export_scores(dataset, run, out)
    assert out.read_text() == "old contents\n"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
