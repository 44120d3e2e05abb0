"""Benchmark: scoring images/s on the CPU, onnxruntime against torch, for the same model.

Run: ``.venv/bin/python tests/benchmarks/bench_onnx.py [--model designed_resnet]
[--batch 64] [--repeats 5] [--threads N] [--folder-images 256] [--all-models]``.

The images are demo-data images decoded and resized to the model's default size (the
pixels the line-side scorer feeds the graph). Each repeat times one batch through torch
(``core.training.predict.predict``, what ``diesight score`` runs) and one through
onnxruntime (the exported graph, what ``diesight score --onnx`` runs), alternating which goes
first so neither always meets a warmer cache. Prints the median, the spread (min-max), the
ratio of the medians, the largest logit difference and the machine's load average; then
the whole line-side path (``core.onnx_scoring.score_folder``: walk, decode, resize, network,
CSV) on a folder of demo JPEGs.

``--all-models`` also exports every registered model at 64 rows and prints the export time
and its largest |logit difference| against torch (the parity check ``make test`` runs for
the default model only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from core.cache import most_common_size
from core.demodata import generate_demo_data
from core.imagefile import decode_gray, is_image_name
from core.models import create_model, list_models, model_info
from core.onnx_export import ExportedNetwork, network_to_onnx
from core.onnx_scoring import OnnxModel, score_folder
from core.resize import resize_uint8
from core.training.predict import predict


def demo_batch(n: int, size: tuple[int, int]) -> np.ndarray:
    """``n`` demo images as uint8 (n, 1, rows, cols) at ``size``."""
    with tempfile.TemporaryDirectory() as folder:
        generate_demo_data(folder, n=n, bad_fraction=0.25, seed=3)
        paths = sorted(str(p) for p in Path(folder).rglob("*") if is_image_name(p.name))[:n]
        cache_size = most_common_size(paths)  # decoded as a dataset's cache would hold them
        pixels = np.stack([decode_gray(p, cache_size)[0] for p in paths])
    return resize_uint8(pixels, *size)[:, None]


def session_for(model: torch.nn.Module, size: tuple[int, int], threads: int = 0):
    """An onnxruntime CPU session of ``model`` exported the way ``export-model`` does it
    (``threads`` 0: onnxruntime's default, one per physical core)."""
    proto = network_to_onnx(ExportedNetwork(model, 0.0).eval(), *size)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def bench(name: str, batch: int, repeats: int, threads: int, folder_images: int) -> None:
    size = model_info(name).default_image_size
    torch.manual_seed(0)
    model = create_model(name).eval()
    images = demo_batch(batch, size)
    if threads:
        torch.set_num_threads(threads)
    seconds, session = timed(lambda: session_for(model, size, threads))
    print(f"{name}: exported in {seconds:.1f} s; batch {batch} of demo images at "
          f"{size[0]}x{size[1]}; torch threads {torch.get_num_threads()}, onnxruntime "
          f"{onnxruntime.__version__} threads {threads or 'default'}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    tensor = torch.from_numpy(images)
    run_torch = lambda: predict(model, tensor)[0].numpy()  # noqa: E731
    run_onnx = lambda: session.run(["logit"], {"image": images})[0]  # noqa: E731
    run_torch(), run_onnx()  # warm-up: allocations, kernel choice
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    worst = 0.0
    for repeat in range(repeats):
        order = [("torch", run_torch), ("onnxruntime", run_onnx)]
        outputs = {}
        for label, fn in (order if repeat % 2 == 0 else order[::-1]):
            seconds, outputs[label] = timed(fn)
            times[label].append(seconds)
        worst = max(worst, float(np.max(np.abs(outputs["torch"] - outputs["onnxruntime"]))))
    rates = {}
    for label, values in times.items():
        median = statistics.median(values)
        rates[label] = batch / median
        print(f"  {label:12s} {rates[label]:7.1f} images/s  (median {median * 1000:.0f} ms "
              f"per batch; spread {min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms over "
              f"{len(values)} repeats)")
    print(f"  onnxruntime / torch = {rates['onnxruntime'] / rates['torch']:.2f}x; largest "
          f"|logit difference| {worst:.2g}; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if folder_images:
        line_side(session, size, folder_images, batch)


def line_side(session, size: tuple[int, int], n: int, batch: int) -> None:
    """The whole line-side path on a folder: walk, decode, resize, network, ranked CSV."""
    model = OnnxModel("benchmark", session, {}, size, 0.5)
    with tempfile.TemporaryDirectory() as folder:
        generate_demo_data(Path(folder) / "lot", n=n, bad_fraction=0.1, seed=5)
        result = score_folder(Path(folder) / "lot", model, Path(folder) / "ranked.csv",
                              batch_size=batch)
    print(f"  line side, score_folder on {len(result.relpaths)} demo JPEGs (decode + resize "
          f"+ onnxruntime + CSV): {result.images_per_s:.1f} images/s; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def all_models_parity(rows: int = 64) -> None:
    cols = int(round(rows * 275 / 267))
    images = np.random.default_rng(0).integers(0, 256, (8, 1, rows, cols), dtype=np.uint8)
    for info in list_models():
        torch.manual_seed(0)
        model = create_model(info.name).eval()
        seconds, session = timed(lambda m=model: session_for(m, (rows, cols)))
        expected = predict(model, torch.from_numpy(images))[0].numpy()
        got = session.run(["logit"], {"image": images})[0]
        print(f"  {info.name:16s} export {seconds:5.1f} s at {rows}x{cols}; max |logit "
              f"difference| {np.max(np.abs(got - expected)):.2g} over 8 images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="designed_resnet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both (default: each library's own default)")
    parser.add_argument("--folder-images", type=int, default=256,
                        help="also time the whole line-side path on a folder of this many "
                             "demo images (0: skip)")
    parser.add_argument("--all-models", action="store_true",
                        help="also check every registered model's export at 64 rows")
    args = parser.parse_args()
    bench(args.model, args.batch, args.repeats, args.threads, args.folder_images)
    if args.all_models:
        print("export parity, every registered model (random weights):")
        all_models_parity()


if __name__ == "__main__":
    main()
