"""Ranked queries: order by score, each filter, splits, current labels and flags."""

from __future__ import annotations

import numpy as np
import pytest
from scoring_fixtures import make_lot, make_run

from core.annotations import set_flag, set_user_label
from core.dataset import open_dataset
from core.ranking import RankedImage, ranked_images
from core.runs import save_validation_ids
from core.scoring import NoScoresError, store_scores


@pytest.fixture
def scored(tmp_path):
    """A lot with a run whose scores are known: a fixed permutation with one tie."""
    dataset = open_dataset(make_lot(tmp_path / "lot"), workers=1)
    run = make_run(dataset.workspace)
    n = len(dataset.image_ids)
    scores = np.random.default_rng(5).permutation(n) / n
    scores[3] = scores[4]  # a tie, broken by ascending image id
    store_scores(dataset.workspace, run.id, dataset.image_ids, scores,
                 np.zeros((n, 32), np.float32))
    return dataset, run, scores


def test_all_images_ranked_by_score_descending(scored):
    dataset, run, scores = scored
    ranking = ranked_images(dataset, run.id)
    assert len(ranking) == len(dataset.image_ids) and ranking.unscored == 0
    expected = sorted(range(len(scores)), key=lambda p: (-scores[p], dataset.image_ids[p]))
    assert ranking.positions.tolist() == expected
    assert np.array_equal(ranking.scores, scores[expected])
    assert np.all(np.diff(ranking.scores) <= 0)


def test_rows_describe_the_image(scored):
    dataset, run, scores = scored
    ranking = ranked_images(dataset, run, threshold=0.5)
    top = ranking[0]
    assert isinstance(top, RankedImage)
    p = top.position
    assert top == RankedImage(p, int(dataset.image_ids[p]), dataset.relpaths[p],
                              float(scores[p]), int(dataset.labels[p]),
                              int(scores[p] >= 0.5), False)
    assert [row.position for row in ranking[:3]] == ranking.positions[:3].tolist()
    assert [row.relpath for row in ranking] == ranking.relpaths


@pytest.mark.parametrize("name, label", [("bad", 1), ("good", 0), ("unlabelled", -1)])
def test_label_filters(scored, name, label):
    dataset, run, _ = scored
    ranking = ranked_images(dataset, run.id, filter=name)
    assert len(ranking) == int(np.count_nonzero(dataset.labels == label)) > 0
    assert (ranking.labels == label).all()


def test_flagged_filter_and_relabels_apply_at_once(scored):
    dataset, run, _ = scored
    flagged = dataset.image_ids[[1, 7]]
    set_flag(dataset.workspace, flagged, True)
    ranking = ranked_images(dataset, run.id, filter="flagged")
    assert sorted(ranking.image_ids.tolist()) == sorted(flagged.tolist())
    assert ranking.flagged.all()

    test_image = int(dataset.image_ids[np.flatnonzero(dataset.labels == -1)[0]])
    set_user_label(dataset.workspace, test_image, 1)
    assert test_image in ranked_images(dataset, run.id, filter="bad").image_ids
    assert test_image not in ranked_images(dataset, run.id, filter="unlabelled").image_ids


def test_disagreements_at_a_threshold(scored):
    dataset, run, scores = scored
    for threshold in (0.3, 0.7):
        ranking = ranked_images(dataset, run.id, filter="disagreements", threshold=threshold)
        predicted = (scores >= threshold).astype(int)
        expected = np.flatnonzero((dataset.labels >= 0) & (dataset.labels != predicted))
        assert sorted(ranking.positions.tolist()) == expected.tolist()
        assert (ranking.predictions != ranking.labels).all()


def test_split_filters(scored):
    dataset, run, _ = scored
    test_rows = ranked_images(dataset, run.id, split="test")
    assert len(test_rows) == int(np.count_nonzero(dataset.splits == "test")) > 0
    assert all(row.relpath.startswith("test/") for row in test_rows)
    assert len(ranked_images(dataset, run.id, split="val")) == 0
    held_out = dataset.image_ids[[0, 2, 9]]
    save_validation_ids(dataset.workspace, run.id, held_out)
    validation = ranked_images(dataset, run.id, filter="bad", split="validation")
    expected = [i for i in held_out if dataset.labels[dataset.positions([i])[0]] == 1]
    assert sorted(validation.image_ids.tolist()) == sorted(expected)


def test_unscored_images_are_left_out_and_counted(scored):
    dataset, run, scores = scored
    n = len(dataset.image_ids)
    store_scores(dataset.workspace, run.id, dataset.image_ids[2:], scores[2:],
                 np.zeros((n - 2, 32), np.float32))
    ranking = ranked_images(dataset, run.id)
    assert len(ranking) == n - 2 and ranking.unscored == 2


def test_bad_queries_are_refused(scored):
    dataset, run, _ = scored
    with pytest.raises(ValueError, match="filter"):
        ranked_images(dataset, run.id, filter="nonsense")
    with pytest.raises(ValueError, match="split"):
        ranked_images(dataset, run.id, split="nonsense")
    unscored = make_run(dataset.workspace, seed=1)
    with pytest.raises(NoScoresError, match="diesight score"):
        ranked_images(dataset, unscored.id)


# --- one ranking, prediction and filter implementation, shared by views and the CLI ---

def test_predictions_call_bad_at_or_above_the_threshold_and_mark_unscored():
    from core.ranking import predictions

    scores = np.array([0.1, 0.5, np.nan, 0.9])
    assert predictions(scores, 0.5).tolist() == [0, 1, -1, 1]
    assert predictions(scores, 0.95).tolist() == [0, 0, -1, 0]


def test_rank_order_by_logit_then_image_id_leaving_out_unscored():
    from core.ranking import rank_order

    logits = np.array([0.0, 3.0, np.nan, 3.0, -1.0])
    image_ids = np.array([10, 12, 13, 11, 14])
    assert rank_order(logits, image_ids).tolist() == [3, 1, 0, 4]


def test_filter_positions_use_the_labels_given_and_counts_match_the_filters(scored):
    from core.ranking import FILTERS, filter_counts, filter_positions, predictions

    dataset, run, scores = scored
    labels = dataset.labels.copy()
    labels[0] = 1 - labels[0] if labels[0] >= 0 else 1  # a relabel the dataset lacks
    bad = filter_positions(dataset, labels, "bad", "train")
    assert bad.tolist() == np.flatnonzero((labels == 1) & (dataset.splits == "train")).tolist()
    with pytest.raises(ValueError):
        filter_positions(dataset, labels, "flagged")
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[[1, 2]] = True
    within = np.ones(len(labels), dtype=bool)
    counts = filter_counts(labels, predictions(scores, 0.5), flagged, within)
    assert set(counts) == set(FILTERS)
    assert counts["all"] == len(labels) and counts["flagged"] == 2
    assert counts["bad"] == int((labels == 1).sum())


def test_split_names_come_from_one_table(scored):
    from core.ranking import VALIDATION_SPLIT, split_choices, split_label, split_text

    dataset = scored[0]
    assert split_label("val") != split_label(VALIDATION_SPLIT)
    assert split_label("lot July") == "Lot July"
    keys = [key for key, _ in split_choices(dataset, held_out=True)]
    assert keys[:4] == ["train", "val", "test", "unlabelled"] and keys[-1] == VALIDATION_SPLIT
    assert split_text("train", 3) == "split Train · held out by run 3"
