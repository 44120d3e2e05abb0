"""The results commands end to end: models, score, runs, export, flag."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from scoring_fixtures import make_lot, make_run

from core.annotations import flags
from core.cli import main
from core.cli_common import TerminalProgress
from core.dataset import open_dataset
from core.models import list_models
from core.progress import Progress
from core.scoring import load_scores


@pytest.fixture
def lot(tmp_path):
    """A lot with one hand-made run (not scored yet)."""
    root = make_lot(tmp_path / "lot")
    dataset = open_dataset(root, workers=1)
    return dataset, make_run(dataset.workspace)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_models_lists_the_registry_with_seed_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for info in list_models():
        line = next(row for row in out.splitlines() if row.startswith(info.name + " "))
        assert f"{info.parameter_count:,}" in line and f" {info.embedding_dim} " in line
        if info.seed_parameter_count:
            assert f"{info.seed_parameter_count:,}" in line


def test_score_prints_a_summary_and_stores_scores(lot, capsys):
    dataset, run = lot
    assert main(["score", str(dataset.root), "--device", "cpu", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    n = len(dataset.image_ids)
    assert f"Scored {n} images with run {run.id} (designed_resnet)" in out
    assert "median" in out
    histogram = re.findall(r"^  \d\.\d-\d\.\d +([\d,]+)", out, flags=re.MULTILINE)
    assert len(histogram) == 10 and sum(int(c.replace(",", "")) for c in histogram) == n
    ids, scores = load_scores(dataset.workspace, run.id)
    assert len(ids) == n
    top = out.split("Top 10 highest scores:")[1].splitlines()[3:]
    assert len(top) == 10
    best = dataset.relpaths[int(np.argmax(scores))]
    assert top[0].split()[0] == "1" and top[0].endswith(best)
    assert f"{scores.max():.6f}" in top[0]


def test_runs_table_like_the_seed(lot, capsys):
    dataset, run = lot
    assert main(["runs", str(dataset.root)]) == 0
    header, _rule, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["id", "model", "parameters", "sampler"]
    cells = row.split()
    assert cells[:4] == [str(run.id), "designed_resnet", f"{run.parameters:,}", "8B"]
    assert cells[4:9] == ["0.75000", "1/2", "1m15s", "cpu", "finished"]
    assert cells[9] == "no"


def test_export_needs_scores_then_writes_all_three_files(lot, tmp_path, capsys):
    dataset, run = lot
    root = str(dataset.root)
    scores_csv = tmp_path / "scores.csv"
    assert main(["export", root, "--scores", str(scores_csv)]) == 2
    assert "run `diesight score" in capsys.readouterr().err and not scores_csv.exists()

    assert main(["score", root, "--run", str(run.id), "--device", "cpu"]) == 0
    assert main(["flag", root, dataset.ids[0], dataset.relpaths[1]]) == 0
    flagged_csv, submission_csv = tmp_path / "flagged.csv", tmp_path / "sub.csv"
    assert main(["export", root, "--run", str(run.id), "--flagged", str(flagged_csv),
                 "--only-user-flags", "--scores", str(scores_csv),
                 "--submission", str(submission_csv)]) == 0
    out = capsys.readouterr().out
    assert "Wrote 2 flagged images" in out

    ids, scores = load_scores(dataset.workspace, run.id)
    flagged = _rows(flagged_csv)
    assert sorted(r["path"] for r in flagged) == sorted(dataset.relpaths[:2])
    assert {float(r["score"]) for r in flagged} == set(scores[:2].tolist())
    assert [float(r["score"]) for r in _rows(scores_csv)] == scores.tolist()
    submission = _rows(submission_csv)
    assert len(submission) == int(np.count_nonzero(dataset.splits == "test"))
    assert list(submission[0]) == ["id", "label"]

    # A threshold of 0 calls every image defective: all of them are in the flagged list.
    assert main(["export", root, "--flagged", str(flagged_csv), "--threshold", "0"]) == 0
    assert len(_rows(flagged_csv)) == len(dataset.image_ids)


def test_flag_and_unflag_for_scripts(lot, capsys):
    dataset, _ = lot
    root = str(dataset.root)
    assert main(["flag", root, dataset.ids[3], dataset.ids[4]]) == 0
    assert set(flags(dataset.workspace)) == set(dataset.image_ids[[3, 4]].tolist())
    assert main(["flag", root, "--unflag", dataset.ids[3]]) == 0
    assert set(flags(dataset.workspace)) == {int(dataset.image_ids[4])}
    assert main(["flag", root, "no-such-image"]) == 2
    assert "no-such-image" in capsys.readouterr().err


def test_new_lot_scored_with_another_datasets_run(lot, tmp_path, capsys):
    dataset, run = lot
    new_lot = make_lot(tmp_path / "new lot", good=0, bad=0, test=5, seed=9)
    assert main(["score", str(new_lot), "--run", f"{dataset.root}@latest",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Scored 5 images" in out and f"imported from {dataset.root.resolve()}@{run.id}" in out
    assert main(["runs", str(new_lot)]) == 0
    assert "imported" in capsys.readouterr().out


def test_help_documents_run_naming(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert "OTHER_DATA@ID" in text and "OTHER_DATA@latest" in text and "latest" in text


def test_clear_errors_instead_of_tracebacks(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["runs", str(missing)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["score", str(missing)]) == 2
    assert "Folder not found" in capsys.readouterr().err
    fresh = make_lot(tmp_path / "fresh", good=2, bad=2, test=0)
    assert main(["runs", str(fresh)]) == 0
    assert "No runs yet" in capsys.readouterr().out
    assert main(["score", str(fresh), "--device", "cpu"]) == 2
    assert "train one first" in capsys.readouterr().err
    assert main(["export", str(fresh)]) == 2
    assert "nothing to export" in capsys.readouterr().err


def test_trained_run_scored_and_exported(tmp_path, capsys):
    """A real (one-epoch, tiny) training run through runs, score and export."""
    from core.training import TrainConfig, train

    root = make_lot(tmp_path / "lot")
    dataset = open_dataset(root, workers=1)
    run = train(dataset, TrainConfig(model="designed_resnet", image_size=64, epochs=1,
                                     per_class=4, batch_size=8, device="cpu", augment=False))
    assert run.status == "finished"
    assert main(["runs", str(root)]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:4] == [str(run.id), "designed_resnet", f"{run.parameters:,}", "4B"]
    assert row[4] == f"{run.val_auc:.5f}" and row[5] == f"{run.escapes}/{run.false_calls}"

    assert main(["score", str(root), "--device", "cpu"]) == 0
    assert f"Scored {len(dataset.image_ids)} images with run {run.id}" in capsys.readouterr().out
    submission = tmp_path / "submission.csv"
    assert main(["export", str(root), "--submission", str(submission)]) == 0
    _, scores = load_scores(dataset.workspace, run.id)
    test = np.flatnonzero(dataset.splits == "test")
    assert {r["id"]: float(r["label"]) for r in _rows(submission)} == {
        dataset.ids[p]: scores[p] for p in test}


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def _feed(progress: TerminalProgress) -> None:
    for done in range(1, 101):
        progress(Progress("decode", done, 100, f"{done} images"))
    progress(Progress("notice", message="Out of GPU memory: scoring in batches of 8."))
    for done in range(1, 11):
        progress(Progress("score", done, 10))
    progress.close()


def test_progress_redraws_one_bar_per_stage_on_a_terminal():
    stream = _Stream(terminal=True)
    _feed(TerminalProgress(stream))
    text = stream.getvalue()
    decode, notice, score = (line.split("\r")[-1].strip() for line in text.split("\n")[:3])
    # each stage is one line redrawn in place, left in its final state
    assert decode.startswith("decode: 100%|") and "100/100" in decode and "100 images" in decode
    assert notice == "Out of GPU memory: scoring in batches of 8."
    assert score.startswith("score: 100%|") and "10/10" in score
    assert text.endswith("\n") and text.count("\n") == 3


def test_progress_prints_few_plain_lines_into_a_log():
    stream = _Stream(terminal=False)
    _feed(TerminalProgress(stream, log_interval=3600))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split()[0] for line in lines] == ["decode", "decode", "Out", "score", "score"]
    assert lines[1].endswith("100/100 100 images") and lines[4].endswith("10/10")
    assert lines[2] == "Out of GPU memory: scoring in batches of 8."
