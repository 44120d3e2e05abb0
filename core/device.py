"""Where torch work runs, and how: the one place for device, precision, threads and memory.

Training, scoring and the attribution maps all ask here which device to use
(:func:`select_device`), at what precision (:func:`autocast_dtype`), on how many CPU
threads (:func:`cpu_count`, :func:`thread_count`, :func:`torch_threads`), how to back off
when the GPU runs out of memory (:func:`unless_out_of_memory`, :func:`halved_batch`), how
large a batch the free GPU memory holds (:func:`batch_for_free_memory`) and how fast the
device could go (:func:`dense_bf16_peak_tflops`, :func:`achieved`).

:func:`compile_model` wraps ``torch.compile`` with a persistent cache and a fallback to
eager execution, so an unsupported platform trains as before instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # torch is imported where it is used: cpu_count serves torch-free code
    import torch
    from torch import nn

T = TypeVar("T")

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s, matched
# by a substring of ``torch.cuda.get_device_name`` (first match wins: H200 before H100).
DENSE_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX 4090", 165.0),
)
# Share of the free GPU memory a batch chosen by :func:`batch_for_free_memory` may use.
BATCH_MEMORY_SHARE = 0.5


# -- device and precision -------------------------------------------------------------------

def select_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error.

    CUDA means the current CUDA device, which a distributed worker has set to its local
    rank's GPU (``core.training.distributed``).
    """
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; "
                         "use --device cpu or auto.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        # With its index, so it compares equal to the device of the tensors put on it.
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype to train with (None: plain fp32)."""
    import torch
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU; use fp32 or bf16 on the CPU.")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    import torch
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context that runs the forward pass at ``dtype`` (nothing when it is None)."""
    import torch
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def configure_device(device: torch.device, precision: str, num_threads: int | None = None,
                     processes_here: int = 1) -> str:
    """Set threads / cuDNN for ``device``; returns how to describe it (e.g. 'cpu (2 threads)').

    ``processes_here``: training processes sharing this machine's CPUs (a distributed run's
    local world size), which divide the cores between them.
    """
    import torch
    dtype = autocast_dtype(precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
        # TF32 matmuls for the fp32 parts (loss, optimizer, fp32 runs): tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return f"cuda: {torch.cuda.get_device_name(device)} ({precision_name(dtype)})"
    threads = thread_count(num_threads, processes_here)
    torch.set_num_threads(threads)
    suffix = "" if dtype is None else f", {precision_name(dtype)}"
    return f"cpu ({threads} threads{suffix})"


def channels_last(device: torch.device) -> bool:
    """Channels-last layout on CUDA (tensor-core convolutions), the default elsewhere."""
    return device.type == "cuda"


# -- CPU threads ----------------------------------------------------------------------------

def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset
    narrow; ``os.cpu_count`` reports the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_count(requested: int | None = None, processes_here: int = 1) -> int:
    """torch threads for one process: ``requested``, else its share of :func:`cpu_count`."""
    if requested:
        return requested
    return max(1, cpu_count() // max(1, processes_here))


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch's CPU work of this thread on ``count`` threads (None: unchanged); the
    previous count is restored (the setting is per thread, so pooled workers keep theirs)."""
    import torch
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- out-of-memory back-off -----------------------------------------------------------------

def unless_out_of_memory(work: Callable[[], T]) -> T | None:
    """``work()``, or None when the GPU ran out of memory.

    Returning instead of handling the error inside the ``except`` lets the failed pass's
    activations, which the exception's traceback still references, be freed before the
    caller retries with less.
    """
    import torch
    try:
        return work()
    except torch.OutOfMemoryError:
        return None


def free_cached_memory(device: torch.device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.empty_cache()


def halved_batch(batch: int, minimum: int, device: torch.device, what: str) -> int:
    """The batch to retry with after an out-of-memory error (half, at least ``minimum``).

    Raises:
        RuntimeError: ``batch`` is already ``minimum``; ``what`` says what to do instead.
    """
    if batch <= minimum:
        raise RuntimeError(f"Out of GPU memory even with {minimum} image"
                           f"{'s' if minimum > 1 else ''} per step: {what}.")
    free_cached_memory(device)
    return max(minimum, batch // 2)


def batch_for_free_memory(model: nn.Module, input_shape: tuple[int, int],
                          device: torch.device, default: int, *, cap: int = 4096,
                          probe: int = 8) -> int:
    """The largest inference batch whose activations fit in BATCH_MEMORY_SHARE of the free
    GPU memory, measured with one ``probe``-image forward pass (``default`` on the CPU)."""
    import torch
    if device.type != "cuda":
        return default
    x = torch.zeros((probe, 1, *input_shape), device=device)
    if channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model(x)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)
    free, _total = torch.cuda.mem_get_info(device)
    return fitting_batch(free, per_image, cap)


def fitting_batch(free_bytes: int, bytes_per_image: int, cap: int) -> int:
    """Images whose activations fit in BATCH_MEMORY_SHARE of ``free_bytes`` (1..cap)."""
    return int(max(1, min(cap, BATCH_MEMORY_SHARE * free_bytes // max(1, bytes_per_image))))


# -- torch.compile --------------------------------------------------------------------------

def compile_cache_dir() -> Path:
    """Where Inductor keeps compiled kernels between runs (the second run starts fast)."""
    base = os.environ.get("DIESIGHT_HOME") or os.path.join(os.path.expanduser("~"),
                                                           ".diesight")
    return Path(base) / "torch-compile-cache"


def compile_model(model: nn.Module, device: torch.device, *, static_shapes: bool,
                  notify: Callable[[str], None] | None = None) -> nn.Module:
    """``torch.compile(model)``, or ``model`` itself where compiling is not possible.

    CUDA graphs ('reduce-overhead') when the caller promises static shapes; Inductor's
    default otherwise. Compilation happens at the first call: Dynamo's ``suppress_errors``
    makes a failure there run that code eagerly instead of ending the run.
    """
    import torch
    notify = notify or (lambda message: None)
    try:
        import torch._dynamo as dynamo

        cache = compile_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        dynamo.config.suppress_errors = True
        mode = "reduce-overhead" if static_shapes and device.type == "cuda" else None
        compiled = torch.compile(model, mode=mode, dynamic=False)
    except Exception as exc:  # no compiler / an unsupported platform
        notify(f"torch.compile is not available here ({type(exc).__name__}: {exc}); "
               f"training without it.")
        return model
    notify(f"torch.compile on {device.type}"
           f"{' with CUDA graphs' if mode else ''} (cache {cache}); the first steps compile.")
    return compiled


# -- speed ----------------------------------------------------------------------------------

def dense_bf16_peak_tflops(device_name: str) -> float | None:
    """The device's dense bf16 peak in TFLOP/s by its name (None: not in the table)."""
    for key, peak in DENSE_BF16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def training_flops_per_image(model: nn.Module, input_shape: tuple[int, int],
                             device: torch.device, batch: int = 2) -> float:
    """FLOPs of one forward + backward pass per image, counted by torch's
    ``FlopCounterMode`` (matmuls and convolutions), not by hand."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    x = torch.zeros((batch, 1, *input_shape), device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / batch


def achieved(flops_per_image: float, images_per_s: float, device_name: str
             ) -> tuple[float, float | None]:
    """(TFLOP/s achieved, share of the dense bf16 peak or None when the peak is unknown)."""
    tflops = flops_per_image * images_per_s / 1e12
    peak = dense_bf16_peak_tflops(device_name)
    return tflops, (tflops / peak if peak else None)
