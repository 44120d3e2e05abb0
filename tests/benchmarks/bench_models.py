"""Benchmark: training-step cost (forward + backward) of every registered model.

Run: ``.venv/bin/python tests/benchmarks/bench_models.py [--size 128 132] [--batch 32]
[--repeats 3] [--device cpu] [--models stratified resnet18]``.
Prints, per model, the median time of one forward+backward pass over a random batch and the
images per second it implies. The first pass (allocations, kernel selection) is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.models import create_model, list_models


def time_training_step(name: str, batch: int, size: tuple[int, int], repeats: int,
                       device: str) -> list[float]:
    """Seconds per forward+backward pass of model ``name``, one value per repeat."""
    model = create_model(name).to(device).train()
    images = torch.randn(batch, 1, *size, device=device)
    targets = (torch.rand(batch, device=device) < 0.1).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    timings = []
    for step in range(repeats + 1):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        loss_fn(model(images), targets).backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step > 0:  # step 0 is the warm-up
            timings.append(time.perf_counter() - start)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(128, 132), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=None, help="default: all registered")
    args = parser.parse_args()
    names = args.models or [info.name for info in list_models()]
    print(f"forward+backward, batch {args.batch}, {args.size[0]}x{args.size[1]}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    for name in names:
        timings = time_training_step(name, args.batch, tuple(args.size), args.repeats,
                                     args.device)
        median = statistics.median(timings)
        print(f"{name:16s} {median * 1000:9.1f} ms/batch  {args.batch / median:8.1f} images/s  "
              f"(min {min(timings) * 1000:.1f}, max {max(timings) * 1000:.1f})")


if __name__ == "__main__":
    main()
