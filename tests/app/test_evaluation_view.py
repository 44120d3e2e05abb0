"""The Evaluation tab: truth CSV offered and remembered, numbers equal core's, threshold live."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation_view import EvaluationView, found_ground_truth, settings_key
from app.state import AppState
from core.dataset import open_dataset
from core.evaluation import evaluate_run, interval_text, percent, read_truth_csv
from core.runs import create_run, get_run, update_run
from core.score_store import store_scores
from core.training.config import TrainConfig

N_BOOT = 200
WAIT_MS = 20_000


@pytest.fixture
def scored_state(qtbot, demo_folder):
    """The shared demo set with a run whose scores follow the truth, and the state on it."""
    dataset = open_dataset(demo_folder, workers=1)
    truth = read_truth_csv(found_ground_truth(demo_folder))
    label_of = dict(zip(truth.ids, truth.labels.tolist(), strict=True))
    labels = np.array([label_of[i] for i in dataset.ids])
    rng = np.random.default_rng(1)
    scores = np.clip(0.3 * labels + rng.random(len(labels)) * 0.7, 0, 1)
    run_id = create_run(dataset.workspace, TrainConfig(threshold=0.5), device="cpu",
                        parameters=1)
    update_run(dataset.workspace, run_id, status="finished")
    store_scores(dataset.workspace, run_id, dataset.image_ids, scores,
                 np.zeros((len(scores), 2), np.float32))
    state = AppState()
    state.set_dataset(dataset)
    state.set_current_run(get_run(dataset.workspace, run_id))
    return state


def make_view(qtbot, state, settings, show=True) -> EvaluationView:
    view = EvaluationView(state, settings, n_boot=N_BOOT)
    qtbot.addWidget(view)
    view.resize(1200, 900)
    if show:
        view.show()
    return view


def wait_for_result(qtbot, view):
    qtbot.waitUntil(lambda: view.result is not None and not view.busy, timeout=WAIT_MS)
    return view.result


def core_result(state, split=None):
    return evaluate_run(state.dataset, state.current_run, found_ground_truth(state.dataset.root),
                        split, state.threshold, n_boot=N_BOOT)


def test_offers_ground_truth_and_shows_cores_numbers(qtbot, scored_state, settings):
    view = make_view(qtbot, scored_state, settings)
    assert view.offer.isVisible() and view.result is None
    assert "ground_truth.csv" in view.offer_label.text()
    view.offer_button.click()
    shown = wait_for_result(qtbot, view)
    assert view.split == "test"  # the held-out images first: the honest numbers
    expected = core_result(scored_state, "test")
    e = expected.evaluation
    test_images = int((scored_state.dataset.splits == "test").sum())
    assert test_images and len(shown.match.positions) == test_images
    assert view.auc_label.text().startswith(f"ROC AUC {e.auc:.4f}")
    assert f"{e.auc_low:.4f} – {e.auc_high:.4f}" in view.auc_label.text()  # same seed
    rows = view.table_text(view.points_table)
    assert [r[0] for r in rows] == ["1 %", "2 %", "5 %"]
    for row, point in zip(rows, e.operating_points, strict=True):
        assert row[1] == f"{point.threshold:.4g}"
        assert row[3] == f"{point.escapes.count:,} / {point.escapes.total:,}"
        assert row[5] == interval_text(point.escapes.low, point.escapes.high)
    at = e.at_threshold
    confusion = view.table_text(view.confusion_table)
    assert confusion[0][1:3] == [str(at.tp), str(at.escapes.count)]
    assert confusion[1][1:3] == [str(at.false_calls.count), str(at.tn)]
    kinds = view.table_text(view.kind_table)
    assert [r[:4] for r in kinds] == [[g.name, str(g.count), str(g.caught), percent(g.recall)]
                                      for g in at.by_kind]
    reference = {g.name: g for g in e.at_reference.by_kind}
    assert [r[4] for r in kinds] == [str(reference[r[0]].caught) for r in kinds]
    severities = view.table_text(view.severity_table)
    assert [r[0] for r in severities] == [g.name for g in at.by_severity]
    assert len(view.roc.curve.getData()[0]) == len(e.roc_fpr)
    assert not view.offer.isVisible()
    assert settings.value(settings_key(scored_state.dataset.root)) == str(
        found_ground_truth(scored_state.dataset.root))


def test_moving_the_threshold_updates_the_confusion(qtbot, scored_state, settings):
    view = make_view(qtbot, scored_state, settings)
    view.set_truth(found_ground_truth(scored_state.dataset.root))
    wait_for_result(qtbot, view)
    before = view.table_text(view.confusion_table)
    marker_before = view.roc.marker.getData()
    scored_state.set_threshold(0.3)
    assert not view.busy  # no new bootstrap: only the threshold's numbers change
    at = core_result(scored_state, view.split).evaluation.at_threshold
    assert at.threshold == 0.3
    after = view.table_text(view.confusion_table)
    assert after != before
    assert after[0][1:3] == [str(at.tp), str(at.escapes.count)]
    assert after[1][1:3] == [str(at.false_calls.count), str(at.tn)]
    assert view.confusion_title.text().endswith(" 0.3")
    assert view.roc.marker.getData()[0][0] == pytest.approx(at.false_calls.value)
    assert view.roc.marker.getData()[0][0] != marker_before[0][0]
    kinds = view.table_text(view.kind_table)
    assert [r[2] for r in kinds] == [str(g.caught) for g in at.by_kind]
    view.points_table.cellDoubleClicked.emit(1, 0)  # use the 2 % false-call threshold
    assert scored_state.threshold == view.result.evaluation.operating_points[1].threshold


def test_split_and_remembered_truth(qtbot, scored_state, settings):
    path = found_ground_truth(scored_state.dataset.root)
    settings.setValue(settings_key(scored_state.dataset.root), str(path))
    view = make_view(qtbot, scored_state, settings)
    assert view.truth_path == path and not view.offer.isVisible()  # remembered: no offer
    wait_for_result(qtbot, view)
    view.set_split("test")
    qtbot.waitUntil(lambda: view.result is not None and view.result.split == "test",
                    timeout=WAIT_MS)
    expected = core_result(scored_state, "test").evaluation
    assert view.result.evaluation.n_bad == expected.n_bad
    assert view.auc_label.text().startswith(f"ROC AUC {expected.auc:.4f}")
    assert "split 'test'" in view.summary_label.text()
    view.set_split(None)
    assert view.split is None and view.busy


def test_hidden_tab_waits_and_bad_csv_is_explained(qtbot, scored_state, settings, tmp_path):
    view = make_view(qtbot, scored_state, settings, show=False)
    bad = tmp_path / "truth.csv"
    bad.write_text("id,label\nabc,7\n", encoding="utf-8")
    view.set_truth(bad)
    assert not view.busy and view.result is None  # nothing computed for a hidden tab
    view.show()
    qtbot.waitUntil(lambda: "Cannot evaluate" in view.message.text(), timeout=WAIT_MS)
    assert "line 2" in view.message.text() and view.message.isVisible()
    scored_state.set_current_run(None)
    assert "Choose a run" in view.message.text()


def test_a_cancelled_evaluation_runs_again_when_shown(qtbot, scored_state, settings):
    view = make_view(qtbot, scored_state, settings)
    view.set_truth(found_ground_truth(scored_state.dataset.root))
    task = view.evaluations.current
    task.cancelled.emit()  # as if the user pressed Esc (its real end is then ignored)
    assert not view.busy and "cancelled" in view.message.text()
    qtbot.wait(200)
    assert view.result is None
    view.hide()
    view.show()
    wait_for_result(qtbot, view)


def test_roc_legend_is_off_the_curve_at_every_size_and_zoom(qtbot, scored_state, settings):
    view = make_view(qtbot, scored_state, settings)
    view.set_truth(found_ground_truth(scored_state.dataset.root))
    wait_for_result(qtbot, view)
    assert len(view.roc.legend.items) == 3
    for size in ((1200, 900), (700, 600), (420, 560)):
        view.resize(*size)
        for zoomed in (False, True):
            view.zoom_button.setChecked(zoomed)
            qtbot.wait(30)
            axes = view.roc.getPlotItem().vb.sceneBoundingRect()
            assert not view.roc.legend.sceneBoundingRect().intersects(axes), (size, zoomed)
            assert axes.height() >= 150, size  # the curve keeps its room
