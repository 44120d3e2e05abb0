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
ratio, the epoch time that implies for a 30,000-image lot, the engine's achieved TFLOP/s
(training FLOPs per image counted by ``torch.utils.flop_counter.FlopCounterMode`` through
``core.device.training_flops_per_image``, times images/s), its share of the device's dense
bf16 peak (``core.device.DENSE_BF16_PEAK_TFLOPS``, by device name; '-' on the CPU) and, on
CUDA, the peak GPU memory.

``--ladder`` instead measures the GPU path one step at a time for each model: fp32 eager,
then + bf16 autocast, + channels-last, + fused AdamW, + torch.compile (CUDA graphs), each
row cumulative (the uint8 images are on the GPU in every row; the compile row's epoch still
pays for Dynamo's tracing and loading the kernels an untimed run cached). ``--score`` also times
scoring the dataset with a one-epoch designed_resnet run and prints the time that implies
for 30,000 images (the goal on an H100/H200: at most 1 s).
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


def engine_throughput(dataset, model: str, args, **changes) -> tuple[float, float, float]:
    """(images/s, setup seconds, peak GPU MiB) of one DieSight training epoch.

    Setup is everything before the first batch: split, model, resizing the images once.
    """
    from core.progress import Progress
    from core.runs import epochs
    from core.training import TrainConfig, train

    config = TrainConfig(model=model, epochs=1, batch_size=args.batch_size,
                         per_class=args.steps * args.batch_size // 2,
                         image_size=args.image_size, device=args.device, lr=1e-3,
                         num_threads=args.threads, early_stopping_patience=0,
                         precision=getattr(args, "precision", "auto"),
                         compile=getattr(args, "compile", False)).replace(**changes)
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


def flops_per_image(model_name: str, args) -> float:
    from core.device import training_flops_per_image
    from core.models import create_model
    from core.training.config import width_for_rows

    device = torch.device(args.device)
    model = create_model(model_name).to(device)
    return training_flops_per_image(model, (args.image_size, width_for_rows(args.image_size)),
                                    device)


def speed_columns(flops: float, images_per_s: float, device_name: str) -> str:
    from core.device import achieved

    tflops, share = achieved(flops, images_per_s, device_name)
    return f"{tflops:8.3f} {'-' if share is None else f'{100 * share:.1f} %':>7s}"


# The GPU path, one step at a time (cumulative): (label, config changes, switches).
LADDER = (
    ("fp32 eager", {"precision": "fp32"}, {"channels_last": False, "fused": False}),
    ("+ bf16 autocast", {"precision": "bf16"}, {"channels_last": False, "fused": False}),
    ("+ channels-last", {"precision": "bf16"}, {"channels_last": True, "fused": False}),
    ("+ fused AdamW", {"precision": "bf16"}, {"channels_last": True, "fused": True}),
    ("+ torch.compile", {"precision": "bf16", "compile": True},
     {"channels_last": True, "fused": True}),
)


def ladder(dataset, name: str, args, device_name: str) -> None:
    """Engine images/s, TFLOP/s and % of peak with the GPU optimisations added one by one."""
    from core.training import loop, predict, trainer

    flops = flops_per_image(name, args)
    original = (trainer.channels_last, trainer.place_model, trainer.build_optimizer)
    for label, changes, switches in LADDER:
        def layout(device, on=switches["channels_last"]):
            return on and device.type == "cuda"

        def place(model, device, on=switches["channels_last"]):
            return model.to(device, memory_format=torch.channels_last if on and
                            device.type == "cuda" else torch.contiguous_format)

        def optimizer(model, config, device=None, fused=switches["fused"]):
            return loop.build_optimizer(model, config, device if fused else None)

        trainer.channels_last, trainer.place_model, trainer.build_optimizer = \
            layout, place, optimizer
        predict_layout = predict.network_input
        if not switches["channels_last"]:
            predict.network_input = lambda x: x
        try:
            if changes.get("compile"):  # untimed: fills the kernel cache the timed run loads
                engine_throughput(dataset, name, argparse.Namespace(**{**vars(args),
                                                                       "steps": 2}), **changes)
            speed, _setup, peak = engine_throughput(dataset, name, args, **changes)
        finally:
            trainer.channels_last, trainer.place_model, trainer.build_optimizer = original
            predict.network_input = predict_layout
        print(f"{name:16s} {label:18s} {speed:10.1f} {speed_columns(flops, speed, device_name)}"
              f" {peak:9.0f}", flush=True)


def scoring_time(dataset, args) -> None:
    """Seconds to score the dataset with a one-epoch designed_resnet run, and for 30,000."""
    from core.scoring import score_dataset
    from core.training import TrainConfig, train

    run = train(dataset, TrainConfig(model="designed_resnet", epochs=1, per_class=64,
                                     image_size=args.image_size, device=args.device,
                                     early_stopping_patience=0))
    score_dataset(dataset, run.id, device=args.device)  # warm-up: cuDNN picks kernels
    best = min(score_dataset(dataset, run.id, device=args.device).seconds
               for _ in range(args.repeats))
    n = len(dataset.image_ids)
    print(f"\nscoring {n} images with designed_resnet at {args.image_size} rows: "
          f"{best:.2f} s ({n / best:.0f} images/s): {LOT_SIZE / (n / best):.1f} s for "
          f"{LOT_SIZE:,} images (goal on H100/H200: <= 1 s)")


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
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--compile", action="store_true", help="train through torch.compile")
    parser.add_argument("--ladder", action="store_true",
                        help="measure each step of the GPU path (see the module doc)")
    parser.add_argument("--score", action="store_true",
                        help="also time scoring (30,000-image extrapolation)")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.models = args.models or (["designed_resnet", "resnet18", "resnet50", "stratified"]
                                  if cuda else ["designed_resnet", "stratified"])
    args.image_size = args.image_size or (267 if cuda else 128)
    args.batch_size = args.batch_size or (64 if cuda else 32)
    args.steps = args.steps or (60 if cuda else 12)
    from core.device import thread_count

    torch.set_num_threads(thread_count(args.threads))

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        os.environ["DIESIGHT_HOME"] = str(Path(tmp) / "home")  # keep the user's runs clean
        data = args.data or make_demo(Path(tmp), 600)
        from core.dataset import open_dataset

        dataset = open_dataset(data)
        device_name = torch.cuda.get_device_name() if cuda else \
            f"cpu ({torch.get_num_threads()} threads)"
        print(f"\n{args.steps} steps of batch {args.batch_size} at {args.image_size} rows on "
              f"{device_name}; reference: ImageFolder + DataLoader({args.workers} workers)")
        if args.ladder:
            print(f"{'model':16s} {'step':18s} {'img/s':>10s} {'TFLOP/s':>8s} {'% peak':>7s} "
                  f"{'peak MiB':>9s}")
            for name in args.models:
                engine_throughput(dataset, name, argparse.Namespace(**{**vars(args),
                                                                       "steps": 2}))
                ladder(dataset, name, args, device_name)
            if args.score:
                scoring_time(dataset, args)
            return
        print(f"{'model':16s} {'diesight img/s':>14s} {'reference img/s':>15s} {'ratio':>6s} "
              f"{'30k epoch':>10s} {'TFLOP/s':>8s} {'% peak':>7s} {'setup s':>9s} "
              f"{'peak MiB':>9s} {'ref MiB':>8s}")
        for name in args.models:
            flops = flops_per_image(name, args)
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
                  f"{LOT_SIZE / ours_s:8.0f} s {speed_columns(flops, ours_s, device_name)} "
                  f"{min(setups):9.1f} "
                  f"{max(peaks):9.0f} {max(ref_peaks or [float('nan')]):8.0f}", flush=True)
            if args.repeats > 1:
                print(f"{'':16s} all runs: diesight {_rounded(ours)}  reference {_rounded(ref)}"
                      f"  (medians {statistics.median(ours):.1f} / "
                      f"{statistics.median(ref or [float('nan')]):.1f})")
        if args.score:
            scoring_time(dataset, args)

def _rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]

if __name__ == "__main__":
    main()
