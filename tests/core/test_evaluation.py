"""Evaluation against a truth CSV: hand-checked numbers, intervals, bad CSVs and the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.cli import main
from core.dataset import open_dataset
from core.demodata import generate_demo_data
from core.evaluation import (
    TruthCsvError,
    auc_bins,
    bootstrap_aucs,
    evaluate,
    evaluate_run,
    read_truth_csv,
    recall_by_group,
    replicate_aucs,
    threshold_at_false_call_rate,
    wilson_interval,
)
from core.runs import create_run, get_run, update_run
from core.score_store import store_scores
from core.training.config import TrainConfig

# Ten parts, scored by hand:          good g1..g6 and bad b1..b4
#   g1 0.05  g2 0.10  g3 0.20  g4 0.30  g5 0.60  g6 0.90
#   b1 0.40 crack subtle (0.20)    b2 0.70 crack medium (0.50)
#   b3 0.80 particle obvious (0.90)  b4 0.30 particle obvious (0.75), tied with g4
HAND = [("g1", 0, "none", 0.0, 0.05), ("g2", 0, "none", 0.0, 0.10),
        ("g3", 0, "none", 0.0, 0.20), ("g4", 0, "none", 0.0, 0.30),
        ("g5", 0, "none", 0.0, 0.60), ("g6", 0, "none", 0.0, 0.90),
        ("b1", 1, "crack", 0.20, 0.40), ("b2", 1, "crack", 0.50, 0.70),
        ("b3", 1, "particle", 0.90, 0.80), ("b4", 1, "particle", 0.75, 0.30)]


def _hand_columns():
    ids, labels, kinds, severities, scores = zip(*HAND, strict=True)
    return list(ids), np.array(labels), list(kinds), np.array(severities), np.array(scores)


def test_hand_checked_numbers():
    _, labels, kinds, severities, scores = _hand_columns()
    e = evaluate(scores, labels, kinds, severities, threshold=0.5, fpr_points=(0.2, 0.5),
                 n_boot=200)
    # AUC: bad-over-good pairs of 6 x 4 = 24. b1 beats g1-g4 (4), b2 and b3 beat g1-g5
    # (5 + 5), b4 beats g1-g3 and ties g4 (3.5): 17.5 / 24.
    assert e.n_good == 6 and e.n_bad == 4
    assert e.auc == pytest.approx(17.5 / 24)
    # At 0.5: called bad g5, g6, b2, b3 -> escapes b1, b4; false calls g5, g6.
    at = e.at_threshold
    assert (at.escapes.count, at.escapes.total, at.false_calls.count, at.false_calls.total,
            at.tp, at.tn) == (2, 4, 2, 6, 2, 4)
    # Per kind at 0.5: crack b2 of b1, b2; particle b3 of b3, b4.
    assert [(g.name, g.count, g.caught) for g in at.by_kind] == [("crack", 2, 1),
                                                                ("particle", 2, 1)]
    # Per band: subtle b1 missed; medium b2 caught; obvious b3 caught, b4 missed.
    assert [(g.name, g.count, g.caught) for g in at.by_severity] == [
        ("subtle", 1, 0), ("medium", 1, 1), ("obvious", 2, 1)]
    # <= 20 % false calls allows 1 of 6: above the 2nd-highest good (0.60) the next score
    # is b2's 0.70: calls g6, b2, b3 -> 1 false call, escapes b1 and b4.
    low, high = e.operating_points
    assert low.threshold == 0.70
    assert (low.false_calls.count, low.escapes.count, low.escapes.total) == (1, 2, 4)
    # <= 50 % allows 3: above the 4th-highest good (0.20) comes 0.30 (g4 and b4):
    # calls g4, g5, g6 and every bad part.
    assert high.threshold == 0.30
    assert (high.false_calls.count, high.escapes.count) == (3, 0)
    # 2 % of 6 goods allows none: only above g6's 0.90, which no part reaches.
    reference = e.at_reference
    assert reference.threshold > 0.90 and reference.escapes.count == 4
    assert [(g.name, g.caught) for g in reference.by_kind] == [("crack", 0), ("particle", 0)]


def test_wilson_interval_known_values():
    # 0 of 10: the upper end is z^2 / (n + z^2) = 3.8415 / 13.8415.
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(2, 4) == (pytest.approx(0.1500, abs=1e-4),
                                     pytest.approx(0.8500, abs=1e-4))
    assert wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_escape_interval_at_operating_points_is_wilsons():
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.2).astype(int)
    scores = rng.random(400) * 0.6 + 0.4 * labels
    e = evaluate(scores, labels, n_boot=0)
    for point in e.operating_points:
        escapes = point.escapes
        assert escapes.total == labels.sum()
        assert escapes.count == int((scores[labels == 1] < point.threshold).sum())
        assert (escapes.low, escapes.high) == wilson_interval(escapes.count, escapes.total)
        assert escapes.low <= escapes.value <= escapes.high


def test_false_call_threshold_is_the_lowest_allowed():
    rng = np.random.default_rng(5)
    scores = np.round(rng.random(300), 2)  # many ties
    bad = rng.random(300) < 0.3
    n_good = int((~bad).sum())
    for rate in (0.0, 0.01, 0.05, 0.2, 1.0):
        t = threshold_at_false_call_rate(scores, bad, rate)
        allowed = math.floor(rate * n_good + 1e-9)
        assert int((~bad & (scores >= t)).sum()) <= allowed
        lower = scores[scores < t]
        if len(lower):  # one step lower would exceed the allowance
            assert int((~bad & (scores >= lower.max())).sum()) > allowed


def test_recall_per_kind_matches_a_direct_count():
    rng = np.random.default_rng(11)
    n = 5000
    labels = (rng.random(n) < 0.15).astype(int)
    kinds = rng.choice(["crack", "particle", "bent_lead", "", "rotated"], n).tolist()
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    severities = np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
    e = evaluate(scores, labels, kinds, severities, threshold=0.45, n_boot=0)
    for result in (e.at_threshold, e.at_reference):
        caught = scores >= result.threshold
        for group in result.by_kind:
            name = "" if group.name == "(not given)" else group.name
            members = (labels == 1) & (np.array(kinds) == name)
            assert (group.count, group.caught) == (members.sum(), (members & caught).sum())
        assert sum(g.count for g in result.by_kind) == labels.sum()
        subtle = (labels == 1) & (severities < 0.35)
        assert result.by_severity[0].name == "subtle"
        assert (result.by_severity[0].count, result.by_severity[0].caught) == (
            subtle.sum(), (subtle & caught).sum())
        assert sum(g.count for g in result.by_severity) == labels.sum()


def test_recall_by_group_sorts_by_name_and_names_the_unknown():
    groups = recall_by_group(["b", "", "a", "b"], np.array([True, False, True, False]))
    assert [(g.name, g.count, g.caught, g.recall) for g in groups] == [
        ("(not given)", 1, 0, 0.0), ("a", 1, 1, 1.0), ("b", 2, 1, 0.5)]


def test_each_bootstrap_replicate_is_the_auc_of_its_resample():
    rng = np.random.default_rng(2)
    good, bad = np.round(rng.random(40), 1), np.round(rng.random(15) + 0.3, 1)  # with ties
    sizes, lo_bin, hi_bin = auc_bins(good, bad)
    good_draws = rng.integers(0, len(good), size=(6, len(good)))
    bad_draws = rng.integers(0, len(bad), size=(6, len(bad)))
    edges = np.concatenate([[0], np.cumsum(sizes)])
    counts = np.array([np.histogram(row, bins=edges)[0] for row in good_draws])
    aucs = replicate_aucs(counts, lo_bin, hi_bin, bad_draws)
    sorted_good = np.sort(good)  # the draws index the goods in ascending order
    truth = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    expected = [roc_auc_score(truth, np.r_[sorted_good[g], bad[b]])
                for g, b in zip(good_draws, bad_draws, strict=True)]
    np.testing.assert_allclose(aucs, expected, rtol=0, atol=1e-12)


def test_bootstrap_interval_contains_the_auc_and_narrows_with_more_data():
    rng = np.random.default_rng(7)

    def interval(n):
        labels = (rng.random(n) < 0.2).astype(int)
        scores = rng.normal(labels * 1.0, 1.0)
        e = evaluate(scores, labels, n_boot=1000, seed=1)
        assert e.auc_low < e.auc < e.auc_high
        return e.auc_high - e.auc_low

    small, large = interval(200), interval(5000)
    assert large < small / 3  # the width shrinks like 1 / sqrt(n): 5 times here


def test_bootstrap_matches_a_plain_resampling_loop():
    rng = np.random.default_rng(4)
    good, bad = rng.normal(0, 1, 300), rng.normal(1, 1, 60)
    fast = bootstrap_aucs(good, bad, n_boot=2000, seed=0)
    truth = np.r_[np.zeros(300), np.ones(60)]
    slow = [roc_auc_score(truth, np.r_[rng.choice(good, 300), rng.choice(bad, 60)])
            for _ in range(400)]
    assert abs(fast.mean() - np.mean(slow)) < 0.006
    assert np.std(fast) == pytest.approx(np.std(slow), rel=0.2)
    assert np.array_equal(fast, bootstrap_aucs(good, bad, n_boot=2000, seed=0))  # seeded


def test_one_class_gives_no_auc_but_still_counts():
    e = evaluate([0.1, 0.7, 0.2], [0, 0, 0], threshold=0.5)
    assert math.isnan(e.auc) and e.n_boot == 0 and len(e.roc_fpr) == 0
    assert e.at_threshold.false_calls.count == 1
    assert math.isnan(e.at_threshold.escapes.value)
    json.dumps(e.to_dict(), allow_nan=False)  # NaN written as null
    assert "n/a" in e.format_text()


# -- the truth CSV ---------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("image,label\n1,0\n", "no 'id' column (found: image, label)"),
    ("id,label\n1,0\n2,maybe\n", "line 3: label 'maybe' is not 0/1 or good/bad"),
    ("id,label\n1,0\n2,1\n1,1\n", "line 4: id '1' repeats line 2"),
    ("id,label\n1.jpg,0\n1.png,1\n", "line 3: id '1' repeats line 2"),
    ("id,label\n,1\n", "line 2: empty id"),
    ("id,label,severity\n1,1,high\n", "line 2: severity 'high' is not a number"),
    ("id,label\n", "no rows"),
    ("id,defect_type,label\n1,crack\n", "line 2: 2 cell(s), the header needs 3"),
])
def test_bad_truth_csv_gives_one_line_naming_file_and_row(tmp_path, text, message):
    path = _write(tmp_path / "truth.csv", text)
    with pytest.raises(TruthCsvError) as info:
        read_truth_csv(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_truth_csv(tmp_path):
    with pytest.raises(TruthCsvError, match="cannot read truth CSV .*nope.csv"):
        read_truth_csv(tmp_path / "nope.csv")


def test_truth_csv_with_only_id_and_label(tmp_path):
    path = _write(tmp_path / "t.csv", "\ufeffID, Label\nA1,good\ntrain/bad_1/B2.jpg,bad\n\n"
                                      "c3,1\n")
    truth = read_truth_csv(path)
    assert truth.ids == ["A1", "B2", "c3"] and truth.labels.tolist() == [0, 1, 1]
    assert truth.kinds is None and truth.severities is None and truth.splits is None


# -- a run of a demo set, and the CLI ---------------------------------------------------------

@pytest.fixture(scope="module")
def demo60(tmp_path_factory):
    """60 demo images in the Kaggle layout (12 of them unlabelled in test/all_tests)."""
    out = tmp_path_factory.mktemp("eval") / "demo"
    generate_demo_data(out, n=60, bad_fraction=0.2, seed=3, workers=1)
    return out


@pytest.fixture
def scored(demo60):
    """The demo set with a run whose stored scores follow the true labels, with noise."""
    dataset = open_dataset(demo60, workers=1)
    truth = read_truth_csv(demo60 / "ground_truth.csv")
    label_of = dict(zip(truth.ids, truth.labels.tolist(), strict=True))
    labels = np.array([label_of[i] for i in dataset.ids])
    scores = np.clip(0.35 * labels + np.random.default_rng(0).random(len(labels)) * 0.65, 0, 1)
    run_id = create_run(dataset.workspace, TrainConfig(threshold=0.45), device="cpu",
                        parameters=1)
    update_run(dataset.workspace, run_id, status="finished")
    store_scores(dataset.workspace, run_id, dataset.image_ids, scores,
                 np.zeros((len(scores), 2), np.float32))
    return dataset, get_run(dataset.workspace, run_id), truth, scores, labels


def test_evaluate_run_covers_the_unlabelled_test_images(scored):
    dataset, run, truth, scores, labels = scored
    result = evaluate_run(dataset, run, truth.path, n_boot=100)
    splits = np.asarray(dataset.splits)
    assert (dataset.labels[splits == "test"] == -1).all()  # the folder does not label them
    assert len(result.match.positions) == 60 and result.warnings == []
    assert result.evaluation.threshold == 0.45  # the run's
    assert result.evaluation.auc == pytest.approx(roc_auc_score(labels, scores))
    test = evaluate_run(dataset, run, truth.path, split="test", n_boot=100)
    in_test = splits == "test"
    assert len(test.match.positions) == in_test.sum() == 12
    assert test.evaluation.n_bad == labels[in_test].sum()
    assert test.evaluation.auc == pytest.approx(roc_auc_score(labels[in_test],
                                                              scores[in_test]))


def test_evaluate_run_reports_rows_without_image_or_score(scored, tmp_path):
    dataset, run, truth, scores, labels = scored
    rows = [f"{i},{label}" for i, label in zip(truth.ids, truth.labels, strict=True)]
    path = _write(tmp_path / "t.csv", "\n".join(["id,label", *rows, "ghost1,1", "ghost2,0"]))
    unscored = dataset.image_ids[:3]
    keep = ~np.isin(dataset.image_ids, unscored)
    store_scores(dataset.workspace, run.id, dataset.image_ids[keep], scores[keep],
                 np.zeros((int(keep.sum()), 2), np.float32))
    result = evaluate_run(dataset, run, path, threshold=0.6, n_boot=0)
    assert len(result.match.positions) == 57
    assert result.match.no_image == ["ghost1", "ghost2"]
    assert sorted(result.match.no_score) == sorted(dataset.ids[p] for p in range(3))
    assert len(result.warnings) == 2 and "ghost1" in result.warnings[0]
    assert result.evaluation.threshold == 0.6


def test_cli_evaluate_prints_and_writes_json(scored, tmp_path, capsys):
    dataset, run, truth, scores, labels = scored
    out = tmp_path / "eval" / "result.json"
    assert main(["evaluate", str(dataset.root), "--run", str(run.id), "--truth",
                 str(truth.path), "--json", str(out), "--bootstrap", "300"]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["evaluated"] == 60 and data["n_good"] + data["n_bad"] == 60
    assert data["auc"]["value"] == pytest.approx(roc_auc_score(labels, scores))
    assert f"ROC AUC {data['auc']['value']:.4f}" in text
    assert [p["max_false_call_rate"] for p in data["operating_points"]] == [0.01, 0.02, 0.05]
    kinds = {g["name"] for g in data["at_threshold"]["by_kind"]}
    bad_kinds = {k for k, label in zip(truth.kinds, truth.labels, strict=True) if label}
    assert kinds == bad_kinds and "Recall by defect kind" in text
    assert main(["evaluate", str(dataset.root), "--run", str(run.id), "--truth",
                 str(truth.path), "--split", "test", "--bootstrap", "0"]) == 0
    assert "12 images:" in capsys.readouterr().out


def test_cli_evaluate_with_an_id_label_csv(scored, tmp_path, capsys):
    dataset, run, truth, _, _ = scored
    path = tmp_path / "kaggle.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label"])
        writer.writerows([i, label] for i, label in zip(truth.ids[:30], truth.labels[:30],
                                                        strict=True))
        writer.writerow(["not-an-image", 0])
    assert main(["evaluate", str(dataset.root), "--run", str(run.id), "--truth", str(path),
                 "--bootstrap", "50"]) == 0
    captured = capsys.readouterr()
    assert "30 images:" in captured.out and "Recall by" not in captured.out
    assert "warning: 1 truth row(s) name no image" in captured.err


def test_cli_evaluate_errors_are_one_line(scored, tmp_path, capsys):
    dataset, run, truth, _, _ = scored
    bad = _write(tmp_path / "bad.csv", "id,label\nx,2\n")
    assert main(["evaluate", str(dataset.root), "--run", str(run.id), "--truth",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "line 2" in err
    assert main(["evaluate", str(dataset.root), "--run", str(run.id), "--truth",
                 str(truth.path), "--split", "val"]) == 2
    assert "split 'val'" in capsys.readouterr().err.splitlines()[-1]
    other = create_run(dataset.workspace, TrainConfig(), device="cpu", parameters=1)
    update_run(dataset.workspace, other, status="finished")
    assert main(["evaluate", str(dataset.root), "--run", str(other), "--truth",
                 str(truth.path)]) == 2
    assert "diesight score" in capsys.readouterr().err.splitlines()[-1]
