"""Tests for the synthetic Nexperia-style demo data generator (core/demodata.py)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from core.cli import main as cli_main
from core.demodata import (
    DEFECT_TYPES,
    FOLDERS,
    GROUND_TRUTH_COLUMNS,
    GROUND_TRUTH_NAME,
    IMAGE_SHAPE,
    PRODUCTS,
    generate_demo_data,
    render_part,
)
from core.progress import Cancelled

HEX_NAME = re.compile(r"^[0-9a-f]{32}\.jpg$")

# Defects that change only what lies inside their box; the others move or remove the part,
# so its old place changes too.
LOCAL_DEFECTS = [d for d in DEFECT_TYPES if d not in ("rotated", "shifted", "empty_pocket")]


def _ground_truth(root: Path) -> list[dict[str, str]]:
    with open(root / GROUND_TRUTH_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


def _files(root: Path) -> dict[str, Path]:
    """All files under the image folders, hidden ones included, by name."""
    return {p.name: p for folder in set(FOLDERS.values()) for p in (root / folder).iterdir()}


def _image_path(root: Path, row: dict[str, str]) -> Path:
    return root / FOLDERS[row["split"], int(row["label"])] / f"{row['id']}.jpg"


def _pixels(root: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(Image.open(p)) for name, p in _files(root).items()}


# --- layout and ground truth (on the shared session set) ---------------------------------------

def test_layout_has_kaggle_folders_and_hex_jpeg_names(demo_folder):
    files = _files(demo_folder)
    assert len(files) == 240
    assert all(HEX_NAME.match(name) for name in files), "only complete <32 hex>.jpg files"
    for sub in ("train/good_0", "train/bad_1", "test/all_tests"):
        assert any((demo_folder / sub).iterdir()), sub


def test_images_are_8bit_grayscale_jpegs_of_kaggle_size(demo_folder):
    for path in list(_files(demo_folder).values())[:20]:
        with Image.open(path) as im:
            assert im.format == "JPEG"
            assert im.mode == "L"
            assert im.size == (IMAGE_SHAPE[1], IMAGE_SHAPE[0])


def test_ground_truth_matches_folders(demo_folder):
    rows = _ground_truth(demo_folder)
    with open(demo_folder / GROUND_TRUTH_NAME, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == GROUND_TRUTH_COLUMNS
    assert {f"{r['id']}.jpg" for r in rows} == set(_files(demo_folder))
    bad_on_disk = {p.stem for p in (demo_folder / "train/bad_1").iterdir()}
    test_on_disk = {p.stem for p in (demo_folder / "test/all_tests").iterdir()}
    assert {r["id"] for r in rows if r["label"] == "1" and r["split"] == "train"} == bad_on_disk
    assert {r["id"] for r in rows if r["split"] == "test"} == test_on_disk
    for r in rows:
        assert _image_path(demo_folder, r).is_file()


def test_ground_truth_describes_defects(demo_folder):
    h, w = IMAGE_SHAPE
    for r in _ground_truth(demo_folder):
        box = [r[f"bbox_{k}"] for k in "xywh"]
        if r["label"] == "0":
            assert r["defect_type"] == "none" and box == ["", "", "", ""]
            assert float(r["severity"]) == 0
        else:
            assert r["defect_type"] in DEFECT_TYPES
            assert 0 < float(r["severity"]) <= 1
            x, y, bw, bh = map(int, box)
            assert bw > 0 and bh > 0 and 0 <= x and x + bw <= w and 0 <= y and y + bh <= h


def test_bad_and_test_fractions(demo_folder):
    rows = _ground_truth(demo_folder)
    assert sum(r["label"] == "1" for r in rows) == 60          # 240 * 0.25 exactly
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == 48                                      # 20% of each class
    assert sum(r["label"] == "1" for r in test) == 12


def test_mean_brightness_does_not_separate_good_from_bad(demo_folder):
    rows = _ground_truth(demo_folder)
    brightness = [np.asarray(Image.open(_image_path(demo_folder, r))).mean() for r in rows]
    labels = [int(r["label"]) for r in rows]
    assert roc_auc_score(labels, brightness) < 0.8


def test_good_images_vary_in_exposure(demo_folder):
    rows = [r for r in _ground_truth(demo_folder) if r["label"] == "0"]
    means = [np.asarray(Image.open(_image_path(demo_folder, r))).mean() for r in rows]
    assert np.std(means) > 3 and max(means) - min(means) > 15


# --- determinism ---------------------------------------------------------------------------

def test_same_seed_gives_identical_files_other_seed_differs(tmp_path):
    a = generate_demo_data(tmp_path / "a", n=24, seed=5, workers=1)
    generate_demo_data(tmp_path / "b", n=24, seed=5, workers=1)
    generate_demo_data(tmp_path / "c", n=24, seed=6, workers=1)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a.keys() == files_b.keys()
    assert all(files_a[k].read_bytes() == files_b[k].read_bytes() for k in files_a)
    assert (tmp_path / "a" / GROUND_TRUTH_NAME).read_bytes() == \
        (tmp_path / "b" / GROUND_TRUTH_NAME).read_bytes()
    assert not files_a.keys() & _files(tmp_path / "c").keys()
    assert a.images == 24


def test_worker_count_does_not_change_output(tmp_path):
    generate_demo_data(tmp_path / "one", n=40, bad_fraction=0.3, seed=11, workers=1)
    generate_demo_data(tmp_path / "two", n=40, bad_fraction=0.3, seed=11, workers=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys()
    assert all(one[k].read_bytes() == two[k].read_bytes() for k in one)
    assert (tmp_path / "one" / GROUND_TRUTH_NAME).read_bytes() == \
        (tmp_path / "two" / GROUND_TRUTH_NAME).read_bytes()


def test_render_part_is_a_pure_function_of_the_generator_state():
    first, box1 = render_part(np.random.default_rng(3), "sot23", "crack", 0.5)
    again, box2 = render_part(np.random.default_rng(3), "sot23", "crack", 0.5)
    other, _ = render_part(np.random.default_rng(4), "sot23", "crack", 0.5)
    assert first.shape == IMAGE_SHAPE and first.dtype == np.uint8
    assert np.array_equal(first, again) and box1 == box2
    assert not np.array_equal(first, other)


# --- defects -----------------------------------------------------------------------------------

def _inside(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)


@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_every_defect_shows_inside_its_box(defect, product):
    for seed, severity in ((1, 0.9), (2, 0.15)):
        good, none_box = render_part(np.random.default_rng(seed), product, None)
        bad, box = render_part(np.random.default_rng(seed), product, defect, severity)
        assert none_box is None
        assert box is not None and box[2] > 0 and box[3] > 0
        diff = np.abs(good.astype(int) - bad.astype(int))
        inside = diff[_inside(box)]
        assert inside.max() >= 40, f"{defect} at severity {severity} barely changes its box"
        if severity > 0.5:
            assert inside.mean() > 2 or inside.max() >= 120


@pytest.mark.parametrize("defect", LOCAL_DEFECTS)
def test_local_defects_leave_the_rest_of_the_image_alone(defect):
    for seed, product in enumerate(sorted(PRODUCTS)):
        for severity in (0.2, 0.8):
            good, _ = render_part(np.random.default_rng(seed), product, None)
            bad, box = render_part(np.random.default_rng(seed), product, defect, severity)
            diff = np.abs(good.astype(int) - bad.astype(int))
            diff[_inside(box)] = 0
            assert diff.max() <= 2, f"{defect} on {product} changed pixels outside its box"


def test_render_part_rejects_unknown_names():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="defect"):
        render_part(rng, "sod123", "scratched")
    with pytest.raises(ValueError, match="product"):
        render_part(rng, "qfn64", None)
    with pytest.raises(ValueError, match="severity"):
        render_part(rng, "sod123", "crack", 1.5)


# --- input checks, cancel, CLI --------------------------------------------------------------------

def test_refuses_a_folder_that_holds_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_demo_data(tmp_path, n=4)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(bad_fraction=1.5), dict(seed=-1),
                                    dict(test_fraction=1.0), dict(workers=0)])
def test_rejects_bad_parameters(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_demo_data(tmp_path / "x", **({"n": 4} | kwargs))


def test_progress_reaches_the_total(tmp_path):
    reports = []
    generate_demo_data(tmp_path / "p", n=20, seed=2, workers=1, progress=reports.append)
    assert reports and reports[-1].done == reports[-1].total == 20


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_stops_early_and_leaves_a_consistent_folder(tmp_path, workers):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) >= 2

    out = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        generate_demo_data(out, n=400, seed=4, workers=workers, cancel=cancel)
    files = _files(out)
    assert 0 < len(files) < 400
    assert all(HEX_NAME.match(name) for name in files), "no temporary or partial files"
    rows = _ground_truth(out)
    assert {f"{r['id']}.jpg" for r in rows} == set(files)
    for path in files.values():
        Image.open(path).load()   # every file left behind is a complete JPEG


def test_cli_writes_a_set_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["demo-data", str(out), "--n", "12", "--bad-fraction", "0.25",
                     "--seed", "3", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "12 images" in printed and GROUND_TRUTH_NAME in printed
    assert sum(r["label"] == "1" for r in _ground_truth(out)) == 3


def test_cli_reports_a_non_empty_folder_clearly(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("")
    assert cli_main(["demo-data", str(tmp_path), "--n", "4"]) == 2
    assert "not empty" in capsys.readouterr().err
