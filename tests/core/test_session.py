"""The plain-Python session (core.session): its rules and events, without Qt."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scoring_fixtures import make_lot, make_run

from core import annotations
from core.dataset import open_dataset
from core.runs import get_run, update_run
from core.scoring import store_scores
from core.session import Session, run_to_show, saved_threshold


@pytest.fixture
def lot(tmp_path):
    return make_lot(tmp_path / "lot")


@pytest.fixture
def dataset(lot):
    return open_dataset(lot, workers=1)


def _scored_run(dataset, *, status="finished", threshold=0.5, seed=0):
    run = make_run(dataset.workspace, threshold=threshold, seed=seed)
    if status != "finished":
        update_run(dataset.workspace, run.id, status=status)
        run = get_run(dataset.workspace, run.id)
    n = len(dataset.image_ids)
    scores = np.arange(n, dtype=np.float64) / n
    store_scores(dataset.workspace, run.id, dataset.image_ids, scores,
                 np.zeros((n, 4), np.float32))
    return run, scores


def _events(session, name):
    seen = []
    getattr(session, name).connect(lambda *args: seen.append(args[0] if args else None))
    return seen


def test_the_session_imports_no_qt():
    code = "import sys, core.session; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_flags_and_labels_are_saved_at_once_and_announced(dataset):
    session = Session(dataset)
    changed = _events(session, "annotations_changed")
    session.set_flagged([3, 1, 3], True)
    assert changed[-1].tolist() == [1, 3]
    assert set(annotations.flags(dataset.workspace)) == set(dataset.image_ids[[1, 3]].tolist())
    assert session.flagged[[1, 3]].all() and session.flagged.sum() == 2
    good = int(np.flatnonzero(session.labels == 0)[0])
    session.set_label([good], 1)
    assert session.labels[good] == 1
    assert annotations.user_labels(dataset.workspace) == {int(dataset.image_ids[good]): 1}
    assert session.label_counts()["bad"] == int((dataset.labels == 1).sum()) + 1
    with pytest.raises(IndexError):
        session.set_flagged([len(dataset.image_ids)], True)


def test_undo_takes_back_flags_and_labels_in_order(dataset):
    session = Session(dataset)
    good = int(np.flatnonzero(session.labels == 0)[0])
    session.set_flagged([good, 2], True)
    session.set_label([good], 1)
    session.set_label([good], 0)  # a user label equal to the label as found is still one
    assert session.undo().startswith("Undid the label of 1 image")
    assert session.labels[good] == 1
    assert session.undo() is not None
    assert session.labels[good] == 0
    assert int(dataset.image_ids[good]) not in annotations.user_labels(dataset.workspace)
    assert session.undo().startswith("Undid the flag of 2 images")
    assert not session.flagged.any() and annotations.flags(dataset.workspace) == {}
    assert session.undo() is None and not session.can_undo


def test_predictions_and_threshold_clamp(dataset):
    session = Session(dataset)
    run, scores = _scored_run(dataset, threshold=0.3)
    session.set_current_run(run)
    assert session.threshold == pytest.approx(0.3)
    assert (session.predictions() == (scores >= 0.3)).all()
    session.set_threshold(0.6)  # the shared (cached) calls follow the threshold
    assert (session.predictions() == (scores >= 0.6)).all()
    session.set_dataset(dataset)
    assert session.predictions() is None
    session.set_current_run(run)
    session.set_threshold(7)
    assert session.threshold == 1.0
    session.set_threshold(-1)
    assert session.threshold == 0.0


def test_the_chosen_threshold_is_kept_per_run_and_restored(dataset, lot):
    first, _ = _scored_run(dataset, threshold=0.3, seed=1)
    second, _ = _scored_run(dataset, threshold=0.6, seed=2)
    session = Session(dataset)
    session.set_current_run(first)
    session.set_threshold(0.42)
    session.set_current_run(second)
    assert session.threshold == pytest.approx(0.6)  # the second run's own
    session.set_current_run(first)
    assert session.threshold == pytest.approx(0.42)
    assert saved_threshold(dataset.workspace, first) == pytest.approx(0.42)
    assert saved_threshold(dataset.workspace, second) == pytest.approx(0.6)

    reopened = Session()
    reopened.open_dataset(open_dataset(lot, workers=1))
    assert reopened.current_run.id == first.id  # the run last made current
    assert reopened.threshold == pytest.approx(0.42)


def test_a_cancelled_run_is_never_made_current_unasked(dataset, lot):
    finished, _ = _scored_run(dataset, seed=1)
    session = Session(dataset)
    session.set_current_run(finished)
    cancelled, _ = _scored_run(dataset, status="cancelled", seed=2)
    runs_changed = _events(session, "runs_changed")
    assert session.offer_trained_run(cancelled) is False
    assert session.current_run.id == finished.id and runs_changed
    # Nor when the folder is opened again, even though it is the newest scored run...
    fresh = open_dataset(lot, workers=1)
    fresh.workspace.set_meta("session.current_run", "999")  # a run that is gone
    assert run_to_show(fresh.workspace).id == finished.id
    # ...but the user may pick it, and then it is what reopening shows.
    session.set_current_run(cancelled)
    assert run_to_show(fresh.workspace).id == cancelled.id
    newer, _ = _scored_run(dataset, seed=3)
    assert session.offer_trained_run(newer) is True
    assert session.current_run.id == newer.id


def test_a_grown_dataset_keeps_run_threshold_image_and_selection_by_id(dataset, lot):
    run, _ = _scored_run(dataset)
    session = Session(dataset)
    session.set_current_run(run)
    session.set_threshold(0.37)
    session.set_current_image(5)
    session.set_selection([2, 4, 6])
    current_id = int(dataset.image_ids[5])
    selected_ids = dataset.image_ids[[2, 4, 6]]
    # New files that sort first shift every position.
    for i in range(3):
        Image.new("L", (74, 72), 100 + i).save(lot / "train" / "good_0" / f"0000{i}a.png")
    grown = open_dataset(lot, workers=1)
    assert len(grown.image_ids) == len(dataset.image_ids) + 3
    selections = _events(session, "selection_changed")
    session.replace_dataset(grown)
    assert session.dataset is grown
    assert session.current_run.id == run.id and session.threshold == pytest.approx(0.37)
    assert int(grown.image_ids[session.current_image]) == current_id
    assert sorted(grown.image_ids[session.selection].tolist()) == sorted(selected_ids.tolist())
    assert np.array_equal(selections[-1], session.selection)
    assert np.isnan(session.scores).sum() == 3  # the new images are not scored yet


def test_another_dataset_clears_the_selection(dataset):
    session = Session(dataset)
    session.set_selection([1, 2])
    selections = _events(session, "selection_changed")
    session.set_dataset(dataset)
    assert len(session.selection) == 0 and len(selections[-1]) == 0


def test_split_text_names_held_out_images(dataset):
    from core.runs import save_validation_ids

    run, _ = _scored_run(dataset)
    train = np.flatnonzero(np.asarray(dataset.splits) == "train")
    save_validation_ids(dataset.workspace, run.id, dataset.image_ids[train[:2]])
    session = Session(dataset)
    assert session.split_text(int(train[0])) == "split Train"
    session.set_current_run(run)
    assert session.split_text(int(train[0])) == f"split Train · held out by run {run.id}"
    assert session.split_text(int(train[5])) == "split Train"


# --- the command line uses the same session ------------------------------------------------

def test_cli_label_and_flag_go_through_the_session(dataset, lot, capsys):
    from core.cli import main

    root = str(lot)
    good = int(np.flatnonzero(dataset.labels == 0)[0])
    assert main(["label", root, "bad", dataset.ids[good]]) == 0
    assert "Labelled 1 image(s) bad" in capsys.readouterr().out
    assert Session(open_dataset(lot, workers=1)).labels[good] == 1
    assert main(["label", root, "found", dataset.relpaths[good]]) == 0
    assert annotations.user_labels(dataset.workspace) == {}
    assert main(["flag", root, dataset.ids[2]]) == 0
    assert Session(open_dataset(lot, workers=1)).flagged[2]
    assert main(["label", root, "bad", "no-such-image"]) == 2
    assert "no such image" in capsys.readouterr().err


def test_cli_export_uses_the_threshold_chosen_in_the_session(dataset, lot, tmp_path):
    import csv

    from core.cli import main

    run, scores = _scored_run(dataset, threshold=0.5)
    session = Session(dataset)
    session.set_current_run(run)
    session.set_threshold(0.3)
    session.save_threshold()
    out = tmp_path / "scores.csv"
    assert main(["export", str(lot), "--run", str(run.id), "--scores", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = {row["path"]: row for row in csv.DictReader(fh)}
    for position, relpath in enumerate(dataset.relpaths):
        assert int(rows[relpath]["prediction"]) == int(scores[position] >= 0.3)
