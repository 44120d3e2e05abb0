"""Distributed training and scoring on torch.distributed, on the CPU with the gloo backend.

Every test runs the real ``diesight`` command (or torchrun) in processes on this machine:
two processes against one, a rank killed mid-epoch, the launcher killed, two torchrun
"nodes" on localhost. Small settings (64-row images, a few batches) keep each under a
minute or two on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.dataset import open_dataset
from core.runs import epochs, get_run
from core.score_store import load_embeddings, load_logits
from core.training import TrainConfig, train, trainer
from core.training.samplers import rank_share, trimmed_order
from core.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--device", "cpu", "--model", "designed_resnet", "--image-size", "64",
         "--batch-size", "16", "--seed", "3", "--patience", "0"]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the process checks read /proc (Linux)")


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.entry", *map(str, args)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def popen_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.entry", *map(str, args)], cwd=REPO,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def workspace_of(data: Path) -> Workspace:
    return Workspace.for_dataset(data)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(path)["model"].items()
            if not k.endswith(BUFFERS)}


# -- the plan ------------------------------------------------------------------------------

@pytest.mark.parametrize("batch, world", [(16, 2), (17, 2), (5, 3), (3, 4), (1, 1)])
def test_rank_shares_are_disjoint_and_cover_the_batch(batch, world):
    shares = [rank_share(batch, rank, world) for rank in range(world)]
    covered = np.concatenate([np.arange(batch)[s] for s in shares])
    assert covered.tolist() == list(range(batch))
    sizes = [s.stop - s.start for s in shares]
    assert max(sizes) - min(sizes) <= 1


def test_a_last_batch_too_small_to_share_is_dropped():
    assert len(trimmed_order(np.arange(33), 16, 1)) == 32  # one image: BatchNorm cannot train
    assert len(trimmed_order(np.arange(34), 16, 2)) == 34  # two images: one per rank
    assert len(trimmed_order(np.arange(35), 16, 4)) == 32  # three images for four ranks
    assert len(trimmed_order(np.arange(32), 16, 4)) == 32


# -- training ------------------------------------------------------------------------------

def test_two_processes_train_like_one_with_the_same_global_batch(demo_folder, monkeypatch):
    """2 gloo processes x 8 images against 1 process accumulating 2 micro-batches of 8 (the
    same BatchNorm batches): the same training losses, epoch by epoch, and the same weights.
    BatchNorm running statistics are the ranks' average in the distributed run and
    updated per micro-batch in the single one, so the validation numbers may differ. The
    weights agree to 1e-3, not 1e-6: AdamW moves a weight whose gradient is ~0 by up to
    lr per step whatever the gradient's size, so float rounding in the all-reduce shows."""
    done = cli("train", demo_folder, "--devices", "2", "--epochs", "2", "--per-class", "24",
               *SMALL)
    assert done.returncode == 0, done.stderr
    workspace = workspace_of(demo_folder)
    two = get_run(workspace, 1)
    assert two.status == "finished" and two.device.endswith("x 2 processes")

    class EightPerPass(trainer.GradientStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.micro_batch = 8

    monkeypatch.setattr(trainer, "GradientStep", EightPerPass)
    dataset = open_dataset(demo_folder)
    config = TrainConfig(device="cpu", model="designed_resnet", image_size=64, batch_size=16,
                         seed=3, early_stopping_patience=0, epochs=2, per_class=24)
    one = train(dataset, config)
    assert "processes" not in one.device
    two_losses = [e.train_loss for e in epochs(workspace, two.id)]
    one_losses = [e.train_loss for e in epochs(workspace, one.id)]
    assert np.allclose(two_losses, one_losses, rtol=0, atol=1e-4), (two_losses, one_losses)
    last_two = weights(workspace.run_dir(two.id) / "last.pt")
    last_one = weights(workspace.run_dir(one.id) / "last.pt")
    for name, value in last_one.items():
        assert torch.allclose(last_two[name], value, rtol=0, atol=1e-3), name


def test_batchnorm_ranks_stay_in_sync_and_drift_is_caught():
    """Under DDP each rank's steps leave its own BatchNorm statistics; the trainer's epoch
    end averages them and checks every rank holds the same weights and buffers."""
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", str(REPO / "tests/core/dist_sync_worker.py")], cwd=REPO, env=_env(),
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["differ_before_sync"] is True
    assert seen["differ_after_sync"] is False
    assert "rank(s) [1] differ from rank 0" in seen["drift"]
    assert "rank(s) [1] lists other images or labels" in seen["data"]


def test_a_rank_that_dies_ends_the_run_with_a_message_and_it_resumes_in_one_process(
        demo_folder):
    launcher = popen_cli("train", demo_folder, "--devices", "2", "--epochs", "3",
                         "--per-class", "96", *SMALL)
    workspace = workspace_of(demo_folder)
    try:
        wait_for(lambda: (workspace.run_dir(1) / "last.pt").is_file(), 240, "epoch 1")
        [rank1] = [pid for pid in descendants(launcher.pid) if rank_of(pid) == 1]
        os.kill(rank1, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=90)  # no hang
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    assert "process rank 1" in stderr and "SIGKILL" in stderr, stderr
    run = get_run(workspace, 1)
    assert run.status in ("failed", "cancelled", "interrupted"), run.status
    assert [e.epoch for e in epochs(workspace, 1)][:1] == [1]

    resumed = cli("train", demo_folder, "--resume", "1", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    assert get_run(workspace, 1).status == "finished"
    assert [e.epoch for e in epochs(workspace, 1)] == [1, 2, 3]
    assert load_checkpoint(workspace.run_dir(1) / "last.pt")["world_size"] == 1


def test_killing_the_launcher_leaves_no_training_process(demo_folder):
    launcher = popen_cli("train", demo_folder, "--devices", "2", "--epochs", "3",
                         "--per-class", "96", *SMALL)
    workspace = workspace_of(demo_folder)
    try:
        wait_for(lambda: len([p for p in descendants(launcher.pid)
                              if rank_of(p) is not None]) == 2, 120, "two workers")
        workers = [p for p in descendants(launcher.pid) if rank_of(p) is not None]
        wait_for(lambda: (workspace.run_dir(1) / "last.pt").is_file(), 240, "epoch 1")
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=30)
    wait_for(lambda: not any(alive(p) for p in workers), 30, "the workers to end")


def test_two_torchrun_nodes_on_localhost_train_one_run(demo_folder):
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    except OSError as exc:
        pytest.skip(f"cannot bind a local port for the rendezvous: {exc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
               f"localhost:{port}", "--rdzv-id", "diesight-test", "-m", "app.entry", "train",
               str(demo_folder), "--epochs", "1", "--per-class", "24", *SMALL]
    nodes = [subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    run = get_run(workspace_of(demo_folder), 1)
    assert run.status == "finished" and run.device.endswith("x 2 processes")
    assert load_checkpoint(workspace_of(demo_folder).run_dir(1) / "last.pt")["world_size"] == 2


# -- scoring -------------------------------------------------------------------------------

def test_two_process_scoring_equals_one_process_scoring_exactly(demo_folder):
    dataset = open_dataset(demo_folder)
    run = train(dataset, TrainConfig(device="cpu", model="designed_resnet", image_size=64,
                                     batch_size=16, epochs=1, per_class=16,
                                     early_stopping_patience=0))
    workspace = dataset.workspace
    stored = []
    for devices in ("1", "2"):
        done = cli("score", demo_folder, "--run", run.id, "--device", "cpu",
                   "--batch-size", "24", "--devices", devices)
        assert done.returncode == 0, done.stderr
        stored.append((load_logits(workspace, run.id), load_embeddings(workspace, run.id)))
    (ids1, logits1), (eids1, emb1) = stored[0]
    (ids2, logits2), (eids2, emb2) = stored[1]
    assert len(ids1) == len(dataset.image_ids)
    assert np.array_equal(ids1, ids2) and np.array_equal(eids1, eids2)
    assert np.array_equal(logits1, logits2)
    assert np.array_equal(emb1, emb2)


def test_ctrl_c_stops_every_process_after_the_current_step(demo_folder):
    """SIGINT to the launcher (Ctrl-C in a terminal): it passes the signal on, the ranks
    agree to stop before the next batch, rank 0 records 'cancelled'; exit code 130."""
    launcher = popen_cli("train", demo_folder, "--devices", "2", "--epochs", "3",
                         "--per-class", "96", *SMALL)
    workspace = workspace_of(demo_folder)
    try:
        wait_for(lambda: (workspace.run_dir(1) / "last.pt").is_file(), 240, "epoch 1")
        launcher.send_signal(signal.SIGINT)
        _, stderr = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, stderr
    run = get_run(workspace, 1)
    assert run.status == "cancelled" and "Resume with --resume 1" in run.message
