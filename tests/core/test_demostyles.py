"""Tests for the demo styles ("fabs") of the demo-data generator (core/demostyles.py)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

import core.demodata as demodata
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
from core.demostyles import DEFAULT_STYLE, STYLES, get_style

STYLE_DEFECTS = [(s.name, d) for s in STYLES.values() for d in s.defect_types]

# Recorded from the generator before styles existed (commit ceeacb4): the default style must
# keep drawing exactly these images. Hashes of raw pixels and of the ground truth, so that a
# different JPEG encoder version does not break the check.
BEFORE_STYLES_SET_PIXELS = "d70dd5275d1ed3119512b83d3425363fa10c1f0d0aa2fd654397a54a94f9cc3e"
BEFORE_STYLES_SET_TRUTH = "afd30fd035a04787662bc5426129eebdaeab5cb5d7d42f998ab5849922ffcc92"
BEFORE_STYLES_RENDERS = "d415c63b3687fd0719bd10c4c9c60116a978fdad379509d9d58cdc670e0a19a5"


def _ground_truth(root: Path) -> list[dict[str, str]]:
    with open(root / GROUND_TRUTH_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _inside_frame(box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    return w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= IMAGE_SHAPE[1] \
        and y + h <= IMAGE_SHAPE[0]


# --- the registry ----------------------------------------------------------------------------

def test_registry_has_the_default_first_and_sane_parameters():
    assert DEFAULT_STYLE == "mixed" == next(iter(STYLES))
    assert {"mixed", "single"} <= STYLES.keys()
    for name, style in STYLES.items():
        assert style.name == name
        assert style.description and "\n" not in style.description
        assert style.defect_types and all(w > 0 for w in style.defect_weights.values())
        assert 0 < style.subtle_fraction < 1
        assert 1 <= style.jpeg_quality <= 100


def test_unknown_style_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown demo style 'fab9'.*mixed.*single"):
        get_style("fab9")


def test_generate_rejects_an_unknown_style_before_writing(tmp_path):
    with pytest.raises(ValueError, match="mixed"):
        generate_demo_data(tmp_path / "x", n=4, style="fab9")
    assert not (tmp_path / "x").exists()


# --- every style renders every one of its defects ------------------------------------------

@pytest.mark.parametrize(("style", "defect"), STYLE_DEFECTS)
def test_style_renders_its_defects_with_a_box_in_the_frame(style, defect):
    render = get_style(style).render
    for seed, severity in ((1, 0.9), (2, 0.15)):
        good, none_box = render(np.random.default_rng(seed), None, 0.5)
        bad, box = render(np.random.default_rng(seed), defect, severity)
        for image in (good, bad):
            assert image.shape == IMAGE_SHAPE and image.dtype == np.uint8
        assert none_box is None
        assert box is not None and _inside_frame(box), f"{style}/{defect}: box {box}"


@pytest.mark.parametrize(("style", "defect"), STYLE_DEFECTS)
def test_style_render_is_deterministic(style, defect):
    render = get_style(style).render
    first, box1 = render(np.random.default_rng(9), defect, 0.5)
    again, box2 = render(np.random.default_rng(9), defect, 0.5)
    other, _ = render(np.random.default_rng(10), defect, 0.5)
    assert np.array_equal(first, again) and box1 == box2
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("defect", get_style("single").defect_types)
def test_single_style_defects_show_inside_their_box(defect):
    """Noise, blur and low contrast must not wash a defect out completely: the good twin
    (same generator state) differs from the bad image inside the box, by less when subtle."""
    render = get_style("single").render
    for seed, severity, least in ((1, 0.9, 40), (2, 0.15, 20)):
        good, _ = render(np.random.default_rng(seed), None, 0.5)
        bad, (x, y, w, h) = render(np.random.default_rng(seed), defect, severity)
        diff = np.abs(good.astype(int) - bad.astype(int))[y:y + h, x:x + w]
        assert diff.max() >= least, f"{defect} at severity {severity} barely shows"


# --- the default style did not change ----------------------------------------------------------

def test_default_style_draws_the_same_set_as_before_styles(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(demodata, "_write_jpeg",
                        lambda path, pixels, quality: written.append((path, pixels, quality)))
    generate_demo_data(tmp_path / "d", n=40, bad_fraction=0.5, seed=0, workers=1)
    digest = hashlib.sha256()
    for path, pixels, _ in sorted(written, key=lambda w: (w[0].parent.name, w[0].name)):
        digest.update(f"{path.parent.name}/{path.name}".encode())
        digest.update(pixels.tobytes())
    assert digest.hexdigest() == BEFORE_STYLES_SET_PIXELS
    assert {quality for *_, quality in written} == {90}
    truth = (tmp_path / "d" / GROUND_TRUTH_NAME).read_bytes()
    assert hashlib.sha256(truth).hexdigest() == BEFORE_STYLES_SET_TRUTH


def test_render_part_draws_the_same_pixels_as_before_styles():
    digest = hashlib.sha256()
    for product in sorted(PRODUCTS):
        for defect in (None, *DEFECT_TYPES):
            pixels, box = render_part(np.random.default_rng(7), product, defect, 0.6)
            digest.update(pixels.tobytes())
            digest.update(repr(box).encode())
    assert digest.hexdigest() == BEFORE_STYLES_RENDERS


def test_naming_the_default_style_changes_nothing(tmp_path):
    generate_demo_data(tmp_path / "implicit", n=12, bad_fraction=0.5, seed=3, workers=1)
    generate_demo_data(tmp_path / "named", n=12, bad_fraction=0.5, seed=3, workers=1,
                       style=DEFAULT_STYLE)
    assert _all_bytes(tmp_path / "implicit") == _all_bytes(tmp_path / "named")


# --- data sets per style -----------------------------------------------------------------------

@pytest.mark.parametrize("style", list(STYLES))
def test_style_set_is_deterministic_and_uses_its_own_defects(tmp_path, style):
    summary = generate_demo_data(tmp_path / "a", n=30, bad_fraction=0.5, seed=4, workers=1,
                                 style=style)
    generate_demo_data(tmp_path / "b", n=30, bad_fraction=0.5, seed=4, workers=1, style=style)
    assert _all_bytes(tmp_path / "a") == _all_bytes(tmp_path / "b")
    kinds = get_style(style).defect_types
    assert summary.style == style and tuple(summary.defects) == kinds
    with open(tmp_path / "a" / GROUND_TRUTH_NAME, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == GROUND_TRUTH_COLUMNS
    rows = _ground_truth(tmp_path / "a")
    bad = [r for r in rows if r["label"] == "1"]
    assert len(bad) == 15 and all(r["defect_type"] in kinds for r in bad)
    assert sum(summary.defects.values()) == 15


def test_worker_processes_draw_the_same_style(tmp_path):
    """Workers get the style by name and look it up again: the same bytes as in-process."""
    generate_demo_data(tmp_path / "one", n=24, bad_fraction=0.5, seed=8, workers=1,
                       style="single")
    generate_demo_data(tmp_path / "two", n=24, bad_fraction=0.5, seed=8, workers=2,
                       style="single")
    assert _all_bytes(tmp_path / "one") == _all_bytes(tmp_path / "two")


def test_styles_draw_different_images_for_the_same_seed(tmp_path):
    sets = {}
    for style in STYLES:
        generate_demo_data(tmp_path / style, n=6, seed=2, workers=1, style=style)
        sets[style] = _all_bytes(tmp_path / style)
    images = [tuple(v for k, v in files.items() if k.endswith(".jpg")) for files in sets.values()]
    assert len(set(images)) == len(images)


def test_single_style_plans_its_own_mix_and_more_subtle_defects():
    mixed, single = get_style("mixed"), get_style("single")
    share = {}
    for style in (mixed, single):
        jobs = demodata._plan(6000, 1.0, 0.2, 0, style)
        assert {j.defect for j in jobs} == set(style.defect_types)
        share[style.name] = np.mean([j.severity < 0.35 for j in jobs])
    assert abs(share["single"] - single.subtle_fraction) < 0.03
    assert abs(share["mixed"] - mixed.subtle_fraction) < 0.03
    assert single.subtle_fraction >= 0.25 > mixed.subtle_fraction
    assert set(single.defect_types) != set(mixed.defect_types)


def test_single_style_looks_like_another_fab():
    """One product, a brighter and flatter picture with more noise than the mixed style."""
    stats = {}
    for name in ("mixed", "single"):
        frames = [get_style(name).render(np.random.default_rng(s), None, 0.5)[0]
                  for s in range(12)]
        grain = [np.abs(np.diff(f.astype(float), axis=1))[:40].mean() for f in frames]
        stats[name] = (np.mean(frames), np.mean([np.percentile(f, 99) - np.percentile(f, 1)
                                                 for f in frames]), np.mean(grain))
    (m_mean, m_range, m_grain), (s_mean, s_range, s_grain) = stats["mixed"], stats["single"]
    assert s_mean > m_mean + 10
    assert s_range < m_range
    assert s_grain > m_grain
    assert get_style("single").jpeg_quality < get_style("mixed").jpeg_quality


@pytest.mark.parametrize("style", list(STYLES))
def test_brightness_alone_does_not_separate_bad_from_good(tmp_path, style):
    generate_demo_data(tmp_path / style, n=240, bad_fraction=0.25, seed=7, workers=1,
                       style=style)
    rows = _ground_truth(tmp_path / style)
    means = [np.asarray(Image.open(tmp_path / style / FOLDERS[r["split"], int(r["label"])]
                                   / f"{r['id']}.jpg")).mean() for r in rows]
    assert roc_auc_score([int(r["label"]) for r in rows], means) < 0.75


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_writes_the_requested_style(tmp_path, capsys):
    out = tmp_path / "single"
    assert cli_main(["demo-data", str(out), "--n", "16", "--bad-fraction", "0.5", "--seed", "1",
                     "--workers", "1", "--style", "single"]) == 0
    assert "16 images (style single)" in capsys.readouterr().out
    kinds = set(get_style("single").defect_types)
    assert {r["defect_type"] for r in _ground_truth(out) if r["label"] == "1"} <= kinds
    generate_demo_data(tmp_path / "api", n=16, bad_fraction=0.5, seed=1, workers=1,
                       style="single")
    assert _all_bytes(out) == _all_bytes(tmp_path / "api")


def test_cli_unknown_style_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "nope"
    assert cli_main(["demo-data", str(out), "--n", "4", "--style", "fab9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "fab9" in err and all(name in err for name in STYLES)
    assert not out.exists()


def test_cli_help_describes_every_style(capsys):
    with pytest.raises(SystemExit):
        cli_main(["demo-data", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "13 defects" not in text
    for style in STYLES.values():
        assert f"{style.name}: {' '.join(style.description.split())}" in text
