"""Run by ``torchrun --nproc-per-node 2`` from tests/core/test_distributed.py (gloo, CPU).

Trains a BatchNorm model under DDP on different images per rank, then checks what
``core.training.distributed.World`` promises: after the last step each rank's BatchNorm
running statistics are its own; ``sync_buffers`` averages them; ``check_in_sync``
passes then and fails on every rank once one rank's weights drift; ``check_same_images``
refuses a rank whose dataset differs. Rank 0 prints one JSON line with what it saw.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from core.models import create_model
from core.training.distributed import fingerprint, joined, wrap_for_training


def differs_from_rank0(world, model) -> bool:
    mine = fingerprint(model)
    return world.any(not torch.equal(mine, world.broadcast(mine)))


def main() -> None:
    with joined() as world:
        assert world.size == 2, world
        torch.manual_seed(0)
        model = create_model("designed_resnet")
        trained = wrap_for_training(model, torch.device("cpu"), world, sync_batchnorm=False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for step in range(3):
            images = torch.Generator().manual_seed(100 * world.rank + step)
            x = torch.randn(4, 1, 64, 66, generator=images)
            optimizer.zero_grad()
            trained(x).float().mean().backward()
            optimizer.step()
        before = differs_from_rank0(world, model)
        world.sync_buffers(model)
        after = differs_from_rank0(world, model)
        world.check_in_sync(model)
        if world.rank == 1:
            with torch.no_grad():
                next(model.parameters()).add_(1e-3)
        try:
            world.check_in_sync(model)
            drift = "not detected"
        except RuntimeError as exc:
            drift = str(exc)
        same = SimpleNamespace(relpaths=["good/a.jpg", "bad/b.jpg"], labels=[0, 1])
        world.check_same_images(same)
        other = SimpleNamespace(relpaths=same.relpaths, labels=[0, world.rank])
        try:
            world.check_same_images(other)
            data = "not detected"
        except ValueError as exc:
            data = str(exc)
        if world.is_main:
            print(json.dumps({"differ_before_sync": before, "differ_after_sync": after,
                              "drift": drift, "data": data}), flush=True)


if __name__ == "__main__":
    main()
