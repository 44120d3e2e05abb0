"""The CUDA paths of training and scoring, on a real GPU (skipped where there is none).

CI has no GPU, so these run only on a GPU workstation (or the project's lent GPU machine):
``python -m pytest tests/core/test_cuda.py``. The CPU suite covers the same logic with
simulated out-of-memory errors; here the errors, mixed precision, channels_last and the
data kept on the GPU are real.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.dataset import open_dataset
from core.metrics import roc_auc
from core.progress import Progress
from core.runs import epochs, holdout_ids
from core.scoring import score_dataset
from core.training import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def dataset(demo_folder):
    return open_dataset(demo_folder, workers=2)


def small_config(**changes) -> TrainConfig:
    settings = dict(model="designed_resnet", epochs=2, batch_size=16, per_class=48,
                    image_size=96, device="auto", precision="auto", early_stopping_patience=0)
    return TrainConfig(**{**settings, **changes})


def test_auto_trains_on_the_gpu_in_bf16_and_scores_like_the_cpu(dataset):
    run = train(dataset, small_config())
    assert run.status == "finished", run.message
    assert run.device.startswith("cuda: ") and run.device.endswith("(bf16)")
    assert all(np.isfinite(e.train_loss) and np.isfinite(e.val_loss)
               for e in epochs(dataset.workspace, run.id))

    on_gpu = score_dataset(dataset, run, device="cuda")
    on_cpu = score_dataset(dataset, run, device="cpu")
    assert on_gpu.device.startswith("cuda") and len(on_gpu.scores) == len(dataset.image_ids)
    # The GPU convolves in TF32: close to the CPU's fp32, not bit-equal.
    assert np.abs(on_gpu.scores - on_cpu.scores).max() < 0.02
    assert np.corrcoef(on_gpu.embeddings.ravel(), on_cpu.embeddings.ravel())[0, 1] > 0.999


def test_bf16_run_reports_the_numbers_its_gpu_scores_give(dataset):
    """Trained in bf16, evaluated in fp32: the holdout figures recorded by the trainer are
    those of the stored GPU scores (TF32 convolutions may pick other kernels for other
    batch sizes, so close rather than bit-equal)."""
    run = train(dataset, small_config(epochs=1))
    result = score_dataset(dataset, run, device="cuda")
    ids = holdout_ids(dataset.workspace, run.id)
    logits = result.logits[np.searchsorted(result.image_ids, ids)]
    labels = np.asarray(dataset.labels)[dataset.positions(ids)]
    assert (int((labels == 1).sum()), int((labels == 0).sum())) == \
        (run.holdout_bad, run.holdout_good)
    assert roc_auc(logits, labels) == pytest.approx(run.val_auc, abs=0.02)


def test_fp16_trains_with_a_gradient_scaler(dataset):
    run = train(dataset, small_config(precision="fp16", epochs=1))
    assert run.status == "finished", run.message
    assert run.device.endswith("(fp16)")
    [record] = epochs(dataset.workspace, run.id)
    assert np.isfinite(record.train_loss) and np.isfinite(record.val_auc)


def test_cancel_and_resume_on_the_gpu_match_an_uninterrupted_run(dataset):
    config = small_config(precision="fp32", epochs=2)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        reference = train(dataset, config)
        stop = []
        cancelled = train(dataset, config, progress=lambda p: stop.append(p.stage == "epoch"),
                          cancel=lambda: any(stop))
        assert cancelled.status == "cancelled"
        resumed = train(dataset, None, resume_run=cancelled.id)
    finally:
        torch.backends.cudnn.deterministic = False
    assert resumed.status == "finished"
    got = [(e.epoch, e.train_loss) for e in epochs(dataset.workspace, resumed.id)]
    want = [(e.epoch, e.train_loss) for e in epochs(dataset.workspace, reference.id)]
    assert [e for e, _ in got] == [1, 2]
    assert np.allclose([loss for _, loss in got], [loss for _, loss in want], rtol=1e-3)


def test_a_real_out_of_memory_halves_the_micro_batch(dataset):
    """ResNet-50 at full resolution in a 3 GiB slice of the GPU: a batch of 64 does not fit
    (the seed study's failure); the trainer backs off, says so, and finishes the run."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(3 * 2**30 / total)
    notices: list[str] = []

    def listen(p: Progress) -> None:
        if p.stage == "notice":
            notices.append(p.message)

    try:
        run = train(dataset, small_config(model="resnet50", image_size=267, batch_size=64,
                                          per_class=64, epochs=1), progress=listen)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert run.status == "finished", run.message
    backoffs = [n for n in notices if n.startswith("Out of GPU memory")]
    assert backoffs and "effective batch 64 unchanged" in backoffs[-1]
