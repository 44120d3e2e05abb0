"""Scoring: every image scored once, stored per run, cancel-safe, and new lots via OTHER@ID."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scoring_fixtures import RUN_IMAGE_SIZE, make_lot, make_run

from core.checkpoint import CheckpointError
from core.dataset import open_dataset
from core.progress import Cancelled
from core.run_model import load_model_from_run
from core.runs import list_runs
from core.scoring import (
    EMBEDDINGS_FILE,
    NoScoresError,
    aligned_logits,
    aligned_scores,
    load_embeddings,
    load_scores,
    score_dataset,
    scored_at,
    store_scores,
)
from core.training.config import width_for_rows
from core.training.data import normalise, prepare_images


@pytest.fixture
def dataset(tmp_path):
    return open_dataset(make_lot(tmp_path / "lot"), workers=1)


@pytest.fixture
def run(dataset):
    return make_run(dataset.workspace)


def test_scores_every_present_image_and_stores_them(dataset, run):
    reports = []
    result = score_dataset(dataset, run, device="cpu", batch_size=5, progress=reports.append)
    n = len(dataset.image_ids)
    assert set(dataset.splits.tolist()) == {"train", "test"}

    ids, scores = load_scores(dataset.workspace, run.id)
    assert np.array_equal(ids, dataset.image_ids) and len(scores) == n
    assert np.array_equal(scores, result.scores)
    assert ((scores > 0) & (scores < 1)).all()
    emb_ids, embeddings = load_embeddings(dataset.workspace, run.id)
    assert np.array_equal(emb_ids, dataset.image_ids)
    assert embeddings.shape == (n, 32) and embeddings.dtype == np.float32
    assert np.array_equal(embeddings, result.embeddings)
    assert scored_at(dataset.workspace, run.id) is not None
    score_reports = [r for r in reports if r.stage == "score"]
    assert score_reports[-1].done == score_reports[-1].total == n

    # The same numbers as the model itself on the trainer's input at the run's size, in
    # one batch of other images: batching does not change a score.
    model, config = load_model_from_run(run)
    positions = np.array([0, 6, n - 1])
    images = prepare_images(dataset, positions, config.input_shape, "cpu")
    assert tuple(images.shape[2:]) == (RUN_IMAGE_SIZE, width_for_rows(RUN_IMAGE_SIZE))
    with torch.inference_mode():
        logits = model(normalise(images))
        direct_embeddings = model.embed(normalise(images))
    assert np.allclose(scores[positions], torch.sigmoid(logits).numpy(), atol=1e-6)
    assert np.allclose(embeddings[positions], direct_embeddings.numpy(), atol=1e-5)


def test_cancelled_scoring_keeps_previous_scores(dataset, run):
    n = len(dataset.image_ids)
    old_scores = np.linspace(0.01, 0.99, n)
    store_scores(dataset.workspace, run.id, dataset.image_ids, old_scores,
                 np.ones((n, 32), np.float32))
    emb_file = dataset.workspace.run_dir(run.id) / EMBEDDINGS_FILE
    old_bytes = emb_file.read_bytes()

    calls = []

    def cancel_on_third_check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(Cancelled):
        score_dataset(dataset, run, device="cpu", batch_size=4, cancel=cancel_on_third_check)
    ids, scores = load_scores(dataset.workspace, run.id)
    assert np.array_equal(ids, dataset.image_ids) and np.array_equal(scores, old_scores)
    assert emb_file.read_bytes() == old_bytes
    leftovers = [p.name for p in emb_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_rescoring_replaces_the_runs_scores_only(dataset, run):
    other = make_run(dataset.workspace, seed=1)
    n = len(dataset.image_ids)
    store_scores(dataset.workspace, other.id, dataset.image_ids, np.full(n, 0.5),
                 np.zeros((n, 32), np.float32))
    store_scores(dataset.workspace, run.id, dataset.image_ids[:3], np.zeros(3),
                 np.zeros((3, 32), np.float32))
    score_dataset(dataset, run, device="cpu")
    ids, scores = load_scores(dataset.workspace, run.id)
    assert np.array_equal(ids, dataset.image_ids) and (scores > 0).all()
    assert (load_scores(dataset.workspace, other.id)[1] == 0.5).all()


def test_new_lot_scored_with_other_datasets_run_imports_it(tmp_path, dataset, run):
    lot = open_dataset(make_lot(tmp_path / "new lot", good=0, bad=0, test=4, seed=3),
                       workers=1)
    result = score_dataset(lot, f"{dataset.root}@{run.id}", device="cpu")
    imported = list_runs(lot.workspace)
    assert len(imported) == 1 and imported[0].status == "imported"
    assert imported[0].source == f"{dataset.root.resolve()}@{run.id}"
    assert result.run_id == imported[0].id
    ids, scores = load_scores(lot.workspace, imported[0].id)
    assert np.array_equal(ids, lot.image_ids) and len(scores) == 4
    # Scoring again with the other dataset's 'latest' reuses the imported row.
    score_dataset(lot, f"{dataset.root}@latest", device="cpu")
    assert len(list_runs(lot.workspace)) == 1


def test_missing_scores_and_checkpoint_give_clear_errors(dataset, run):
    with pytest.raises(NoScoresError, match="diesight score"):
        aligned_scores(dataset, run.id)
    with pytest.raises(NoScoresError, match="diesight score"):
        load_embeddings(dataset.workspace, run.id)
    run.checkpoint.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        score_dataset(dataset, run, device="cpu")
    with pytest.raises(ValueError, match="batch size"):
        score_dataset(dataset, make_run(dataset.workspace), device="cpu", batch_size=-1)


def test_aligned_scores_leave_unscored_images_nan(dataset, run):
    store_scores(dataset.workspace, run.id, dataset.image_ids[1:], np.full(
        len(dataset.image_ids) - 1, 0.25), np.zeros((len(dataset.image_ids) - 1, 32), np.float32))
    aligned = aligned_scores(dataset, run.id)
    assert np.isnan(aligned[0]) and (aligned[1:] == 0.25).all()


def test_out_of_gpu_memory_halves_the_batch_and_scores_the_same(dataset, run, monkeypatch):
    """A forward pass over more than 4 images "runs out of GPU memory" (simulated, as on a
    small card): scoring halves its batch, says so, and gives the scores of a plain pass."""
    expected = score_dataset(dataset, run, device="cpu", batch_size=64).scores
    load = load_model_from_run

    def load_small_gpu_model(run_record):
        model, config = load(run_record)
        forward = model.forward_with_embedding

        def forward_or_oom(x):
            if len(x) > 4:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return forward(x)

        model.forward_with_embedding = forward_or_oom
        return model, config

    monkeypatch.setattr("core.scoring.load_model_from_run", load_small_gpu_model)
    reports = []
    result = score_dataset(dataset, run, device="cpu", batch_size=16, progress=reports.append)
    notices = [r.message for r in reports if r.stage == "notice"]
    assert notices == ["Out of GPU memory: scoring in batches of 8.",
                       "Out of GPU memory: scoring in batches of 4."]
    assert np.allclose(result.scores, expected, atol=1e-6)


def test_out_of_memory_on_a_single_image_is_a_clear_error(dataset, run, monkeypatch):
    load = load_model_from_run

    def load_always_oom(run_record):
        model, config = load(run_record)

        def oom(x):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        model.forward_with_embedding = oom
        return model, config

    monkeypatch.setattr("core.scoring.load_model_from_run", load_always_oom)
    with pytest.raises(RuntimeError, match="Out of GPU memory scoring a single image"):
        score_dataset(dataset, run, device="cpu", batch_size=4)


def test_confident_parts_keep_distinct_scores_ranks_and_auc(dataset, run):
    """Logits 20 and 25: float32 probabilities would both be exactly 1.0 (a tie)."""
    from core.metrics import roc_auc, sigmoid
    from core.ranking import ranked_images

    n = len(dataset.image_ids)
    logits = np.linspace(-3, 3, n)
    first, second = 2, 5  # the good part at logit 20, the bad one at 25
    logits[[first, second]] = 20.0, 25.0
    labels = np.zeros(n, dtype=int)
    labels[second] = 1
    store_scores(dataset.workspace, run.id, dataset.image_ids, sigmoid(logits),
                 np.zeros((n, 32), np.float32), logits=logits)

    ids, scores = load_scores(dataset.workspace, run.id)
    assert scores[first] < scores[second] < 1.0
    assert np.array_equal(aligned_logits(dataset, run.id), logits)
    ranking = ranked_images(dataset, run.id)
    assert ranking.positions[:2].tolist() == [second, first]
    assert roc_auc(aligned_logits(dataset, run.id), labels) == 1.0
    tied = torch.sigmoid(torch.tensor(logits, dtype=torch.float32)).numpy()
    assert roc_auc(tied, labels) < 1.0  # what the float32 probabilities gave


def test_a_version_2_workspace_migrates_its_scores_and_runs(tmp_path):
    import sqlite3

    from core.runs import get_run
    from core.score_store import load_logits
    from core.workspace import _MIGRATIONS, SCHEMA_VERSION, Workspace

    path = tmp_path / "v2"
    path.mkdir()
    con = sqlite3.connect(path / "diesight.sqlite")
    con.executescript("BEGIN;" + _MIGRATIONS[1] + _MIGRATIONS[2]
                      + "; PRAGMA user_version = 2; COMMIT;")
    con.execute("INSERT INTO runs (id, created_at, model, config_json, status, threshold) "
                "VALUES (1, 'then', 'tiny', '{\"threshold\": 0.5}', 'finished', 0.5)")
    con.executemany("INSERT INTO scores (run_id, image_id, score) VALUES (1, ?, ?)",
                    [(0, 0.8), (1, 1.0)])
    con.commit()
    con.close()

    workspace = Workspace(path)
    assert workspace.schema_version() == SCHEMA_VERSION
    ids, logits = load_logits(workspace, 1)  # derived from the old probabilities
    assert ids.tolist() == [0, 1]
    assert logits[0] == pytest.approx(np.log(0.8 / 0.2)) and logits[1] == np.inf
    run = get_run(workspace, 1)
    assert run.threshold == 0.5 and run.config.threshold == 0.5
    assert run.train_prior is None and run.logit_offset == 0.0 and run.holdout_bad is None
