"""The golden-reference score: marks score above clean parts, a run's fused scores are the
numbers its threshold and figures were measured on, and a run without a bank still scores."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scoring_fixtures import make_lot
from test_training import tiny_config, tiny_model

from core import golden_score as gs
from core.dataset import open_dataset
from core.export import export_scores
from core.metrics import roc_auc
from core.runs import holdout_ids, list_runs
from core.score_store import aligned_logits, aligned_parts
from core.training import trainer


@pytest.fixture
def dataset(demo_folder):
    return open_dataset(demo_folder, workers=1)


@pytest.fixture
def tiny_everywhere(monkeypatch):
    import core.run_model

    monkeypatch.setattr(trainer, "create_model", tiny_model)
    monkeypatch.setattr(core.run_model, "create_model", tiny_model)


def _good_train(dataset) -> np.ndarray:
    return np.flatnonzero((dataset.labels == 0) & (dataset.splits == "train"))


def _plain_spot(image: np.ndarray) -> tuple[int, int]:
    """Top-left of the flattest lit 3x3 spot away from the border."""
    from scipy import ndimage

    mean = ndimage.uniform_filter(image, 7)
    roughness = ndimage.uniform_filter(image ** 2, 7) - mean ** 2
    roughness[(mean < 40) | (mean > 180)] = np.inf
    roughness[:12], roughness[-12:], roughness[:, :12], roughness[:, -12:] = (np.inf,) * 4
    r, c = np.unravel_index(np.argmin(roughness), image.shape)
    return int(r) - 1, int(c) - 1


def test_a_mark_scores_above_the_same_part_clean(dataset):
    goods = _good_train(dataset)
    bank = gs.build_bank(dataset, goods[20:])
    clean = np.stack([gs.reduced(dataset.images[int(dataset.image_ids[p])]) for p in goods[:8]])
    marked = clean.copy()
    for image in marked:  # a 3-px particle on a plain spot of the part
        r, c = _plain_spot(image)
        image[r:r + 3, c:c + 3] = np.clip(image[r:r + 3, c:c + 3] + 100, 0, 255)
    scores = gs.golden_scores(bank, 16, lambda a, b: np.concatenate([clean, marked])[a:b])
    # The score is the largest departure: a mark fainter than a part's own largest one
    # (an edge its neighbours do not share) leaves it about as it was (the neighbours and
    # the alignment may change a little with the mark); most parts' scores it raises.
    assert (scores[8:] > scores[:8] - 0.5).all(), scores
    assert ((scores[8:] > scores[:8] + 1).sum()) >= 5, scores


def test_a_faint_wide_stain_stands_out_at_a_coarser_scale():
    from scipy import ndimage

    # Noisy parts of one product; a stain 10 grey levels deep where the noise is 6, on a
    # mid-grey spot (brightness matching leaves the extremes a little off the golden).
    rng = np.random.default_rng(0)
    product = ndimage.gaussian_filter(rng.normal(0, 1, (134, 138)), 4)
    product = 120 + 30 * product / product.std()

    def parts(count):
        noisy = product + rng.normal(0, 6, (count, *product.shape))
        return np.clip(np.rint(noisy), 0, 255).astype(np.float32)

    goods = parts(60)
    bank = gs.GoldenBank(goods.astype(np.uint8), gs.thumbnails(goods))
    bank.scale_reference = gs._scale_reference(bank, seed=0)
    mid_grey = np.abs(product - product.mean())
    mid_grey[:20], mid_grey[-20:], mid_grey[:, :20], mid_grey[:, -20:] = (np.inf,) * 4
    r, c = np.unravel_index(np.argmin(mid_grey), product.shape)
    rows, cols = np.mgrid[:134, :138]
    stain = 10 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 3.0 ** 2))
    clean = parts(8)
    stained = clean - stain.astype(np.float32)
    peaks = gs.scale_peaks(bank, 16, lambda a, b: np.concatenate([clean, stained])[a:b])
    median, spread = bank.scale_reference[:, 0], bank.scale_reference[:, 1]
    z = (np.log(peaks) - median) / spread   # how far each scale's peak is above good parts
    gain = np.median(z[8:] - z[:8], axis=0)
    assert gain[-1] > gain[0] + 2, gain     # the blurred difference sees it, the sharp one hardly
    scores = gs.combined_scales(bank.scale_reference, peaks)
    # Above the same part clean, unless its own noise peak is higher than the stain.
    assert (scores[8:] > scores[:8]).sum() >= 6, scores


def test_the_heatmap_peaks_at_the_score(dataset):
    goods = _good_train(dataset)
    bank = gs.build_bank(dataset, goods[10:])
    bad = np.flatnonzero(dataset.labels == 1)[:3]
    positions = np.concatenate([goods[:3], bad])
    maps = gs.ratio_maps(bank, dataset, positions)
    assert maps.shape[1:] == bank.images.shape[1:]
    assert np.allclose(maps.max(axis=(1, 2)), bank.scores_for(dataset, positions), rtol=1e-5)
    assert (maps[:, :gs.BORDER] == 0).all() and (maps[:, :, -gs.BORDER:] == 0).all()


def test_a_bank_part_is_not_its_own_reference(dataset):
    goods = _good_train(dataset)
    bank = gs.build_bank(dataset, goods)
    in_bank = bank.scores_for(dataset, goods[:6])
    # Compared with itself the difference would be exactly 0 everywhere.
    assert (in_bank > 0.5).all(), in_bank
    lonely = gs.GoldenBank(bank.images[:1], bank.thumbnails[:1])
    with pytest.raises(ValueError, match="no image other than"):
        lonely.scores_for(dataset, goods[:1])


def test_fusion_puts_the_golden_score_on_the_logit_scale():
    logits = np.array([-3.0, -2.0, 0.0, 4.0])
    golden = np.array([2.0, 3.0, 8.0, 30.0])
    reference = gs.reference_from(0.3, logits[:2], golden[:2])
    alone = gs.FusionReference(0.0, reference.logit_median, reference.logit_spread,
                               reference.golden_median, reference.golden_spread)
    assert np.array_equal(alone.fuse(logits, golden), logits)
    only_golden = gs.FusionReference(1.0, reference.logit_median, reference.logit_spread,
                                     reference.golden_median, reference.golden_spread)
    # The good parts' median golden score lands on their median logit.
    assert only_golden.fuse([0.0], [np.sqrt(2.0 * 3.0)])[0] == pytest.approx(-2.5)
    fused = reference.fuse(logits, golden)
    assert np.all(np.diff(fused) > 0)


def test_bank_round_trip_and_a_run_without_one(tmp_path, dataset):
    bank = gs.build_bank(dataset, _good_train(dataset)[:30])
    bank.reference = gs.FusionReference(0.3, -2.0, 1.5, 1.2, 0.4)
    path = tmp_path / gs.GOLDEN_FILE
    gs.save_bank(path, bank)
    again = gs.load_bank(path)
    assert np.array_equal(again.images, bank.images)
    assert np.array_equal(again.thumbnails, bank.thumbnails)
    assert np.array_equal(again.scale_reference, bank.scale_reference)
    assert again.reference == bank.reference
    assert gs.load_bank(tmp_path / "none.npz") is None


def test_a_bank_from_before_the_scales_is_refused_in_one_line(tmp_path, dataset):
    bank = gs.build_bank(dataset, _good_train(dataset)[:12])
    path = tmp_path / gs.GOLDEN_FILE
    np.savez(path, images=bank.images, thumbnails=bank.thumbnails,
             reference=np.array("null"))  # the file as the earlier version wrote it
    with pytest.raises(ValueError, match="train the run again") as error:
        gs.load_bank(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_golden_run_reports_and_stores_the_fused_score(dataset, tiny_everywhere, tmp_path):
    from core.scoring import score_dataset

    trainer.train(dataset, tiny_config(golden_weight=0.5, epochs=2, seed=3))
    run = list_runs(dataset.workspace)[-1]
    bank = gs.load_bank(gs.bank_path(run.checkpoint))
    assert bank is not None and bank.reference.weight == 0.5
    assert 0 < len(bank.images) <= np.count_nonzero(_good_train(dataset))

    reports = []
    score_dataset(dataset, run.id, device="cpu", progress=reports.append)
    assert any(r.stage == "golden" for r in reports)
    logits = aligned_logits(dataset, run.id)
    position = {int(i): p for p, i in enumerate(dataset.image_ids)}
    holdout = np.array([position[int(i)] for i in holdout_ids(dataset.workspace, run.id)])
    # The run's holdout AUC is the AUC of the very scores stored for those images.
    assert roc_auc(logits[holdout], dataset.labels[holdout]) == pytest.approx(run.val_auc)
    parts = aligned_parts(dataset, run.id)  # what each fused score was made of
    assert np.allclose(bank.reference.fuse(parts.network_logits, parts.golden), logits)
    assert (parts.golden > 0).all()
    assert gs.load_reference(run.checkpoint) == bank.reference
    line = gs.explain_parts(bank.reference, parts.network_logits[0], parts.golden[0])
    probability = 1 / (1 + np.exp(-logits[0]))
    assert "(weight 0.5)" in line and line.endswith(f"defect probability {probability:.3f}")
    # Calibrated on the holdout: its mean probability is its defect share.
    holdout_probability = 1 / (1 + np.exp(-logits[holdout]))
    assert holdout_probability.mean() == pytest.approx(dataset.labels[holdout].mean(), abs=0.02)

    # The scores export carries both parts beside the fused score.
    export_scores(dataset, run.id, tmp_path / "scores.csv")
    with open(tmp_path / "scores.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    first = dataset.relpaths.index(row["path"])
    assert float(row["network_logit"]) == parts.network_logits[first]
    assert float(row["golden_score"]) == parts.golden[first]

    # A lot from another camera (other size), scored with the run from its own workspace:
    # the bank beside the run's checkpoint is used, at the bank's size.
    lot = open_dataset(make_lot(tmp_path / "lot"), workers=1)
    assert lot.image_size != dataset.image_size
    scored = score_dataset(lot, f"{dataset.root}@{run.id}", device="cpu")
    assert scored.golden is not None and np.isfinite(scored.golden).all()

    # Without its bank (a run stopped before it was built) it scores with the network alone.
    gs.bank_path(run.checkpoint).unlink()
    reports.clear()
    score_dataset(dataset, run.id, device="cpu", progress=reports.append)
    assert any("scored by the network alone" in r.message for r in reports)
    assert not any(r.stage == "golden" for r in reports)
    assert not np.allclose(aligned_logits(dataset, run.id), logits)
    assert np.allclose(aligned_logits(dataset, run.id), parts.network_logits)
    assert aligned_parts(dataset, run.id) is None


def test_onnx_export_of_a_golden_run_says_what_it_leaves_out(dataset, tiny_everywhere,
                                                             tmp_path):
    import onnx

    from core.onnx_export import export_onnx

    trainer.train(dataset, tiny_config(golden_weight=0.4, epochs=1))
    run = list_runs(dataset.workspace)[-1]
    reports = []
    path = export_onnx(run, tmp_path / "model.onnx", progress=reports.append)
    notices = [r.message for r in reports if r.stage == "notice"]
    assert any("does not contain" in m and "network's alone" in m for m in notices), notices
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["threshold_source"] == "default" and metadata["threshold"] == "0.5"
    assert metadata["golden_weight"].startswith("0.4:")


def test_golden_heatmaps_show_a_departure_and_need_a_golden_run(dataset, tiny_everywhere):
    from core.explain import explain

    trainer.train(dataset, tiny_config(golden_weight=0.5, epochs=1, seed=1))
    run = list_runs(dataset.workspace)[-1]
    bad = dataset.image_ids[np.flatnonzero(dataset.labels == 1)[:3]]
    maps = explain(dataset, run.id, bad, "golden", store=False)
    assert maps.maps.shape == (3, *dataset.image_size)
    assert float(maps.maps.max()) == pytest.approx(1.0, abs=1e-3)
    trainer.train(dataset, tiny_config(epochs=1))
    plain = list_runs(dataset.workspace)[-1]
    with pytest.raises(ValueError, match="no golden reference"):
        explain(dataset, plain.id, bad, "golden")


def test_the_fused_heatmap_shows_the_part_that_weighs_more(dataset, tiny_everywhere):
    from core.explain import explain, fused_map_source
    from core.scoring import score_dataset

    trainer.train(dataset, tiny_config(golden_weight=0.5, epochs=1, seed=5))
    run = list_runs(dataset.workspace)[-1]
    score_dataset(dataset, run.id, device="cpu")
    parts = aligned_parts(dataset, run.id)
    reference = gs.load_reference(run.checkpoint)
    network, golden = reference.parts(parts.network_logits, parts.golden)
    assert np.allclose(network + golden + reference.logit_median,
                       reference.blend(parts.network_logits, parts.golden))
    lead = network - golden
    # The images where the network leads most and where the golden reference does.
    chosen = np.concatenate([np.argsort(lead)[:3], np.argsort(lead)[-3:]])
    assert (lead[chosen[:3]] < 0).all() and (lead[chosen[3:]] > 0).all()
    ids = dataset.image_ids[chosen]
    fused = explain(dataset, run, ids, "fused", device="cpu", store=False)
    by_golden = explain(dataset, run, ids, "golden", device="cpu", store=False)
    by_network = explain(dataset, run, ids, "integrated-gradients", device="cpu", store=False)
    assert np.array_equal(fused.maps[:3], by_golden.maps[:3])
    assert np.allclose(fused.maps[3:].astype(np.float32),
                       by_network.maps[3:].astype(np.float32), atol=2e-3)
    # The viewer's status line names the part whose map it shows.
    assert [fused_map_source(dataset, run, i) for i in ids] == ["golden"] * 3 + [
        "integrated-gradients"] * 3
