"""ONNX deployment: export a trained run, score the same 64 images with onnxruntime and with
DieSight's torch path, and check they agree (logits to 1e-4 in fp32, identical ranking);
the line-side scorer never imports torch; bad model files give one line.

Parity is checked for the default model (designed_resnet). The dynamo exporter takes
10-30 s per model on the 2-core CI machine, too long to repeat for every registered model in
``make test``; ``tests/benchmarks/bench_onnx.py --all-models`` checks the others.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scoring_fixtures import make_lot

from core.cli import main
from core.dataset import open_dataset
from core.metrics import logit
from core.onnx_scoring import (
    CSV_COLUMNS,
    METADATA_KEYS,
    PARITY_TOLERANCE,
    OnnxModel,
    OnnxModelError,
    score_folder,
)
from core.progress import Cancelled
from core.resize import resize_uint8
from core.training.data import _resize_uint8

REPO = Path(__file__).resolve().parents[2]
N_IMAGES = 64

# ``diesight ARGS`` in an interpreter where torch cannot be imported (as on a line PC without
# it); it also fails if torch was imported some other way.
WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed on this line PC")

sys.meta_path.insert(0, NoTorch())
from app.entry import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A lot of 64 images, a real one-epoch run on it, its torch scores and its ONNX file
    (written by ``diesight export-model``).

    Built once (training and export take seconds); the workspace lives in the fixture's
    own DIESIGHT_HOME, which tests that reach it set again.
    """
    from core.scoring import score_dataset
    from core.training import TrainConfig, train

    base = tmp_path_factory.mktemp("onnx")
    home = base / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIESIGHT_HOME", str(home))
        root = make_lot(base / "lot", good=24, bad=16, test=24)
        dataset = open_dataset(root, workers=1)
        run = train(dataset, TrainConfig(model="designed_resnet", image_size=64, epochs=1,
                                         per_class=4, batch_size=8, device="cpu",
                                         augment=False))
        torch_result = score_dataset(dataset, run, device="cpu")
        model_path = base / "model.onnx"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # the export itself is a CLI test too
            code = main(["export-model", str(root), "--run", str(run.id), "--onnx",
                         str(model_path)])
    relpaths = [dataset.relpaths[p] for p in dataset.positions(torch_result.image_ids)]
    return {"root": root, "home": home, "run": run, "model": model_path,
            "export_code": code, "export_printed": printed.getvalue(),
            "torch_logits": dict(zip(relpaths, torch_result.logits, strict=True)),
            "torch_embeddings": dict(zip(relpaths, torch_result.embeddings, strict=True))}


# -- the resize ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", [(72, 74), (300, 310), (100, 90), (535, 551), (1000, 1030),
                                    (480, 640), (64, 66)])
@pytest.mark.parametrize("target", [(64, 66), (128, 132), (267, 275)])
def test_numpy_resize_is_torchs_bit_for_bit(source, target):
    rng = np.random.default_rng(source[0] * 7 + target[0])
    images = rng.integers(0, 256, size=(3, *source), dtype=np.uint8)
    expected = _resize_uint8(torch.from_numpy(images)[:, None], *target)[:, 0].numpy()
    got = resize_uint8(images, *target)
    if torch.backends.cpu.get_cpu_capability() == "AVX2":  # the kernel core.resize copies
        np.testing.assert_array_equal(got, expected)
    else:  # another build may order the float adds differently: a rare tie rounds apart
        difference = np.abs(got.astype(int) - expected)
        assert difference.max() <= 1 and (difference == 0).mean() >= 0.9999


# -- parity --------------------------------------------------------------------------------


def test_onnx_logits_match_the_torch_scores_on_64_images(exported, tmp_path):
    out = tmp_path / "scores.csv"
    result = score_folder(exported["root"], exported["model"], out)
    torch_logits = exported["torch_logits"]
    assert len(result.relpaths) == N_IMAGES and set(result.relpaths) == set(torch_logits)

    onnx = np.array([result.logits[result.relpaths.index(p)] for p in sorted(torch_logits)])
    reference = np.array([torch_logits[p] for p in sorted(torch_logits)])
    worst = float(np.max(np.abs(onnx - reference)))
    assert worst <= PARITY_TOLERANCE, f"max |logit difference| {worst:.3g}"
    torch_ranking = sorted(torch_logits, key=lambda p: (-torch_logits[p], p))
    assert result.relpaths == torch_ranking
    assert np.ptp(reference) > 100 * PARITY_TOLERANCE  # a ranking worth comparing

    # Called defective the same way, except within the tolerance of the threshold (the
    # run's threshold is a holdout image's own score, which sits exactly on it).
    cut = float(logit(result.threshold))
    clear = np.abs(np.array([torch_logits[p] for p in result.relpaths]) - cut) > PARITY_TOLERANCE
    torch_calls = np.array([torch_logits[p] >= cut for p in result.relpaths])
    np.testing.assert_array_equal(result.defective[clear], torch_calls[clear])


def test_onnx_embeddings_match_torch(exported):
    model = OnnxModel.load(exported["model"])
    relpaths = sorted(exported["torch_embeddings"])[:8]
    images = _network_input(exported["root"], relpaths, model.image_size)
    _, embeddings = model.predict(images)
    expected = np.stack([exported["torch_embeddings"][p] for p in relpaths])
    assert embeddings.shape == (8, 32)
    np.testing.assert_allclose(embeddings, expected, atol=PARITY_TOLERANCE, rtol=0)


def _network_input(root: Path, relpaths: list[str], size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(root / p).convert("L")) for p in relpaths])
    return resize_uint8(pixels, *size)[:, None]


def test_the_batch_dimension_is_dynamic(exported):
    model = OnnxModel.load(exported["model"])
    relpaths = sorted(exported["torch_logits"])[:8]
    images = _network_input(exported["root"], relpaths, model.image_size)
    one = model.predict(images[:1])
    seven = model.predict(images[1:8])
    assert one[0].shape == (1,) and one[1].shape == (1, 32)
    assert seven[0].shape == (7,) and seven[1].shape == (7, 32)
    together = np.concatenate([one[0], seven[0]])
    expected = np.array([exported["torch_logits"][p] for p in relpaths])
    assert np.max(np.abs(together - expected)) <= PARITY_TOLERANCE


def test_the_model_describes_itself_in_its_metadata(exported):
    import onnx

    import core

    run = exported["run"]
    model = OnnxModel.load(exported["model"])
    meta = model.metadata
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["run_id"] == str(run.id) and meta["model"] == "designed_resnet"
    assert meta["diesight_version"] == core.__version__
    assert meta["image_size"] == "64,66" and model.image_size == (64, 66)
    assert meta["input_name"] == "image" and meta["input_dtype"] == "uint8"
    assert "0.449" in meta["input_scaling"] and "0.226" in meta["input_scaling"]
    assert float(meta["logit_offset"]) == pytest.approx(run.logit_offset, abs=1e-12)
    assert run.logit_offset != 0  # the trained run's prior correction is in the graph
    assert model.threshold == pytest.approx(run.threshold, abs=1e-12)

    graph = onnx.load(str(exported["model"])).graph
    (image,) = graph.input
    dims = image.type.tensor_type.shape.dim
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 64, 66]
    assert [o.name for o in graph.output] == ["logit", "embedding"]


# -- the line-side scorer ---------------------------------------------------------------------


def test_score_onnx_cli_writes_a_ranked_csv_without_importing_torch(exported, tmp_path):
    out = tmp_path / "ranked.csv"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "score", str(exported["root"]),
                           "--onnx", str(exported["model"]), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=_env(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr
    assert f"Scored {N_IMAGES} images" in proc.stdout
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == N_IMAGES
    logits = [float(r["logit"]) for r in rows]
    assert logits == sorted(logits, reverse=True)
    assert [int(r["rank"]) for r in rows] == list(range(1, N_IMAGES + 1))
    torch_logits = exported["torch_logits"]
    assert max(abs(float(r["logit"]) - torch_logits[r["path"]]) for r in rows) \
        <= PARITY_TOLERANCE


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, DIESIGHT_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("DISPLAY", None)
    return env


def test_broken_images_are_skipped_and_reported_in_one_line(exported, tmp_path, capsys):
    folder = tmp_path / "lot"
    shutil.copytree(exported["root"] / "test", folder)
    good = len(list(folder.rglob("*.png")))
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes((folder / "all_tests" / "40.png").read_bytes()[:60])
    out = tmp_path / "ranked.csv"
    assert main(["score", str(folder), "--onnx", str(exported["model"]), "--out",
                 str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "Skipped" in line]
    assert len(lines) == 1 and "2 unreadable" in lines[0]
    assert "empty.png" in lines[0] and "cut.png" in lines[0]
    with open(out, newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == good


def test_a_cancelled_scoring_writes_nothing(exported, tmp_path):
    out = tmp_path / "ranked.csv"
    with pytest.raises(Cancelled):
        score_folder(exported["root"], exported["model"], out, batch_size=8,
                     cancel=lambda: True)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_progress_is_reported_per_batch(exported):
    reports = []
    score_folder(exported["root"], exported["model"], None, batch_size=16,
                 progress=reports.append)
    assert reports[-1].stage == "score" and reports[-1].done == reports[-1].total == N_IMAGES


# -- bad input -----------------------------------------------------------------------------


def _not_diesight_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                      [1])])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("kind, needle", [
    ("missing", "not found"), ("empty", "empty"), ("garbage", "cannot be read"),
    ("folder", "is a folder"), ("foreign", "not exported by DieSight")])
def test_a_bad_model_file_is_one_line_without_torch(exported, tmp_path, kind, needle):
    model = tmp_path / "model.onnx"
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "garbage":
        model.write_bytes(b"this is not a protobuf" * 10)
    elif kind == "folder":
        model.mkdir()
    elif kind == "foreign":
        _not_diesight_onnx(model)
    proc = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "score", str(exported["root"]),
                           "--onnx", str(model), "--out", str(tmp_path / "out.csv")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=_env(tmp_path / "home"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("diesight score: ") and needle in line and str(model) in line
    assert not (tmp_path / "out.csv").exists()


def test_onnx_options_that_do_not_apply_are_refused(exported, capsys):
    root = str(exported["root"])
    assert main(["score", root, "--onnx", str(exported["model"]), "--run", "3"]) == 2
    assert "--run cannot be used with --onnx" in capsys.readouterr().err
    assert main(["score", root, "--out", "x.csv"]) == 2
    assert "--out needs --onnx" in capsys.readouterr().err


def test_model_error_type_is_a_value_error_naming_the_file(tmp_path):
    with pytest.raises(OnnxModelError, match="model.onnx"):
        OnnxModel.load(tmp_path / "model.onnx")


def test_export_model_cli(exported):
    run = exported["run"]
    assert exported["export_code"] == 0
    assert f"Wrote run {run.id} (designed_resnet)" in exported["export_printed"]
    assert f"diesight score FOLDER --onnx {exported['model']}" in exported["export_printed"]
    assert OnnxModel.load(exported["model"]).run_id == str(run.id)


def test_export_model_errors_are_one_line(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIESIGHT_HOME", str(exported["home"]))
    assert main(["export-model", str(exported["root"]), "--run", "99", "--onnx",
                 str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diesight export-model: ") and len(err.splitlines()) == 1
    fresh = make_lot(tmp_path / "fresh", good=3, bad=3, test=0)
    assert main(["export-model", str(fresh), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "No runs yet" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
