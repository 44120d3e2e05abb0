"""Guarantees: a run whose loss, logits or weights become NaN or infinite fails as
"diverged" (one line that says to lower --lr) and keeps nothing from the diverged epoch;
metrics refuse NaN scores; scoring with a model that gives NaN stores nothing and leaves the
previous scores and embeddings as they were."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from fault_helpers import cli, error_line, integrity_ok
from scoring_fixtures import make_lot, make_run

from core.checkpoint import load_checkpoint, save_checkpoint
from core.cli import EXIT_USER_ERROR
from core.dataset import open_dataset
from core.metrics import confusion_at, roc_auc, roc_curve, threshold_for_max_escapes
from core.runs import get_run
from core.score_store import EMBEDDINGS_FILE, load_scores
from core.workspace import Workspace, workspace_dir_for

DIVERGING = ("--model", "designed_resnet", "--image-size", "64", "--per-class", "16",
             "--epochs", "2", "--lr", "1e4", "--optimizer", "sgd", "--schedule", "constant",
             "--batch-size", "8", "--device", "cpu", "--threads", "1")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_diverging_run_fails_as_diverged_and_keeps_nothing(tmp_path, isolated_home,
                                                             precision):
    data = make_lot(tmp_path / "lot", good=24, bad=16, test=4)
    result = cli("train", data, *DIVERGING, "--precision", precision, home=isolated_home)
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    error_line(result, "Run 1 diverged", "NaN", "lower --lr")

    workspace = Workspace.for_dataset(data)
    run = get_run(workspace, 1)
    assert run.status == "failed" and run.message.startswith("Diverged")
    run_dir = workspace.run_dir(1)
    best = run_dir / "best.pt"
    if run.best_epoch is None:  # diverged in epoch 1: no checkpoint at all
        assert not best.exists() and not (run_dir / "last.pt").exists()
    else:  # a finite earlier epoch is kept, and only it
        weights = load_checkpoint(best)["model"]
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not list(run_dir.glob("*.pending"))

    listed = cli("runs", data, home=isolated_home, timeout=60)
    assert listed.returncode == 0 and "failed" in listed.stdout, listed.stderr
    scored = cli("score", data, "--run", "1", "--device", "cpu", home=isolated_home)
    assert scored.returncode == EXIT_USER_ERROR
    error_line(scored)
    assert integrity_ok(workspace_dir_for(data) / "diesight.sqlite")


def test_metrics_refuse_nan_scores():
    labels = [0, 0, 1, 1]
    for call in (lambda s: roc_auc(s, labels), lambda s: roc_curve(s, labels),
                 lambda s: confusion_at(s, labels, 0.5),
                 lambda s: threshold_for_max_escapes(s, labels, 0)):
        with pytest.raises(ValueError, match="NaN"):
            call([np.nan] * 4)
        with pytest.raises(ValueError, match="NaN"):
            call([0.1, np.nan, 0.3, 0.9])
    assert roc_auc([0.1, 0.2, 0.8, 0.9], labels) == 1.0


def test_scoring_with_a_nan_model_keeps_the_previous_scores_and_embeddings(tmp_path,
                                                                          isolated_home):
    data = make_lot(tmp_path / "lot", good=8, bad=4, test=4)
    dataset = open_dataset(data, workers=1)
    run = make_run(dataset.workspace)
    first = cli("score", data, "--run", run.id, "--device", "cpu", home=isolated_home)
    assert first.returncode == 0, first.stderr
    embeddings = dataset.workspace.run_dir(run.id) / EMBEDDINGS_FILE
    before = hashlib.sha256(embeddings.read_bytes()).hexdigest()
    ids, scores = load_scores(dataset.workspace, run.id)

    # The run's best.pt is replaced by one whose weights are all NaN (a diverged model).
    checkpoint = load_checkpoint(run.checkpoint)
    checkpoint["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                           for k, v in checkpoint["model"].items()}
    save_checkpoint(run.checkpoint, checkpoint)
    again = cli("score", data, "--run", run.id, "--device", "cpu", home=isolated_home)
    assert again.returncode == EXIT_USER_ERROR
    error_line(again, f"Run {run.id}", "NaN", "nothing was stored")

    assert hashlib.sha256(embeddings.read_bytes()).hexdigest() == before
    ids_after, scores_after = load_scores(dataset.workspace, run.id)
    assert np.array_equal(ids, ids_after) and np.array_equal(scores, scores_after)
    assert integrity_ok(dataset.workspace.db_path)
