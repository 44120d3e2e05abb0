"""Guarantees: a kill -9 at any moment of a training leaves a run row that describes the
``best.pt`` and ``last.pt`` on disk (each epoch's checkpoints are written whole as pending
files, the epoch is committed to the database, and only then are they renamed; whatever a
kill leaves is finished or dropped by the next reader); a resumed run that never finished
epoch 1 starts again from its ``--weights``."""

from __future__ import annotations

import os
import random
import signal
import time

import torch
from fault_helpers import cli, integrity_ok, popen_cli
from scoring_fixtures import make_lot

from core.checkpoint import load_checkpoint
from core.dataset import open_dataset
from core.models import create_model
from core.runs import epochs, get_run, list_runs
from core.training import TrainConfig, train
from core.workspace import Workspace

TRAINING = ("--model", "designed_resnet", "--image-size", "64", "--per-class", "16",
            "--epochs", "6", "--batch-size", "8", "--device", "cpu", "--threads", "1",
            "--patience", "0", "--lr", "1e-3")


def _kill_after_start(data, home, delay: float, *args: str) -> None:
    """Start ``diesight train`` (or a resume), kill -9 it ``delay`` s after training began."""
    proc = popen_cli("train", data, *args, home=home)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # the "Run N: ..." line: the data is prepared
            if line.startswith("Run ") or time.monotonic() > deadline:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def _kill_in_commit(data, home, run_dir, *args: str) -> bool:
    """Start ``diesight train`` and kill -9 it the moment an epoch's pending checkpoint
    appears (between writing it and renaming it into place); True when that happened."""
    proc = popen_cli("train", data, *args, home=home)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                names = os.listdir(run_dir)
            except FileNotFoundError:  # the run is not created yet
                names = []
            if any(name.endswith(".pending") for name in names):
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


def _assert_row_describes_checkpoints(workspace: Workspace, run_id: int) -> None:
    run = next(r for r in list_runs(workspace) if r.id == run_id)  # settles what a kill left
    run_dir = workspace.run_dir(run_id)
    assert not list(run_dir.glob("*.pending")), list(run_dir.iterdir())
    recorded = {e.epoch: e for e in epochs(workspace, run_id)}
    best, last = run_dir / "best.pt", run_dir / "last.pt"
    if not recorded:
        assert run.best_epoch is None and not best.exists() and not last.exists()
        return
    assert load_checkpoint(last)["epoch"] == max(recorded)
    assert run.best_epoch in recorded and run.checkpoint == best
    saved = load_checkpoint(best)
    assert saved["epoch"] == run.best_epoch
    assert saved["best_auc"] == recorded[run.best_epoch].val_auc
    if run.status != "finished":  # until the holdout replaces them: the best epoch's figures
        assert run.val_auc == recorded[run.best_epoch].val_auc


def test_kill_at_random_moments_leaves_a_row_that_describes_the_checkpoints(tmp_path,
                                                                          isolated_home):
    data = make_lot(tmp_path / "lot", good=24, bad=16, test=4)
    workspace = Workspace.for_dataset(data)
    # Killed inside epoch 1's commit: the pending files are settled by the next reader.
    assert _kill_in_commit(data, isolated_home, workspace.path / "runs" / "1", *TRAINING)
    _assert_row_describes_checkpoints(workspace, 1)
    rng = random.Random(12)
    for _ in range(3):  # then at random moments of the resumed run
        _kill_after_start(data, isolated_home, rng.uniform(0.2, 2.5), "--resume", "1",
                          "--threads", "1")
        _assert_row_describes_checkpoints(workspace, 1)
        if get_run(workspace, 1).status == "finished":
            break
    if get_run(workspace, 1).status != "finished":
        result = cli("train", data, "--resume", "1", "--threads", "1", home=isolated_home)
        assert result.returncode == 0, result.stderr
    _assert_row_describes_checkpoints(workspace, 1)
    assert sorted(e.epoch for e in epochs(workspace, 1)) == list(range(1, 7))
    assert integrity_ok(workspace.db_path)


def test_resuming_a_run_that_never_finished_epoch_1_starts_from_its_weights(tmp_path,
                                                                          isolated_home):
    data = make_lot(tmp_path / "lot", good=16, bad=12, test=0)
    torch.manual_seed(123)  # weights unlike the seed-0 initialisation a run would draw
    weights = tmp_path / "weights.pt"
    torch.save(create_model("designed_resnet").state_dict(), weights)
    config = TrainConfig(model="designed_resnet", image_size=64, per_class=8, epochs=1,
                         batch_size=8, device="cpu", num_threads=1, lr=1e-12,
                         weight_decay=0.0, weights=str(weights), augment=False)
    dataset = open_dataset(data, workers=1)
    run = train(dataset, config, cancel=lambda: True)  # Ctrl-C before epoch 1 finished
    assert run.status == "cancelled" and run.best_epoch is None

    result = cli("train", data, "--resume", run.id, home=isolated_home)
    assert result.returncode == 0, result.stderr
    trained = load_checkpoint(get_run(dataset.workspace, run.id).checkpoint)["model"]
    given = torch.load(weights, weights_only=True)
    # lr 1e-12: one epoch leaves the convolution weights where --weights put them.
    convs = [k for k, v in given.items() if v.ndim == 4]
    assert convs and all(torch.allclose(trained[k], given[k], atol=1e-6) for k in convs)
