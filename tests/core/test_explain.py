"""Heatmaps: maps land where the logit's evidence is, at the image's size, cached per run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scoring_fixtures import make_lot, make_run
from torch import nn
from torchvision.models.resnet import BasicBlock

from core import explain as ex
from core.cli import main
from core.dataset import open_dataset
from core.explain_files import read_id_list
from core.progress import Cancelled

WINDOW = (slice(20, 30), slice(40, 50))  # where the toy model's evidence is


class WindowModel(nn.Module):
    """Logit = the sum of a residual stage's output over WINDOW (a known answer).

    The block's convolutions are zero, so it passes ReLU(x) through unchanged: the only
    evidence for 'bad' lies in WINDOW, and every method must put its maximum there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Sequential(BasicBlock(1, 1))
        for p in self.stage.parameters():
            nn.init.zeros_(p)
        self.stage[0].bn1.weight.data.fill_(1)
        self.stage.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x)[:, 0, WINDOW[0], WINDOW[1]].sum(dim=(1, 2))


@pytest.mark.parametrize("method", ["layercam", "occlusion", "integrated-gradients"])
def test_each_method_points_at_the_evidence(method):
    model = WindowModel()
    attribute = ex.make_attributor(model, method, (64, 66), torch.device("cpu"))
    raw = attribute(torch.ones((2, 1, 64, 66)))
    maps, peaks = ex._to_image_size(raw, (64, 66))
    assert maps.shape == (2, 64, 66) and maps.dtype == np.float16
    for heat in maps:
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        assert 20 - 4 <= row < 30 + 4 and 40 - 4 <= col < 50 + 4, (method, row, col)
        assert heat.max() == pytest.approx(1.0, abs=1e-3)
        far = heat[45:, :20]  # well away from the window
        assert far.max() < 0.05
    assert (peaks > 0).all()


def test_maps_are_resized_to_the_image_size_not_transposed():
    raw = torch.zeros((1, 1, 8, 16))
    raw[0, 0, 1, 12] = 1.0  # top right
    maps, _ = ex._to_image_size(raw, (80, 160))
    row, col = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert row < 20 and col > 110


def test_an_image_without_evidence_gives_a_zero_map_not_nan():
    maps, peaks = ex._to_image_size(torch.full((1, 1, 8, 8), -3.0), (16, 16))
    assert np.isfinite(maps).all() and maps.max() == 0 and peaks[0] == 0


@pytest.mark.parametrize("model_name", ["designed_resnet", "stratified", "resnet18"])
def test_feature_stages_go_from_fine_to_coarse(model_name):
    from core.models import create_model

    model = create_model(model_name).eval()
    sizes = []
    stages = ex.feature_stages(model, (64, 66), torch.device("cpu"))
    hooks = [s.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[2]))
             for s in stages]
    with torch.no_grad():
        model(torch.zeros((1, 1, 64, 66)))
    for hook in hooks:
        hook.remove()
    assert len(stages) >= 3
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


@pytest.fixture
def dataset(tmp_path):
    return open_dataset(make_lot(tmp_path / "lot", good=4, bad=3, test=2), workers=1)


def test_explain_returns_maps_at_image_size_and_caches_them(dataset):
    run = make_run(dataset.workspace)
    ids = dataset.image_ids[[4, 0, 4]]  # any order, repeats allowed
    first = ex.explain(dataset, run, ids, "gradcam")
    assert first.maps.shape == (3, *dataset.image_size) and first.computed == 2
    assert np.array_equal(first.maps[0], first.maps[2])
    assert 0 <= float(first.maps.min()) and float(first.maps.max()) <= 1
    again = ex.explain(dataset, run, dataset.image_ids[[0, 1]], "gradcam")
    assert again.computed == 1  # image 0 came from the cache
    assert np.array_equal(again.maps[0], first.maps[1])
    cache = ex.HeatmapCache(dataset.workspace.run_dir(run.id), "gradcam", run.checkpoint)
    ids_cached, maps_cached, _ = cache.load()
    assert sorted(ids_cached.tolist()) == sorted(dataset.image_ids[[0, 1, 4]].tolist())
    assert maps_cached.dtype == np.float16


def test_read_cached_returns_only_cached_maps_and_computes_nothing(dataset):
    from core.explain_maps import read_cached

    run = make_run(dataset.workspace)
    assert read_cached(dataset, run, dataset.image_ids[:3], "gradcam") == {}
    made = ex.explain(dataset, run, dataset.image_ids[[2, 0]], "gradcam")
    found = read_cached(dataset, run, dataset.image_ids[:3], "gradcam")
    assert sorted(found) == sorted(dataset.image_ids[[0, 2]].tolist())
    heat, peak = found[int(dataset.image_ids[2])]
    assert np.array_equal(heat, made.maps[0]) and peak == pytest.approx(made.peaks[0])
    assert read_cached(dataset, run, dataset.image_ids[:3], "occlusion") == {}


def test_a_new_checkpoint_makes_the_cache_stale(dataset):
    run = make_run(dataset.workspace)
    ex.explain(dataset, run, dataset.image_ids[:2], "gradcam")
    checkpoint = torch.load(run.checkpoint, weights_only=True)
    torch.save(checkpoint, run.checkpoint)  # rewritten, as a resumed run would
    assert ex.explain(dataset, run, dataset.image_ids[:2], "gradcam").computed == 2


def test_cancel_stores_nothing_and_bad_requests_are_refused(dataset):
    run = make_run(dataset.workspace)
    with pytest.raises(Cancelled):
        ex.explain(dataset, run, dataset.image_ids, "gradcam", cancel=lambda: True)
    assert ex.HeatmapCache(dataset.workspace.run_dir(run.id), "gradcam",
                           run.checkpoint).load() is None
    with pytest.raises(ValueError, match="valid methods"):
        ex.explain(dataset, run, dataset.image_ids[:1], "saliency")
    with pytest.raises(ValueError, match="not present"):
        ex.explain(dataset, run, [10_000], "gradcam")


def test_overlay_keeps_the_image_where_there_is_no_evidence():
    image = np.full((10, 10), 100, dtype=np.uint8)
    heat = np.zeros((10, 10))
    heat[2, 3] = 1.0
    out = ex.overlay(image, heat, opacity=0.5)
    assert out.shape == (10, 10, 3) and (out[0, 0] == 100).all()
    assert tuple(out[2, 3]) != (100, 100, 100)


def test_read_id_list_skips_header_comments_and_extra_columns(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,label\n# a note\n\nabc,1\ntrain/x.png,0\n")
    assert read_id_list(path) == ["abc", "train/x.png"]


def test_cli_writes_16_bit_maps_and_overlays(dataset, tmp_path, capsys):
    run = make_run(dataset.workspace)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(dataset.ids[:2]))
    out = tmp_path / "maps"
    code = main(["explain", str(dataset.root), "--run", str(run.id), "--ids", str(ids_file),
                 "--method", "gradcam-fine", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for stem in dataset.ids[:2]:
        grey = Image.open(out / f"{stem}.png")
        assert grey.mode.startswith("I") and grey.size == dataset.image_size[::-1]
        assert np.asarray(grey).max() == 65535
        assert Image.open(out / f"{stem}-overlay.png").mode == "RGB"
    assert "Wrote 2 heatmaps (gradcam-fine" in capsys.readouterr().out
    code = main(["explain", str(dataset.root), "--run", str(run.id), "--split", "nope",
                 "--out", str(out)])
    assert code == 2 and "no images of split 'nope'" in capsys.readouterr().err
