"""File ▸ Export…: the three CSV exports written on a worker, read back with the csv module."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from ranked_fixtures import state_with_run

from app.export_dialog import ExportDialog
from app.state import AppState

TASK_TIMEOUT_MS = 20_000


@pytest.fixture
def scored(demo_copy):
    return state_with_run(demo_copy, threshold=0.5)


@pytest.fixture
def dialog(qtbot, scored, settings):
    dialog = ExportDialog(scored[0], settings)
    qtbot.addWidget(dialog)
    return dialog


def export_and_wait(qtbot, dialog, kind, path):
    dialog.set_kind(kind)
    dialog.set_path(path)
    task = dialog.export()
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=TASK_TIMEOUT_MS):
        pass
    return task


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_flagged_export_lists_flags_and_calls_at_the_shared_threshold(qtbot, dialog, scored,
                                                                      tmp_path):
    state, run, scores = scored
    state.set_threshold(0.8)
    low = [int(p) for p in np.flatnonzero(scores < 0.2)[:2]]
    state.set_flagged(low, True)
    path = tmp_path / "flagged.csv"
    dialog.include_predicted_check.setChecked(True)
    export_and_wait(qtbot, dialog, "flagged", path)
    rows = read_rows(path)
    expected = set(low) | set(np.flatnonzero(scores >= 0.8).tolist())
    assert len(rows) == len(expected)
    assert dialog.status_label.text() == f"Wrote {len(rows):,} rows to {path}"
    ids = state.dataset.ids
    assert {r["id"] for r in rows} == {ids[p] for p in expected}
    assert [float(r["score"]) for r in rows] == sorted((scores[p] for p in expected),
                                                      reverse=True)
    assert {r["threshold"] for r in rows} == {"0.8"}
    assert {r["run"] for r in rows} == {str(run.id)}
    flagged_rows = [r for r in rows if r["flagged_at"]]
    assert {r["id"] for r in flagged_rows} == {ids[p] for p in low}
    # Every row says why it is listed: a flag, or the run's call at the threshold.
    assert {r["reason"] for r in flagged_rows} == {"flagged"}
    assert {r["reason"] for r in rows if not r["flagged_at"]} == {"score >= threshold"}


def test_flagged_export_lists_only_flags_by_default_readable_by_others(qtbot, dialog,
                                                                       scored, tmp_path):
    state = scored[0]
    state.set_flagged([4, 9], True)
    assert not dialog.include_predicted_check.isChecked()  # the user's flags, no more
    old_umask = os.umask(0o022)
    try:
        export_and_wait(qtbot, dialog, "flagged", tmp_path / "only-flags.csv")
    finally:
        os.umask(old_umask)
    rows = read_rows(tmp_path / "only-flags.csv")
    assert sorted(r["id"] for r in rows) == sorted(state.dataset.ids[p] for p in (4, 9))
    assert all(r["reason"].startswith("flagged") for r in rows)
    # A file for the line is readable by the team, as any file the user writes.
    assert stat.S_IMODE((tmp_path / "only-flags.csv").stat().st_mode) == 0o644


def test_scores_and_submission_exports(qtbot, dialog, scored, tmp_path):
    state, _, scores = scored
    state.set_threshold(0.3)
    export_and_wait(qtbot, dialog, "scores", tmp_path / "scores.csv")
    rows = read_rows(tmp_path / "scores.csv")
    assert len(rows) == len(state.dataset.image_ids)
    by_id = {r["id"]: r for r in rows}
    for p in (0, 17, 200):
        row = by_id[state.dataset.ids[p]]
        assert float(row["score"]) == scores[p]
        assert row["prediction"] == str(int(scores[p] >= 0.3))
    export_and_wait(qtbot, dialog, "submission", tmp_path / "submission")
    rows = read_rows(tmp_path / "submission.csv")  # ".csv" is added to a bare name
    test_positions = np.flatnonzero(np.isin(state.dataset.splits, ("test", "unlabelled")))
    assert len(rows) == len(test_positions) > 0
    assert list(rows[0]) == ["id", "label"]
    assert "Wrote" in dialog.status_label.text()


def test_the_first_export_goes_beside_the_dataset_not_home(dialog, scored):
    state = scored[0]
    beside = Path(state.dataset.root).resolve().parent
    assert Path(dialog.path_edit.text()).parent == beside
    assert dialog.default_folder() == beside


def test_the_last_folder_is_remembered(qtbot, scored, settings, tmp_path):
    state = scored[0]
    folder = tmp_path / "exports"
    folder.mkdir()
    first = ExportDialog(state, settings)
    qtbot.addWidget(first)
    export_and_wait(qtbot, first, "scores", folder / "mine.csv")
    second = ExportDialog(state, settings)
    qtbot.addWidget(second)
    second.set_kind("submission")
    assert second.path_edit.text() == str(folder / second.default_name("submission"))
    assert second.default_name("submission").endswith(f"-run{state.current_run.id}"
                                                      "-submission.csv")


def test_a_failed_write_is_reported_and_leaves_nothing_behind(qtbot, dialog, tmp_path):
    folder = tmp_path / "out"
    path = folder / "in-the-way.csv"
    path.mkdir(parents=True)  # a folder where the file should go: the write must fail
    task = export_and_wait(qtbot, dialog, "flagged", path)
    assert task.state == "failed"
    assert dialog.status_label.text().startswith("Nothing was written:")
    assert [p.name for p in folder.iterdir()] == ["in-the-way.csv"]  # no temp file left
    assert dialog.export_button.isEnabled()


def test_without_scores_nothing_can_be_exported(qtbot, demo_copy, settings):
    from scoring_fixtures import make_run

    from core.dataset import open_dataset

    state = AppState()
    dialog = ExportDialog(state, settings)
    qtbot.addWidget(dialog)
    assert dialog.problem().startswith("Open a folder first")
    state.set_dataset(open_dataset(demo_copy, workers=1))
    run = make_run(state.dataset.workspace)
    state.set_current_run(run)
    dialog = ExportDialog(state, settings)
    qtbot.addWidget(dialog)
    assert not dialog.export_button.isEnabled()
    assert dialog.export() is None
    assert f"Run {run.id} has no scores" in dialog.status_label.text()


def test_file_export_action_opens_the_dialog(qtbot, settings):
    from app.main_window import MainWindow

    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    assert window.export_action.text() == "&Export…"
    window.export_action.trigger()
    dialog = window.export_dialog
    assert dialog.isVisible()
    assert dialog.problem().startswith("Open a folder first")
    dialog.close()
    window.close()


def test_flagged_export_with_evidence_writes_overlays_and_a_sheet(qtbot, dialog, scored,
                                                                  tmp_path):
    state, _run, scores = scored
    state.set_threshold(0.97)  # a few rows: each overlay is a heatmap computed now
    path = tmp_path / "flagged.csv"
    dialog.include_predicted_check.setChecked(True)  # the run's calls: no flags were set
    dialog.evidence_check.setChecked(True)
    export_and_wait(qtbot, dialog, "flagged", path)
    rows = read_rows(path)
    folder = tmp_path / "flagged-evidence"
    assert len(rows) == int((scores >= 0.97).sum()) > 0
    assert sorted(p.name for p in folder.glob("*-overlay.png")) == sorted(
        f"{row['id']}-overlay.png" for row in rows)
    assert (folder / "contact-sheet.png").is_file()
    assert "heatmap overlays" in dialog.status_label.text()
    assert not dialog.evidence_check.isHidden()
    dialog.set_kind("scores")
    assert dialog.evidence_check.isHidden()
