"""Nearest training images in a run's embedding space."""

from __future__ import annotations

import numpy as np
import pytest
from scoring_fixtures import make_lot, make_run

from core.dataset import open_dataset
from core.neighbours import NeighbourIndex
from core.runs import save_validation_ids
from core.score_store import NoScoresError, store_scores


@pytest.fixture
def setup(tmp_path):
    dataset = open_dataset(make_lot(tmp_path / "lot", good=8, bad=5, test=4), workers=1)
    run = make_run(dataset.workspace)
    n = len(dataset.image_ids)
    # Embeddings on a line: the distance between images i and j is |i - j|.
    embeddings = np.zeros((n, 3), dtype=np.float32)
    embeddings[:, 0] = np.arange(n)
    scores = np.linspace(0.01, 0.99, n)
    store_scores(dataset.workspace, run.id, dataset.image_ids, scores, embeddings)
    return dataset, run, scores


def test_nearest_are_training_images_by_embedding_distance(setup):
    dataset, run, scores = setup
    assert list(dataset.splits[:4]) == ["test"] * 4  # positions 0-3: test images
    held_out = [int(dataset.image_ids[7])]
    save_validation_ids(dataset.workspace, run.id, np.array(held_out), np.array(held_out))
    index = NeighbourIndex(dataset, run.id)
    found = index.nearest(8, k=4)
    positions = [n.position for n in found]
    # Not itself, not the held-out image 7, not test images; nearest first.
    assert 8 not in positions and 7 not in positions
    assert all(dataset.splits[p] == "train" and dataset.labels[p] >= 0 for p in positions)
    assert [n.distance for n in found] == sorted(n.distance for n in found)
    assert found[0].distance == pytest.approx(1.0)
    assert positions[0] == 9 and set(positions) == {9, 6, 10, 5}
    # A test image asks too (its neighbours are still training images).
    assert [n.position for n in index.nearest(2, k=2)] == [4, 5]
    assert found[0].score == pytest.approx(scores[found[0].position])
    assert found[0].label == int(dataset.labels[found[0].position])


def test_label_filter_and_relabels_and_unscored(setup):
    dataset, run, _ = setup
    labels = np.array(dataset.labels)
    good_only = NeighbourIndex(dataset, run.id, labels).nearest(4, k=20, label=0)
    assert len(good_only) == 8 and all(n.label == 0 for n in good_only)
    assert good_only[0].position == 9  # 5..8 are bad
    labels[5] = 0  # the user relabelled image 5 good
    relabelled = NeighbourIndex(dataset, run.id, labels).nearest(4, k=1, label=0)
    assert relabelled[0].position == 5 and relabelled[0].label == 0
    with pytest.raises(NoScoresError):
        NeighbourIndex(dataset, make_run(dataset.workspace).id)
