"""Helpers for the scoring, ranking, export and CLI tests: a tiny lot and a tiny run.

The lot is a Kaggle-layout folder of small random images (bad ones carry a bright
spot), generated in milliseconds. The run is made by hand (run row + checkpoint of a
freshly initialised model), so these tests do not depend on training speed; the CLI test
trains a real one-epoch run separately.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.checkpoint import save_checkpoint
from core.models import create_model
from core.models.base import count_parameters
from core.runs import create_run, get_run, update_run
from core.training.config import TrainConfig

IMAGE_SHAPE = (72, 74)  # (rows, cols): small, and not the run's size, so resizing is used
RUN_IMAGE_SIZE = 64      # the smallest size the registered models accept


def make_lot(root: Path, *, good: int = 10, bad: int = 6, test: int = 8, seed: int = 0,
             first_id: int = 0) -> Path:
    """Write a Kaggle-layout folder: train/good_0, train/bad_1, test/all_tests (PNG).

    File names are consecutive numbers from ``first_id`` (Kaggle ids), so ids are unique
    across the whole lot.
    """
    rng = np.random.default_rng(seed)
    next_id = first_id
    for folder, count, spot in (("train/good_0", good, False), ("train/bad_1", bad, True),
                                ("test/all_tests", test, None)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            has_spot = bool(rng.integers(2)) if spot is None else spot
            pixels = rng.integers(60, 120, size=IMAGE_SHAPE, dtype=np.uint8)
            if has_spot:
                r, c = rng.integers(10, IMAGE_SHAPE[0] - 20, size=2)
                pixels[r:r + 8, c:c + 8] = 250
            Image.fromarray(pixels).save(root / folder / f"{next_id}.png")
            next_id += 1
    return root


def make_run(workspace, *, model: str = "designed_resnet", seed: int = 0,
             threshold: float = 0.5):
    """A finished run with a best.pt of a freshly initialised model (no training)."""
    config = TrainConfig(model=model, image_size=RUN_IMAGE_SIZE, epochs=1, per_class=8,
                         device="cpu", threshold=threshold, seed=seed)
    torch.manual_seed(seed)
    net = create_model(model)
    run_id = create_run(workspace, config, device="cpu", parameters=count_parameters(net))
    best = save_checkpoint(workspace.run_dir(run_id) / "best.pt",
                           {"model": net.state_dict(), "epoch": 1,
                            "config": config.to_dict(), "best_auc": 0.5})
    update_run(workspace, run_id, status="finished", checkpoint=best, best_epoch=1,
               val_auc=0.75, escapes=1, false_calls=2, train_seconds=75.0)
    return get_run(workspace, run_id)
