"""core.device: device choice, threads, out-of-memory back-off, batch from free memory,
FLOP counting and the peak table; the CUDA-only checks are skipped without a GPU (and run
by tests/benchmarks/gpu_check.sh where there is one)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from core import device as dev
from core.models import create_model
from core.training.config import TrainConfig
from core.training.loop import build_optimizer, build_scheduler

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_count_is_the_affinity_and_threads_share_it():
    assert 1 <= dev.cpu_count() <= (torch.multiprocessing.cpu_count() or 1)
    assert dev.thread_count(3) == 3
    assert dev.thread_count(None, processes_here=dev.cpu_count() * 4) == 1
    assert dev.thread_count(None) == dev.cpu_count()


def test_cpu_count_does_not_import_torch():
    code = "import sys, core.device as d; d.cpu_count(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with dev.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_out_of_memory_is_returned_as_none_and_the_batch_halves_to_a_floor():
    def oom():
        raise torch.OutOfMemoryError("simulated")

    assert dev.unless_out_of_memory(oom) is None
    assert dev.unless_out_of_memory(lambda: 7) == 7
    cpu = torch.device("cpu")
    assert dev.halved_batch(64, 2, cpu, "x") == 32
    assert dev.halved_batch(3, 2, cpu, "x") == 2
    with pytest.raises(RuntimeError, match="even with 2 images per step: free the GPU"):
        dev.halved_batch(2, 2, cpu, "free the GPU")


def test_fitting_batch_uses_half_the_free_memory_within_bounds():
    assert dev.fitting_batch(free_bytes=1000, bytes_per_image=10, cap=4096) == 50
    assert dev.fitting_batch(free_bytes=10**12, bytes_per_image=1, cap=256) == 256
    assert dev.fitting_batch(free_bytes=1, bytes_per_image=10**9, cap=256) == 1
    model = nn.Linear(1, 1)
    assert dev.batch_for_free_memory(model, (8, 8), torch.device("cpu"), 64) == 64


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0),
                                        ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA A100-SXM4-80GB", 312.0),
                                        ("NVIDIA L40S", 362.0),
                                        ("NVIDIA GeForce RTX 4090", 165.0),
                                        ("cpu (2 threads)", None)])
def test_peak_table_by_device_name(name, peak):
    assert dev.dense_bf16_peak_tflops(name) == peak


def test_flops_are_counted_by_torch_and_scale_with_the_image():
    model = create_model("designed_resnet")
    small = dev.training_flops_per_image(model, (64, 66), torch.device("cpu"))
    large = dev.training_flops_per_image(model, (128, 132), torch.device("cpu"))
    assert small > 1e6 and 3.5 < large / small < 4.5  # convolutions: ~ pixels
    tflops, share = dev.achieved(small, 1000.0, "NVIDIA H200")
    assert tflops == pytest.approx(small * 1000 / 1e12) and share == pytest.approx(tflops / 989)


def test_compile_falls_back_to_the_model_when_torch_compile_is_unavailable(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    notes = []
    model = nn.Linear(2, 1)
    assert dev.compile_model(model, torch.device("cpu"), static_shapes=True,
                             notify=notes.append) is model
    assert "not available here" in notes[0]


def test_schedule_continues_a_checkpoint_of_the_old_lambda_schedule():
    """A run checkpointed with the hand-written LambdaLR resumes on torch's schedulers at
    the same learning rate."""
    from core.training.trainer import _load_scheduler

    config = TrainConfig(epochs=4, lr=1.0)
    old_model, new_model = nn.Linear(2, 1), nn.Linear(2, 1)
    old_opt = build_optimizer(old_model, config)
    new = build_scheduler(old_opt, config, steps_per_epoch=50)
    for _ in range(37):
        old_opt.step()
        new.step()
    expected = old_opt.param_groups[0]["lr"]
    # The old closed form: 10 warm-up steps of 200, then cosine down to 1% of the peak.
    progress = (37 - 10) / (200 - 10)
    assert expected == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    lambda_state = {"last_epoch": 37, "lr_lambdas": [None, None], "base_lrs": [1.0, 1.0]}
    new_opt = build_optimizer(new_model, config)
    _load_scheduler(build_scheduler(new_opt, config, steps_per_epoch=50), lambda_state)
    assert new_opt.param_groups[0]["lr"] == pytest.approx(expected)


@cuda
def test_cuda_batch_from_free_memory_and_fused_adamw():
    device = dev.select_device("cuda")
    model = create_model("designed_resnet").to(device).eval()
    batch = dev.batch_for_free_memory(model, (267, 275), device, 64)
    assert 8 <= batch <= 4096
    optimizer = build_optimizer(model, TrainConfig(), device)
    assert optimizer.defaults.get("fused") is True


@cuda
def test_cuda_compiled_model_trains_a_step():
    device = dev.select_device("cuda")
    model = create_model("designed_resnet").to(device).train()
    compiled = dev.compile_model(model, device, static_shapes=False)
    x = torch.randn(4, 1, 64, 66, device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        compiled(x).float().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
