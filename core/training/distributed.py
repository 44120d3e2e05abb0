"""Training and scoring on several processes with torch.distributed (one per GPU).

Launching. ``diesight train DATA --devices N`` starts N processes on this machine through
torchrun's elastic launcher (``torch.distributed.launcher.api.elastic_launch``: c10d
rendezvous on a free local port, no restarts). Each process runs the same command; it sees
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...) and joins the process group
instead of launching again, so the same command also runs under ``torchrun --nnodes M
--nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m app.entry train ...``.
The backend is NCCL for CUDA tensors and gloo for CPU ones (the CPU-only machines and
the small control messages: cancel agreement, objects).

Who does what. Rank 0 (the *main* process) alone reads and writes the workspace (run rows,
split ids, checkpoints) and reports progress; it broadcasts what the others need (config,
run id, split, resumed state), so other machines need only the dataset folder. Decisions
that end or branch a run (cancel, divergence, early stopping) are taken on numbers every
rank has, so all ranks take the same branch and no collective waits forever.

A process that dies: the launcher sees it, stops the others (SIGTERM, which a worker turns
into :class:`Stopped`), and :func:`launch` prints which rank ended how. A worker also dies
with its launcher (Linux ``PR_SET_PDEATHSIG``), so killing the launcher leaves no orphans.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import signal
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.progress import CancelCheck, Cancelled

T = TypeVar("T")

# Long enough for the slowest rank to prepare 30,000 images before the first collective.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
# Exit codes a worker's end maps to for the launcher (core.cli's codes).
EXIT_USER_ERROR, EXIT_CANCELLED, EXIT_BUG = 2, 130, 1


class Stopped(BaseException):
    """The launcher stopped this process (another process of the run failed or was
    stopped). A BaseException like KeyboardInterrupt: the run is recorded as resumable."""


def launched() -> bool:
    """True inside a process started by torchrun / :func:`launch`."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


# -- the world as one process sees it --------------------------------------------------------

@dataclass(frozen=True)
class World:
    """This process's place in the run: rank, world size, local rank (GPU index here).

    A single process is ``World()`` (rank 0 of 1): every collective below is then the
    identity, so the trainer and the scorer run the same code with and without peers.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (pickled; for settings and small state)."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def from_main(self, work) -> Any:
        """Run ``work()`` on rank 0 only and give every rank its result, or raise its
        exception everywhere (so a bad setting ends every process with the same message)."""
        if not self.distributed:
            return work()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, work())
            except Exception as exc:
                outcome = (False, exc)
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value
        return value

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def min_int(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over the ranks (a new tensor on ``value``'s device)."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def check_cancel(self, cancel: CancelCheck | None) -> None:
        """Raise Cancelled on every rank when any rank's ``cancel`` says stop."""
        if self.any(cancel is not None and cancel()):
            raise Cancelled()

    def rounds(self, n_batches: int, cancel: CancelCheck | None = None
               ) -> Iterator[int | None]:
        """This rank's batches of ``n_batches`` (batch i goes to rank i % size), one per
        round, with a cancel agreement before each; None when this rank has none left in
        a round (every rank runs every round, so the agreements pair up)."""
        for start in range(0, n_batches, self.size):
            self.check_cancel(cancel)
            i = start + self.rank
            yield i if i < n_batches else None

    def gather(self, mine: dict[int, T], everyone: bool = True) -> list[T] | None:
        """Every rank's ``{batch index: result}`` merged, in batch order; on rank 0 only
        (None elsewhere) unless ``everyone``. Results must be CPU objects."""
        if not self.distributed:
            return [mine[i] for i in sorted(mine)]
        parts: list[dict[int, T] | None] = [None] * self.size
        if everyone:
            dist.all_gather_object(parts, mine)
        else:
            dist.gather_object(mine, parts if self.is_main else None, dst=0)
            if not self.is_main:
                return None
        merged: dict[int, T] = {}
        for part in parts:
            merged.update(part)
        return [merged[i] for i in sorted(merged)]

    def check_same_images(self, dataset) -> None:
        """Raise ValueError on every rank when a rank's dataset lists other images or labels
        than rank 0's: positions are sent between ranks, so every machine's DATA must hold
        the same files (a copy made elsewhere may differ)."""
        if not self.distributed:
            return
        digest = hashlib.sha256()
        for relpath, label in zip(dataset.relpaths, np.asarray(dataset.labels).tolist(),
                                  strict=True):
            digest.update(f"{relpath}\0{label}\n".encode())
        mine = digest.hexdigest()
        prints: list[str | None] = [None] * self.size
        dist.all_gather_object(prints, mine)
        differ = [rank for rank, p in enumerate(prints) if p != prints[0]]
        if differ:
            raise ValueError(f"The dataset of rank(s) {differ} lists other images or labels "
                             f"than rank 0's; every machine needs the same DATA folder (and "
                             f"labels CSV).")

    def sync_buffers(self, model: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) over the ranks.

        DDP runs with ``broadcast_buffers=False``: each rank's running mean follows its own
        share of each batch, and their average is the running mean of the global batches
        (an average of exponential moving averages is the moving average of the averages),
        as in one process. Validation and the checkpoint need that one set.
        """
        if not self.distributed:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer.data, op=dist.ReduceOp.SUM)
                buffer.data.div_(self.size)

    def check_in_sync(self, model: nn.Module) -> None:
        """Raise RuntimeError naming the ranks whose weights or buffers differ from rank 0's
        (DDP keeps them identical; a difference means a bug, not noise)."""
        if not self.distributed:
            return
        mine = fingerprint(model)
        prints: list[torch.Tensor | None] = [None] * self.size
        dist.all_gather_object(prints, mine)
        drifted = [rank for rank, p in enumerate(prints) if not torch.equal(p, prints[0])]
        if drifted:
            raise RuntimeError(f"Distributed training went out of sync: the weights of "
                               f"rank(s) {drifted} differ from rank 0's.")


SINGLE = World()


def fingerprint(model: nn.Module) -> torch.Tensor:
    """Per-tensor sums and sums of squares (float64, CPU) of every weight and buffer."""
    values = [t.detach().double() for t in model.state_dict().values()
              if t.is_floating_point()]
    return torch.stack([torch.stack([v.sum(), (v * v).sum()]) for v in values]).cpu()


def current_world() -> World:
    """The world of this process (``World()`` outside a distributed run)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def wrap_for_training(model: nn.Module, device: torch.device, world: World,
                      sync_batchnorm: bool) -> nn.Module:
    """``model`` in DistributedDataParallel (with SyncBatchNorm when asked), or itself."""
    if not world.distributed:
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA GPUs (torch's SyncBatchNorm has no "
                             "CPU kernels); train without --sync-batchnorm on the CPU.")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # 1x1 convolutions' gradients have size-1 dimensions whose strides differ from the
    # bucket's: the same memory order, so DDP's warning about a slower copy does not apply.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    # Buffers stay per rank during an epoch and are averaged at its end (sync_buffers).
    ddp = nn.parallel.DistributedDataParallel
    buffers = {"forward_sync_buffers": False} if "forward_sync_buffers" in \
        inspect.signature(ddp.__init__).parameters else {"broadcast_buffers": False}
    return ddp(model, device_ids=ids, gradient_as_bucket_view=True, **buffers)


def unwrapped(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers (what checkpoints hold)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


# -- the worker's side --------------------------------------------------------------------

@contextmanager
def joined() -> Iterator[World]:
    """Join the process group when torchrun started this process (nothing otherwise)."""
    if not launched() or dist.is_initialized():
        yield current_world()
        return
    _die_with_parent()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield current_world()
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tidy
            pass


def _on_sigterm(signum, frame) -> None:
    raise Stopped("stopped by the launcher (another process of the run ended)")


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its launcher dies (no orphaned training)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# -- the launcher's side --------------------------------------------------------------------

@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do (say, opening the dataset: its
    first open creates the workspace, which two processes must not do at once)."""
    world = current_world()
    if world.distributed and not world.is_main:
        dist.barrier()
    yield
    if world.distributed and world.is_main:
        dist.barrier()


def run_command(command, args) -> int:
    """Run a CLI command taking ``args.devices``: with N > 1 outside torchrun, launch N
    processes running the same command line; inside one, join the process group first."""
    devices = getattr(args, "devices", None) or 1
    if devices > 1 and not launched():
        argv = getattr(args, "argv", None) or sys.argv[1:]
        return launch(list(argv), devices, getattr(args, "device", None))
    with joined():
        return command(args)


def launch(argv: list[str], processes: int, device: str | None = None) -> int:
    """Run ``python -m app.entry ARGV`` in ``processes`` processes on this machine with
    torchrun's elastic launcher; returns the exit code (0, or the failed ranks' worst)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _check_devices(processes, device)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes,
                          run_id=f"diesight-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "app.entry", *argv)
    except ChildFailedError as exc:
        return _report_failures(exc.failures)
    except SignalException:
        return EXIT_CANCELLED  # Ctrl-C: the workers got SIGINT and stopped cleanly
    return 0


def _check_devices(processes: int, device: str | None) -> None:
    if processes < 1:
        raise ValueError(f"--devices must be at least 1, got {processes}")
    if device != "cpu" and torch.cuda.is_available() and \
            processes > torch.cuda.device_count():
        raise ValueError(f"--devices {processes}: this machine has only "
                         f"{torch.cuda.device_count()} CUDA GPU(s).")


def _report_failures(failures: dict) -> int:
    """One line per failed rank on stderr; the exit code for the launcher."""
    codes = []
    for rank, failure in sorted(failures.items()):
        code = failure.exitcode
        how = f"exit code {code}"
        if code < 0:
            how = f"signal {signal.Signals(-code).name}"
        print(f"diesight: process rank {rank} (pid {failure.pid}) ended with {how}; the "
              f"other processes of the run were stopped.", file=sys.stderr)
        codes.append(code)
    if any(code == EXIT_USER_ERROR for code in codes):
        return EXIT_USER_ERROR
    if all(code == EXIT_CANCELLED for code in codes):
        return EXIT_CANCELLED
    return EXIT_BUG
