"""Tests of run records: rows, epochs, references, imports, validation ids and killed runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core import runs
from core.runs import (
    EpochRecord,
    RunNotFound,
    create_run,
    epochs,
    get_run,
    list_runs,
    record_epoch,
    resolve_run,
    save_validation_ids,
    update_run,
    validation_ids,
)
from core.training.config import TrainConfig
from core.workspace import Workspace

CONFIG = TrainConfig(model="stratified", epochs=4, image_size=128)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace.for_dataset(tmp_path / "data")


def finished_run(workspace: Workspace, auc: float = 0.9) -> int:
    run_id = create_run(workspace, CONFIG, device="cpu (2 threads)", parameters=123)
    best = workspace.run_dir(run_id) / "best.pt"
    best.write_bytes(b"weights")
    update_run(workspace, run_id, status="finished", val_auc=auc, best_epoch=2,
               checkpoint=best)
    return run_id


def test_create_update_and_read_a_run(workspace):
    run_id = create_run(workspace, CONFIG, device="cpu (2 threads)", parameters=123)
    run = get_run(workspace, run_id)
    assert (run.status, run.model, run.config, run.parameters) == \
        ("running", "stratified", CONFIG, 123)
    assert run.threshold == CONFIG.threshold and run.checkpoint is None
    update_run(workspace, run_id, status="finished", val_auc=0.97, escapes=1,
               checkpoint=workspace.run_dir(run_id) / "best.pt", message="done")
    run = get_run(workspace, run_id)
    assert (run.status, run.val_auc, run.escapes, run.message) == ("finished", 0.97, 1, "done")
    assert isinstance(run.checkpoint, Path)
    with pytest.raises(ValueError, match="Unknown run field"):
        update_run(workspace, run_id, colour="red")
    with pytest.raises(ValueError, match="Unknown run status"):
        update_run(workspace, run_id, status="exploded")
    with pytest.raises(RunNotFound, match="No run 99"):
        get_run(workspace, 99)


def test_epochs_are_stored_in_order_and_replaced_when_redone(workspace):
    run_id = finished_run(workspace)
    for epoch in (2, 1):
        record_epoch(workspace, EpochRecord(run_id, epoch, 0.5 / epoch, 0.4, 0.9, 1, 2, 100.0,
                                            3.0))
    record_epoch(workspace, EpochRecord(run_id, 2, 0.1, 0.2, 0.95, 0, 1, 110.0, 2.5))
    history = epochs(workspace, run_id)
    assert [(e.epoch, e.train_loss) for e in history] == [(1, 0.5), (2, 0.1)]
    runs.delete_epochs_from(workspace, run_id, 2)
    assert [e.epoch for e in epochs(workspace, run_id)] == [1]


def test_list_runs_is_newest_last(workspace):
    ids = [finished_run(workspace) for _ in range(3)]
    assert [r.id for r in list_runs(workspace)] == ids


def test_resolve_by_id_and_latest_usable(workspace):
    first = finished_run(workspace)
    second = finished_run(workspace)
    (workspace.run_dir(second) / "best.pt").unlink()  # no longer usable
    create_run(workspace, CONFIG, device="cpu", parameters=1)  # still running: skipped
    assert resolve_run(workspace, str(first)).id == first
    assert resolve_run(workspace, first).id == first
    assert resolve_run(workspace, "latest").id == first
    with pytest.raises(RunNotFound, match="Cannot understand"):
        resolve_run(workspace, "yesterday")


def test_latest_without_runs_explains(workspace):
    with pytest.raises(RunNotFound, match="train one first"):
        resolve_run(workspace, "latest")


def test_importing_a_run_of_another_dataset_reuses_the_row(tmp_path, workspace):
    other_root = tmp_path / "other"
    other = Workspace.for_dataset(other_root)
    source_id = finished_run(other, auc=0.99)
    imported = resolve_run(workspace, f"{other_root}@{source_id}")
    assert imported.status == "imported" and imported.val_auc == 0.99
    assert imported.source == f"{other_root.resolve()}@{source_id}"
    assert imported.config == CONFIG
    assert imported.checkpoint == other.run_dir(source_id) / "best.pt"
    again = resolve_run(workspace, f"{other_root}@latest")
    assert again.id == imported.id and len(list_runs(workspace)) == 1
    assert len(validation_ids(workspace, imported.id)) == 0
    with pytest.raises(RunNotFound, match="has no DieSight workspace"):
        resolve_run(workspace, f"{tmp_path / 'nowhere'}@1")


def test_validation_ids_round_trip(workspace):
    run_id = finished_run(workspace)
    assert len(validation_ids(workspace, run_id)) == 0
    save_validation_ids(workspace, run_id, np.array([5, 3, 9]))
    ids = validation_ids(workspace, run_id)
    assert ids.dtype == np.int64 and ids.tolist() == [5, 3, 9]


KILLED_TRAINER = textwrap.dedent("""
    import sys
    from core.runs import create_run
    from core.training.config import TrainConfig
    from core.workspace import Workspace
    run_id = create_run(Workspace(sys.argv[1]), TrainConfig(), device="cpu", parameters=1)
    print(run_id, flush=True)
    sys.stdin.read()  # 'train' until killed
""")


def test_a_killed_run_is_marked_interrupted(workspace):
    child = subprocess.Popen([sys.executable, "-c", KILLED_TRAINER, str(workspace.path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        run_id = int(child.stdout.readline())
        assert get_run(workspace, run_id).status == "running", "alive: left alone"
        with pytest.raises(RuntimeError, match="already being trained"):
            runs.claim_run(workspace, run_id)
    finally:
        child.kill()
        child.wait()
    run = get_run(workspace, run_id)
    assert run.status == "cancelled" and run.message.startswith("Interrupted")
    assert f"--resume {run_id}" in run.message and "no epoch had finished" in run.message
    runs.claim_run(workspace, run_id)  # now it can be resumed


def test_a_run_of_this_process_stays_running_until_finished(workspace):
    run_id = create_run(workspace, CONFIG, device="cpu", parameters=1)
    assert [r.status for r in list_runs(workspace)] == ["running"]
    update_run(workspace, run_id, status="cancelled", message="stopped")
    assert runs.mark_interrupted_runs(workspace) == []
    assert get_run(workspace, run_id).message == "stopped"
