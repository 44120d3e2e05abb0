"""Flags and relabels: saved at once, with timestamps, and still there after re-opening."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from scoring_fixtures import make_lot

from core.annotations import (
    current_labels,
    flagged_mask,
    flags,
    set_flag,
    set_user_label,
    user_labels,
)
from core.dataset import open_dataset
from core.dbarrays import align_by_id
from core.workspace import Workspace


@pytest.fixture
def dataset(tmp_path):
    return open_dataset(make_lot(tmp_path / "lot"), workers=1)


def _reopened(dataset) -> Workspace:
    return Workspace(dataset.workspace.path)


def test_flags_persist_across_reopen_with_timestamps(dataset):
    ids = dataset.image_ids[[0, 3, 5]]
    assert set_flag(dataset.workspace, ids, True) == 3
    stored = flags(_reopened(dataset))
    assert set(stored) == set(ids.tolist())
    for stamp in stored.values():
        assert datetime.fromisoformat(stamp).tzinfo is not None


def test_reflagging_keeps_the_first_timestamp_and_unflag_clears(dataset):
    first = int(dataset.image_ids[1])
    set_flag(dataset.workspace, [first], True)
    with dataset.workspace.transaction() as con:
        con.execute("UPDATE annotations SET flagged_at = '2001-01-01T00:00:00+00:00'")
    set_flag(dataset.workspace, [first, int(dataset.image_ids[2])], True)
    assert flags(dataset.workspace)[first] == "2001-01-01T00:00:00+00:00"
    set_flag(dataset.workspace, first, False)
    assert first not in flags(_reopened(dataset))
    assert int(dataset.image_ids[2]) in flags(dataset.workspace)


def test_relabels_persist_and_none_restores_the_found_label(dataset):
    good = int(dataset.image_ids[np.flatnonzero(dataset.labels == 0)[0]])
    test_image = int(dataset.image_ids[np.flatnonzero(dataset.labels == -1)[0]])
    set_user_label(dataset.workspace, [good, test_image], 1)
    workspace = _reopened(dataset)
    assert user_labels(workspace) == {good: 1, test_image: 1}
    labels = current_labels(workspace, dataset.image_ids)
    assert labels[dataset.positions([good, test_image])].tolist() == [1, 1]

    set_user_label(workspace, [good, test_image], None)
    assert user_labels(workspace) == {}
    assert np.array_equal(current_labels(workspace, dataset.image_ids), dataset.labels)


def test_reopened_dataset_applies_user_labels(dataset):
    good = int(dataset.image_ids[np.flatnonzero(dataset.labels == 0)[0]])
    set_user_label(dataset.workspace, good, 1)
    reopened = open_dataset(dataset.root, workers=1)
    assert reopened.labels[reopened.positions([good])[0]] == 1


def test_bad_label_and_unknown_id_are_refused_and_nothing_is_written(dataset):
    with pytest.raises(ValueError, match="label"):
        set_user_label(dataset.workspace, dataset.image_ids[:1], 2)
    unknown = int(dataset.image_ids.max()) + 100
    with pytest.raises(ValueError, match=str(unknown)):
        set_flag(dataset.workspace, [int(dataset.image_ids[0]), unknown], True)
    assert flags(dataset.workspace) == {}


def test_flagged_mask_is_aligned_with_ids(dataset):
    set_flag(dataset.workspace, dataset.image_ids[[2, 4]], True)
    mask = flagged_mask(dataset.workspace, dataset.image_ids)
    assert np.flatnonzero(mask).tolist() == [2, 4]


def test_align_by_id_fills_missing_ids():
    out = align_by_id(np.array([5, 1, 9, 3]), np.array([1, 3, 5]), np.array([0.1, 0.3, 0.5]),
                      np.nan)
    assert out[:2].tolist() == [0.5, 0.1] and out[3] == 0.3 and np.isnan(out[2])
    assert align_by_id(np.array([2]), np.array([], dtype=np.int64), np.array([]), -1)[0] == -1
