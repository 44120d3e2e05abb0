"""Benchmark: training throughput of DieSight's engine against a plain PyTorch reference loop.

Run (CPU, the default):
    .venv/bin/python tests/benchmarks/bench_train.py [--data DEMO] [--models designed_resnet]
        [--image-size 128] [--batch-size 32] [--steps 12] [--workers 2]
Run (GPU):
    .venv/bin/python tests/benchmarks/bench_train.py --device cuda --image-size 267

Both loops train the same registry model with the same batch size, AdamW and BCE loss for
the same number of optimizer steps, in this process, and are timed from the first batch
request to the last optimizer step (so the reference pays for its DataLoader start-up, as
it would every epoch), after one untimed two-step warm-up run of the engine per model:

* ``diesight``: ``core.training.train`` for one epoch of ``steps * batch`` draws (sampler B,
  augmentation on, the device's default precision): batches are indexed from the uint8
  tensor prepared once from the dataset cache and normalised/augmented on the device. The
  one-off setup (split, model, resizing the cache once) is printed separately ("setup s").
* ``reference``: ``torchvision.datasets.ImageFolder`` over the same JPEG files (decoded and
  resized every epoch by ``--workers`` DataLoader processes), ``ToTensor`` + ``Normalize``,
  fp32, no augmentation.

Printed per model: images/s of each loop (the best of ``--repeats`` alternating runs), their
ratio, the epoch time that implies for a 30,000-image lot and, on CUDA, the peak GPU memory.
Without ``--data`` a 600-image demo set is generated in a temporary folder first. The
timings are wall-clock: on a shared machine they are noisy, so compare the two loops of one
run rather than numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

LOT_SIZE = 30_000


def make_demo(folder: Path, n: int) -> Path:
    from core.demodata import generate_demo_data

    out = folder / "demo"
    print(f"Generating a {n}-image demo set in {out} ...", flush=True)
    generate_demo_data(out, n=n, bad_fraction=0.1, seed=0)
    return out


def engine_throughput(dataset, model: str, args) -> tuple[float, float, float]:
    """(images/s, setup seconds, peak GPU MiB) of one DieSight training epoch.

    Setup is everything before the first batch: split, model, resizing the images once.
    """
    from core.progress import Progress
    from core.runs import epochs
    from core.training import TrainConfig, train

    config = TrainConfig(model=model, epochs=1, batch_size=args.batch_size,
                         per_class=args.steps * args.batch_size // 2,
                         image_size=args.image_size, device=args.device, lr=1e-3,
                         num_threads=args.threads, early_stopping_patience=0)
    marks: dict[str, float] = {}

    def watch(p: Progress) -> None:
        marks.setdefault(p.stage, time.perf_counter())

    _reset_peak(args.device)
    began = time.perf_counter()
    run = train(dataset, config, progress=watch)
    [record] = epochs(dataset.workspace, run.id)
    return record.images_per_s, marks["start"] - began, _peak_mib(args.device)


def reference_throughput(train_root: Path, model_name: str, args) -> tuple[float, float]:
    """(images/s, peak GPU MiB) of a plain ImageFolder + DataLoader training loop."""
    from torchvision import datasets, transforms

    from core.models import create_model
    from core.training.config import width_for_rows
    from core.training.data import MEAN, STD

    size = (args.image_size, width_for_rows(args.image_size))
    transform = transforms.Compose([
        transforms.Grayscale(), transforms.Resize(size, antialias=True),
        transforms.ToTensor(), transforms.Normalize([MEAN], [STD])])
    folder = datasets.ImageFolder(str(train_root), transform=transform)
    bad_index = next(i for name, i in folder.class_to_idx.items() if name.startswith("bad"))
    loader = torch.utils.data.DataLoader(folder, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, drop_last=True,
                                         pin_memory=args.device == "cuda")
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(model_name).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    _reset_peak(args.device)
    seen, start = 0, time.perf_counter()
    while seen < args.steps * args.batch_size:
        for images, classes in loader:
            images = images.to(device, non_blocking=True)
            targets = (classes == bad_index).float().to(device)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), targets).backward()
            optimizer.step()
            seen += len(images)
            if seen >= args.steps * args.batch_size:
                break
    if args.device == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start), _peak_mib(args.device)


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a demo/Kaggle folder (default: generate)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--models", nargs="*", default=None,
                        help="default: designed_resnet stratified on CPU, all four on CUDA")
    parser.add_argument("--image-size", type=int, default=None,
                        help="rows (default 128 on CPU, 267 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 32 on CPU, 64 on CUDA")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per loop (default 12 on CPU, 60 on CUDA)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternate the two loops this many times; the best is printed")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.models = args.models or (["designed_resnet", "resnet18", "resnet50", "stratified"]
                                  if cuda else ["designed_resnet", "stratified"])
    args.image_size = args.image_size or (267 if cuda else 128)
    args.batch_size = args.batch_size or (64 if cuda else 32)
    args.steps = args.steps or (60 if cuda else 12)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        os.environ["DIESIGHT_HOME"] = str(Path(tmp) / "home")  # keep the user's runs clean
        data = args.data or make_demo(Path(tmp), 600)
        from core.dataset import open_dataset

        dataset = open_dataset(data)
        device_name = torch.cuda.get_device_name() if cuda else \
            f"cpu ({torch.get_num_threads()} threads)"
        print(f"\n{args.steps} steps of batch {args.batch_size} at {args.image_size} rows on "
              f"{device_name}; reference: ImageFolder + DataLoader({args.workers} workers)")
        print(f"{'model':16s} {'diesight img/s':>14s} {'reference img/s':>15s} {'ratio':>6s} "
              f"{'30k epoch':>10s} {'setup s':>9s} {'peak MiB':>9s} {'ref MiB':>8s}")
        for name in args.models:
            # Untimed warm-up: first-use costs (kernel selection, allocator) hit whichever loop
            # ran first; after this both loops find them paid.
            engine_throughput(dataset, name, argparse.Namespace(**{**vars(args), "steps": 2}))
            ours, ref, setups, peaks, ref_peaks = [], [], [], [], []
            for _ in range(args.repeats):
                speed, setup, peak = engine_throughput(dataset, name, args)
                ours.append(speed), setups.append(setup), peaks.append(peak)
                if not args.skip_reference:
                    speed, peak = reference_throughput(data / "train", name, args)
                    ref.append(speed), ref_peaks.append(peak)
            # Best of the repeats, as timeit does: other jobs only ever slow a loop down.
            ours_s, ref_s = max(ours), max(ref or [float("nan")])
            print(f"{name:16s} {ours_s:14.1f} {ref_s:15.1f} {ours_s / ref_s:6.2f} "
                  f"{LOT_SIZE / ours_s:8.0f} s {min(setups):9.1f} "
                  f"{max(peaks):9.0f} {max(ref_peaks or [float('nan')]):8.0f}", flush=True)
            if args.repeats > 1:
                print(f"{'':16s} all runs: diesight {_rounded(ours)}  reference {_rounded(ref)}"
                      f"  (medians {statistics.median(ours):.1f} / "
                      f"{statistics.median(ref or [float('nan')]):.1f})")

def _rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]

if __name__ == "__main__":
    main()
