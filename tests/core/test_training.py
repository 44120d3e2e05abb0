"""Tests of the training engine: config, augmentation, data feeding, split, the loop itself
(records, checkpoints, cancel/resume, reproducibility, out-of-memory back-off) and the CLI.

Most runs use a tiny CNN on a small synthetic dataset (64 x 66 images, a bright blob marks
a defect) so the whole file stays fast; one end-to-end run uses the real ``designed_resnet``
from the registry on the demo folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import core.training.trainer as trainer
from core.checkpoint import CheckpointError, load_checkpoint
from core.metrics import confusion_at, roc_auc, sigmoid, threshold_for_max_escapes
from core.models import DefectModel
from core.progress import Progress
from core.run_model import load_model_from_run
from core.runs import (
    epochs,
    get_run,
    holdout_ids,
    list_runs,
    selection_ids,
    validation_ids,
)
from core.training import TrainConfig, train
from core.training.augment import AugmentSettings, augment_batch, translate
from core.training.data import (
    MEAN,
    STD,
    normalise,
    prepare_images,
    split_from_validation_ids,
    split_train_val,
)
from core.workspace import Workspace

ROWS, COLS = 64, 66  # TrainConfig(image_size=64).input_shape


# -- fakes ----------------------------------------------------------------------------------

class TinyNet(DefectModel):
    """A two-layer CNN with the registry models' interface, for fast loop tests."""

    embedding_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, stride=4, padding=2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
            nn.Flatten())
        self.head = nn.Linear(8, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def tiny_model(name: str, *, weights=None) -> TinyNet:
    return TinyNet()


@dataclass
class FakeDataset:
    """The parts of ``core.dataset.Dataset`` the trainer reads."""

    workspace: Workspace
    images: np.ndarray
    image_ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    relpaths: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]


def synthetic_dataset(tmp_path: Path, n: int = 160, bad_fraction: float = 0.25,
                      seed: int = 0, val_split: bool = False) -> FakeDataset:
    """Noisy grey images; the bad ones carry a bright 8x8 spot somewhere."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    labels[rng.choice(n, int(n * bad_fraction), replace=False)] = 1
    images = rng.normal(100, 12, size=(n, ROWS, COLS)).clip(0, 255)
    for i in np.flatnonzero(labels):
        r, c = rng.integers(8, ROWS - 16), rng.integers(8, COLS - 16)
        images[i, r:r + 8, c:c + 8] = 220
    splits = np.array(["train"] * n, dtype=object)
    if val_split:
        splits[rng.choice(n, n // 4, replace=False)] = "val"
    # Ids need not be 0..n-1: leave gaps as a real cache would after deletions.
    ids = np.arange(n, dtype=np.int64) * 2
    cache = np.zeros((2 * n, ROWS, COLS), dtype=np.uint8)
    cache[ids] = images.astype(np.uint8)
    return FakeDataset(Workspace(tmp_path / "ws"), cache, ids, labels, splits.astype(str),
                       [f"img{i}.png" for i in ids])


def tiny_config(**changes) -> TrainConfig:
    base = dict(model="tiny", epochs=3, batch_size=16, lr=3e-3, per_class=48, image_size=64,
                device="cpu", num_threads=1, early_stopping_patience=0)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def tiny(monkeypatch):
    """Make the trainer build TinyNet instead of a registry model."""
    monkeypatch.setattr(trainer, "create_model", tiny_model)


@pytest.fixture
def data(tmp_path) -> FakeDataset:
    return synthetic_dataset(tmp_path)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Progress] = []

    def __call__(self, p: Progress) -> None:
        self.events.append(p)

    def stage(self, name: str) -> list[Progress]:
        return [e for e in self.events if e.stage == name]


# -- config ---------------------------------------------------------------------------------

def test_config_round_trips_and_rejects_unknown_keys():
    config = TrainConfig(model="stratified", sampler="S", image_size=128, weights=None)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_json(config.to_json()) == config
    assert config.input_shape == (128, 132)
    assert TrainConfig().input_shape == (267, 275)
    with pytest.raises(ValueError, match="Unknown training config key.*colour"):
        TrainConfig.from_dict({"colour": "red"})


@pytest.mark.parametrize("changes, message", [
    ({"sampler": "X"}, "sampler must be one of"),
    ({"epochs": 0}, "epochs must be an integer from 1 to 10,000"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"image_size": 32}, "image_size"),
    ({"lr": 0}, "lr must be positive"),
    ({"lr": float("inf")}, "lr must be positive and finite"),
    ({"lr": float("nan")}, "lr must be positive and finite"),
    ({"threshold": float("nan")}, "threshold"),
    ({"split_seed": -1}, "split_seed"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_config_load_reports_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match="Cannot read training config"):
        TrainConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainConfig.load(tmp_path / "bad.json")


# -- augmentation and data --------------------------------------------------------------------

def test_augmentation_is_seeded_bounded_and_keeps_shape():
    # Smooth images (like parts under a camera), so a few pixels of shift change little.
    ramp = torch.linspace(0.2, 0.8, COLS).expand(ROWS, COLS)
    x = (ramp + 0.1 * torch.rand(6, 1, 1, 1)).clamp(0, 1)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    # Global changes only: the augmented image still correlates strongly with the original.
    corr = np.corrcoef(a[0].flatten().numpy(), x[0].flatten().numpy())[0, 1]
    assert 0 < (a - x).abs().mean() < 0.15 and corr > 0.9


def test_translation_shifts_by_a_few_pixels_with_edge_fill():
    x = torch.arange(ROWS * COLS, dtype=torch.float32).view(1, 1, ROWS, COLS).repeat(20, 1, 1, 1)
    out = translate(x, torch.Generator().manual_seed(0), max_shift=2)
    for image in out[:, 0]:
        # Find the shift from the centre pixel: value = r * COLS + c.
        value = int(image[ROWS // 2, COLS // 2])
        dr, dc = ROWS // 2 - value // COLS, COLS // 2 - value % COLS
        assert abs(dr) <= 2 and abs(dc) <= 2
        expected = x[0, 0].roll((dr, dc), dims=(0, 1))
        inner = (slice(2, ROWS - 2), slice(2, COLS - 2))
        assert torch.equal(image[inner], expected[inner])
        # The borders repeat edge pixels: every value comes from the original image.
        assert torch.isin(image, x[0, 0]).all()


def test_no_augmentation_settings_leave_images_unchanged():
    x = torch.rand(2, 1, ROWS, COLS)
    off = AugmentSettings(max_shift=0, brightness=0, contrast=0, gamma=0, noise=0)
    assert torch.allclose(augment_batch(x, torch.Generator(), off), x, atol=1e-6)


def test_normalise_uses_fixed_mean_and_std():
    batch = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    out = normalise(batch).flatten()
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([-MEAN / STD, (1 - MEAN) / STD]))


def test_prepare_images_resizes_once_into_uint8(data):
    positions = np.array([5, 0, 3])
    same = prepare_images(data, positions, (ROWS, COLS))
    assert same.dtype == torch.uint8 and same.shape == (3, 1, ROWS, COLS)
    assert np.array_equal(same[0, 0].numpy(), data.images[data.image_ids[5]])
    events = Recorder()
    small = prepare_images(data, positions, 32, progress=events)
    assert small.shape == (3, 1, 32, 33)
    # Antialiased down-scaling keeps the mean brightness.
    assert abs(small.float().mean() - same.float().mean()) < 2
    assert events.stage("prepare")[-1].done == 3


def test_prepare_images_can_be_cancelled(data):
    from core.progress import Cancelled

    with pytest.raises(Cancelled):
        prepare_images(data, np.arange(10), 64, cancel=lambda: True)


def test_split_is_stratified_disjoint_and_seeded(data):
    split = split_train_val(data.labels, data.splits, 0.25, seed=3)
    assert not set(split.train) & set(split.val)
    assert len(split.train) + len(split.val) == len(data.labels)
    for cls in (0, 1):
        n = (data.labels == cls).sum()
        assert (data.labels[split.val] == cls).sum() == round(n * 0.25)
    again = split_train_val(data.labels, data.splits, 0.25, seed=3)
    assert np.array_equal(again.val, split.val)
    other = split_train_val(data.labels, data.splits, 0.25, seed=4)
    assert not np.array_equal(other.val, split.val)


def test_split_prefers_the_datasets_val_images_and_ignores_test_and_unlabelled(tmp_path):
    ds = synthetic_dataset(tmp_path, val_split=True)
    ds.splits[:10] = "test"
    ds.labels[10:20] = -1
    split = split_train_val(ds.labels, ds.splits, 0.2, seed=0)
    assert split.source == "val split"
    assert set(ds.splits[split.val]) == {"val"} and set(ds.splits[split.train]) == {"train"}
    assert (ds.labels[np.concatenate([split.train, split.val])] >= 0).all()
    rebuilt = split_from_validation_ids(ds.image_ids, ds.labels, ds.splits,
                                        ds.image_ids[split.val])
    assert np.array_equal(rebuilt.val, split.val) and np.array_equal(rebuilt.train, split.train)


def test_split_explains_missing_labels():
    labels = np.array([0, 0, 0, 1], dtype=np.int8)
    with pytest.raises(ValueError, match="at least 3 bad.*found only 1 bad: label 2 more bad"):
        split_train_val(labels, np.array(["train"] * 4), 0.2, seed=0)


# -- the training loop ------------------------------------------------------------------------

def test_tiny_run_lowers_loss_and_records_everything(tiny, data):
    events = Recorder()
    run = train(data, tiny_config(), progress=events)

    assert run.status == "finished" and run.device == "cpu (1 threads)"
    assert run.parameters == sum(p.numel() for p in TinyNet().parameters())
    history = epochs(data.workspace, run.id)
    assert [e.epoch for e in history] == [1, 2, 3]
    assert history[-1].train_loss < history[0].train_loss
    assert all(e.images_per_s > 0 and e.seconds > 0 for e in history)
    best = max(history, key=lambda e: (e.val_auc, -e.val_loss))
    assert run.best_epoch == best.epoch
    # The run's figures are the holdout's (half the held-out images, per class).
    assert (run.holdout_good, run.holdout_bad) == (12, 4)
    assert run.escapes + run.false_calls >= 0 and run.threshold is not None
    assert run.val_auc > 0.9, "a bright spot is easy to find"
    run_dir = data.workspace.run_dir(run.id)
    assert run.checkpoint == run_dir / "best.pt" and (run_dir / "last.pt").is_file()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3
    assert load_checkpoint(run.checkpoint)["epoch"] == run.best_epoch
    assert run.config == tiny_config() and run.train_seconds > 0

    val = validation_ids(data.workspace, run.id)
    assert len(val) == 32 and set(val) <= set(data.image_ids)
    holdout, selection = holdout_ids(data.workspace, run.id), selection_ids(data.workspace,
                                                                            run.id)
    assert len(holdout) == len(selection) == 16 and not set(holdout) & set(selection)
    assert set(holdout) | set(selection) == set(val)

    assert events.stage("start")[0].data["run_id"] == run.id
    train_events = events.stage("train")
    assert train_events[-1].done == train_events[-1].total == 6  # 2 * 48 draws / 16
    assert {"epoch", "epochs", "batch", "loss", "images_per_s", "eta_s"} <= \
        set(train_events[-1].data)
    assert events.stage("validate")[-1].done == 1
    epoch_events = events.stage("epoch")
    assert [e.data["epoch_record"] for e in epoch_events] == history


def test_same_seed_gives_identical_loss_history(tiny, data):
    first = train(data, tiny_config(epochs=2))
    second = train(data, tiny_config(epochs=2))
    other = train(data, tiny_config(epochs=2, seed=1))
    losses = [[(e.train_loss, e.val_loss) for e in epochs(data.workspace, r.id)]
              for r in (first, second, other)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_cancel_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny, data):
    reference = train(data, tiny_config())
    checks = []

    def cancel_in_epoch_two() -> bool:
        # Checked before each batch: epoch 1 has 6 training + 1 validation batch.
        checks.append(1)
        return len(checks) > 9

    run = train(data, tiny_config(), cancel=cancel_in_epoch_two)
    assert run.status == "cancelled" and "Cancelled during epoch 2" in run.message
    assert [e.epoch for e in epochs(data.workspace, run.id)] == [1]
    assert load_checkpoint(data.workspace.run_dir(run.id) / "last.pt")["epoch"] == 1
    assert run.checkpoint.is_file()

    events = Recorder()
    resumed = train(data, None, resume_run=run.id, progress=events)
    assert resumed.id == run.id and resumed.status == "finished"
    assert events.stage("start")[0].data["start_epoch"] == 2
    history = [(e.epoch, e.train_loss, e.val_loss) for e in epochs(data.workspace, run.id)]
    expected = [(e.epoch, e.train_loss, e.val_loss) for e in epochs(data.workspace,
                                                                    reference.id)]
    assert history == expected
    assert np.array_equal(validation_ids(data.workspace, run.id),
                          validation_ids(data.workspace, reference.id))


def test_cancel_in_first_epoch_resumes_from_scratch(tiny, data):
    run = train(data, tiny_config(epochs=1), cancel=lambda: True)
    assert run.status == "cancelled" and not (data.workspace.run_dir(run.id) / "last.pt").exists()
    resumed = train(data, None, resume_run=run.id)
    assert resumed.status == "finished" and len(epochs(data.workspace, run.id)) == 1


def test_resume_refuses_finished_runs_and_changed_settings(tiny, data):
    run = train(data, tiny_config(epochs=1))
    with pytest.raises(ValueError, match="only cancelled, interrupted or failed"):
        train(data, None, resume_run=run.id)
    cancelled = train(data, tiny_config(epochs=2), cancel=lambda: True)
    with pytest.raises(ValueError, match="cannot change lr"):
        train(data, tiny_config(epochs=2, lr=0.1), resume_run=cancelled.id)


def test_early_stopping_after_patience_epochs_without_improvement(tiny, data, monkeypatch):
    def same_every_epoch(model, ctx, epoch):
        return 0.5, np.linspace(0, 1, len(ctx.val_rows))

    monkeypatch.setattr(trainer, "evaluate", same_every_epoch)
    events = Recorder()
    run = train(data, tiny_config(epochs=6, early_stopping_patience=2), progress=events)
    assert run.status == "finished" and "(early stop)" in run.message
    assert [e.epoch for e in epochs(data.workspace, run.id)] == [1, 2, 3]
    assert run.best_epoch == 1
    assert any(e.message.startswith("Early stop after epoch 3") for e in events.stage("notice"))


def test_weighted_sampler_trains_on_every_image_once(tiny, data):
    events = Recorder()
    run = train(data, tiny_config(epochs=1, sampler="weighted"), progress=events)
    assert run.status == "finished"
    assert events.stage("train")[-1].total == 8  # 128 training images / 16


def test_failed_run_is_recorded(tiny, data, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainer, "save_checkpoint", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(data, tiny_config(epochs=1))
    [run] = list_runs(data.workspace)
    assert run.status == "failed" and "disk on fire" in run.message


def test_out_of_memory_halves_the_micro_batch_and_keeps_training(data, monkeypatch):
    fired, validation_batches = [], []

    def flaky_model(name, *, weights=None):
        model = TinyNet()

        def fail_once_on_big_batches(module, inputs):
            if not module.training:
                validation_batches.append(inputs[0].shape[0])
            if inputs[0].shape[0] > 8 and module.training and not fired:
                fired.append(inputs[0].shape[0])
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        # On a submodule: validation calls forward_with_embedding, not the model itself.
        model.features.register_forward_pre_hook(fail_once_on_big_batches)
        return model

    monkeypatch.setattr(trainer, "create_model", flaky_model)
    events = Recorder()
    run = train(data, tiny_config(epochs=1), progress=events)
    assert fired == [16] and run.status == "finished"
    [notice] = [e.message for e in events.stage("notice") if "memory" in e.message]
    assert "micro-batches of 8" in notice and "2 accumulation steps" in notice
    assert "effective batch 16 unchanged" in notice
    # Validation follows the smaller micro-batch (twice it: no gradients are kept).
    assert validation_batches and max(validation_batches) == 16


def test_accumulated_micro_batches_give_the_full_batch_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0))
    x, y = torch.randn(10, 1, 3, 4), (torch.rand(10) > 0.5).float()
    full = GradCapture(model)
    step = trainer.GradientStep(model, nn.BCEWithLogitsLoss(), full, batch_size=10,
                                dtype=None, device=torch.device("cpu"))
    loss_full = step(x, y)
    step.micro_batch = 3  # 4 micro-batches of 3, 3, 3, 1
    loss_split = step(x, y)
    assert torch.allclose(loss_full, loss_split)
    for a, b in zip(full.grads[0], full.grads[1], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


class GradCapture(torch.optim.Optimizer):
    """An 'optimizer' that records gradients instead of stepping."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model.parameters(), {})
        self.grads: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append([p.grad.clone() for g in self.param_groups for p in g["params"]])


def test_out_of_memory_with_one_image_gives_up_clearly():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0))

    def always_oom(module, inputs):
        raise torch.OutOfMemoryError("simulated")

    model.register_forward_pre_hook(always_oom)
    step = trainer.GradientStep(model, nn.BCEWithLogitsLoss(), GradCapture(model),
                                batch_size=4, dtype=None, device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="even with 2 images"):
        step(torch.randn(4, 1, 3, 4), torch.ones(4))
    assert step.micro_batch == 2


@pytest.mark.parametrize("n, micro, sizes", [
    (16, 16, [16]), (16, 8, [8, 8]), (10, 3, [3, 3, 4]), (5, 2, [2, 3]), (1, 4, [1])])
def test_micro_slices_never_leave_a_lone_image(n, micro, sizes):
    assert [s.stop - s.start for s in trainer.micro_slices(n, micro)] == sizes


def test_schedule_warms_up_then_decays():
    config = tiny_config(epochs=10, lr=1.0)
    model = nn.Linear(2, 1)
    optimizer = trainer.build_optimizer(model, config)
    scheduler = trainer.build_scheduler(optimizer, config, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = int(np.argmax(lrs))
    assert 0 < peak <= 6 and lrs[0] < lrs[peak] == pytest.approx(1.0, abs=0.02)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))
    assert lrs[-1] < 0.05


def test_device_and_precision_choices():
    cpu = torch.device("cpu")
    assert trainer.select_device("cpu") == cpu
    assert trainer.autocast_dtype("auto", cpu) is None
    assert trainer.autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        trainer.autocast_dtype("fp16", cpu)
    if not torch.cuda.is_available():
        assert trainer.select_device("auto") == cpu
        with pytest.raises(ValueError, match="no CUDA GPU"):
            trainer.select_device("cuda")


# -- with the real registry and dataset ---------------------------------------------------------

def test_designed_resnet_trains_on_the_demo_folder(demo_folder):
    from core.dataset import open_dataset

    dataset = open_dataset(demo_folder, workers=1)
    config = TrainConfig(model="designed_resnet", epochs=1, batch_size=16, per_class=16,
                         image_size=64, device="cpu", num_threads=2)
    run = train(dataset, config)
    assert run.status == "finished" and run.parameters > 100_000
    model, loaded_config = load_model_from_run(run)
    assert loaded_config == config
    with torch.inference_mode():
        logits = model(normalise(torch.zeros(2, 1, *config.input_shape, dtype=torch.uint8)))
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    val = validation_ids(dataset.workspace, run.id)
    positions = dataset.positions(val)
    assert (positions >= 0).all() and set(dataset.splits[positions]) == {"train"}


def test_wrong_checkpoint_for_the_model_is_a_checkpoint_error(tiny, data):
    run = train(data, tiny_config(epochs=1))
    wrong = run.config.replace(model="designed_resnet")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model_from_run(type(run)(**{**run.__dict__, "config": wrong}))


# -- honest numbers -----------------------------------------------------------------------------

@pytest.fixture
def tiny_everywhere(monkeypatch):
    """TinyNet for the trainer and for a run's loaded model (core.run_model builds it from
    the registry for scoring)."""
    import core.run_model

    monkeypatch.setattr(trainer, "create_model", tiny_model)
    monkeypatch.setattr(core.run_model, "create_model", tiny_model)


def capture_validation(monkeypatch) -> list[np.ndarray]:
    """Record the selection logits of every epoch as the trainer computes them."""
    seen, evaluate = [], trainer.evaluate

    def recording(model, ctx, epoch):
        loss, logits = evaluate(model, ctx, epoch)
        seen.append(logits.copy())
        return loss, logits

    monkeypatch.setattr(trainer, "evaluate", recording)
    return seen


def stored(dataset, run_id: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) that core.scoring stored for ``ids``."""
    from core.score_store import load_logits

    all_ids, logits = load_logits(dataset.workspace, run_id)
    positions = np.searchsorted(dataset.image_ids, ids)
    return logits[np.searchsorted(all_ids, ids)], dataset.labels[positions].astype(int)


def test_validation_scores_are_the_scoring_scores_even_after_bf16_training(
        tiny_everywhere, data, monkeypatch):
    """Training under bf16 autocast: validation still runs the fp32 pass scoring runs."""
    from core.scoring import score_dataset

    seen = capture_validation(monkeypatch)
    run = train(data, tiny_config(epochs=1, precision="bf16"))
    result = score_dataset(data, run, device="cpu", batch_size=7)
    selection = selection_ids(data.workspace, run.id)
    logits, _ = stored(data, run.id, selection)
    # best.pt is epoch 1's model: the very numbers that chose it.
    assert np.allclose(seen[0], logits, rtol=0, atol=1e-6)
    positions = np.searchsorted(result.image_ids, selection)
    assert np.array_equal(result.scores[positions], sigmoid(logits))


def test_reported_figures_come_from_the_holdout_not_the_selection(tiny_everywhere, data,
                                                                   monkeypatch):
    from core.scoring import score_dataset

    chosen_on, positions = [], {}
    build, evaluate = trainer._build_context, trainer.evaluate

    def keep_positions(dataset, config, device, model, split, *rest):
        positions["of rows"] = np.concatenate([split.train, split.selection, split.holdout])
        return build(dataset, config, device, model, split, *rest)

    def recording(model, ctx, epoch):
        chosen_on.append(data.image_ids[positions["of rows"][ctx.val_rows]])
        return evaluate(model, ctx, epoch)

    monkeypatch.setattr(trainer, "evaluate", recording)
    monkeypatch.setattr(trainer, "_build_context", keep_positions)
    run = train(data, tiny_config(epochs=3))
    holdout = holdout_ids(data.workspace, run.id)
    # No image that chose the epoch is among those the figures come from.
    assert all(not set(ids) & set(holdout) for ids in chosen_on)
    score_dataset(data, run, device="cpu")
    logits, labels = stored(data, run.id, holdout)
    assert (run.holdout_good, run.holdout_bad) == ((labels == 0).sum(), (labels == 1).sum())
    assert run.val_auc == pytest.approx(roc_auc(logits, labels), abs=1e-12)
    # The operating point (no threshold configured): no holdout escapes, with a margin.
    assert run.config.threshold is None
    assert run.threshold == pytest.approx(
        threshold_for_max_escapes(sigmoid(logits), labels, 0), rel=1e-6)
    at = confusion_at(sigmoid(logits), labels, run.threshold)
    assert (run.escapes, run.false_calls) == (at.escapes, at.false_calls) and at.escapes == 0
    assert run.threshold < sigmoid(logits[labels == 1]).min()


def test_scores_are_corrected_to_the_labelled_defect_rate(tiny_everywhere, data):
    from core.scoring import score_dataset

    run = train(data, tiny_config(epochs=1))
    assert run.train_prior == 0.5  # sampler B: as many bad draws as good
    assert run.defect_rate == pytest.approx(0.25)  # the synthetic set's bad share
    result = score_dataset(data, run, device="cpu")
    model, config = load_model_from_run(run)
    images = prepare_images(data, np.arange(5), config.input_shape)
    with torch.inference_mode():
        raw = model(normalise(images)).double().numpy()
    assert np.allclose(result.logits[:5] - raw, np.log(0.25 / 0.75), atol=1e-6)

    plain = train(data, tiny_config(epochs=1, sampler="shuffle"))
    training_labels = data.labels[~np.isin(data.image_ids, validation_ids(data.workspace,
                                                                           plain.id))]
    assert plain.train_prior == pytest.approx(training_labels.mean())


def test_split_seed_keeps_the_held_out_images_while_the_seed_changes(tiny, data):
    first = train(data, tiny_config(epochs=1, seed=1, split_seed=9))
    second = train(data, tiny_config(epochs=1, seed=2, split_seed=9))
    for ids in (validation_ids, holdout_ids):
        assert np.array_equal(ids(data.workspace, first.id), ids(data.workspace, second.id))
    # The initial weights did change.
    assert [e.train_loss for e in epochs(data.workspace, first.id)] != \
        [e.train_loss for e in epochs(data.workspace, second.id)]
    by_seed = train(data, tiny_config(epochs=1, seed=9))
    assert np.array_equal(validation_ids(data.workspace, by_seed.id),
                          validation_ids(data.workspace, first.id))


def test_replay_reuses_the_saved_split_after_a_relabel(tiny, data):
    run = train(data, tiny_config(epochs=1))
    saved_val = validation_ids(data.workspace, run.id)
    saved_holdout = holdout_ids(data.workspace, run.id)
    # Relabel a held-out good image as bad: drawn afresh, the split would change.
    position = int(np.flatnonzero(np.isin(data.image_ids, saved_holdout)
                                  & (data.labels == 0))[0])
    data.labels[position] = 1
    fresh = split_train_val(data.labels, data.splits, 0.2, seed=0)
    assert not np.array_equal(data.image_ids[fresh.val], saved_val)

    replay = train(data, run.config, split_from=run.id)
    assert np.array_equal(validation_ids(data.workspace, replay.id), saved_val)
    assert np.array_equal(holdout_ids(data.workspace, replay.id), saved_holdout)
    assert replay.holdout_bad == run.holdout_bad + 1  # the labels are today's


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_train_replay_and_config(tiny, demo_folder, tmp_path, capsys):
    from core.cli import main

    args = ["train", str(demo_folder), "--model", "tiny", "--epochs", "1", "--image-size",
            "64", "--per-class", "16", "--batch-size", "16", "--device", "cpu",
            "--threads", "1", "--save-config", str(tmp_path / "run.json")]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "epoch 1/1" in out.out and "Run 1 finished" in out.out
    assert '"model": "tiny"' in out.err
    saved = TrainConfig.load(tmp_path / "run.json")
    assert saved.per_class == 16

    assert main(["train", str(demo_folder), "--replay", "1", "--seed", "5"]) == 0
    assert main(["train", str(demo_folder), "--config", str(tmp_path / "run.json")]) == 0
    workspace = Workspace.for_dataset(demo_folder)
    configs = [r.config for r in list_runs(workspace)]
    # A replay keeps the split: its split seed is the replayed run's (here its seed, 0).
    assert configs[1] == saved.replace(seed=5, split_seed=0) and configs[2] == saved
    capsys.readouterr()

    assert main(["train", str(demo_folder), "--resume", "2"]) == 2
    assert "only cancelled" in capsys.readouterr().err
    assert main(["train", str(demo_folder), "--sampler", "S", "--per-class", "0"]) == 2
    assert "per_class must be" in capsys.readouterr().err
    assert get_run(workspace, 3).status == "finished"


def test_compile_trains_through_the_dynamo_wrapper_and_saves_plain_weights(tiny, data,
                                                                           monkeypatch):
    """--compile: the loop trains the OptimizedModule, checkpoints hold the plain model's
    keys. Dynamo's 'eager' backend stands in for Inductor (no C++ build in the test)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda model, **options: compile_(model, backend="eager"))
    notes = []
    run = train(data, tiny_config(epochs=2, compile=True),
                progress=lambda p: notes.append(p.message) if p.stage == "notice" else None)
    assert run.status == "finished"
    assert any("torch.compile on cpu" in note for note in notes)
    state = torch.load(data.workspace.run_dir(run.id) / "best.pt", weights_only=True)["model"]
    assert state and not any(key.startswith(("_orig_mod", "module.")) for key in state)
