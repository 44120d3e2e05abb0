"""Tests for the "vertical" demo style (core/demo_vertical.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core import demo_vertical as dv

H, W = 267, 275
KINDS = list(dv.DEFECT_WEIGHTS)
# Kinds whose size or contrast follows the severity (the others are all-or-nothing).
GRADED = [k for k in KINDS if k not in ("reversed", "empty_pocket", "two_parts", "lying_across")]


def _render(seed: int, defect: str | None = None, severity: float = 0.7):
    return dv.render_part(np.random.default_rng(seed), defect, severity)


def _outside(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    keep = np.ones(img.shape, bool)
    keep[y:y + h, x:x + w] = False
    return img[keep]


def test_module_interface():
    assert dv.NAME == "vertical"
    assert dv.DESCRIPTION and "\n" not in dv.DESCRIPTION
    assert 12 <= len(dv.DEFECT_WEIGHTS) <= 16
    assert all(w > 0 for w in dv.DEFECT_WEIGHTS.values())
    assert 0.25 <= dv.SUBTLE_FRACTION <= 0.35
    assert isinstance(dv.JPEG_QUALITY, int) and 1 <= dv.JPEG_QUALITY <= 100


def test_good_part_is_a_plausible_grayscale_frame():
    img, box = _render(0)
    assert img.shape == (H, W) and img.dtype == np.uint8
    assert box is None
    assert 60 < img.mean() < 200, "mid-gray tape, not a dark or blown-out frame"
    assert img.std() > 15, "structure, not a flat field"


def test_all_three_products_are_drawn():
    names = {dv.draw_look(np.random.default_rng(s)).part.family.name for s in range(60)}
    assert names == {"minimelf", "sod123f", "tantalum"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("severity", [0.0, 0.2, 1.0])
def test_every_defect_renders_with_a_box_inside_the_frame(kind, severity):
    for seed in range(3):
        img, box = _render(seed, kind, severity)
        assert img.shape == (H, W) and img.dtype == np.uint8
        x, y, w, h = box
        assert all(isinstance(n, int) for n in box)
        assert w > 0 and h > 0, (kind, seed)
        assert x >= 0 and y >= 0 and x + w <= W and y + h <= H, (kind, box)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_part_differs_from_its_good_twin_only_inside_the_box(kind):
    for seed in (3, 4, 5, 6):
        good, _ = _render(seed)
        bad, box = _render(seed, kind, 0.15 if seed % 2 else 0.8)
        np.testing.assert_array_equal(_outside(bad, box), _outside(good, box))
        x, y, w, h = box
        assert (bad[y:y + h, x:x + w] != good[y:y + h, x:x + w]).any(), (kind, seed)


@pytest.mark.parametrize("kind", KINDS)
def test_box_is_not_much_larger_than_the_visible_change(kind):
    """A box around everything changed before the noise, not a fixed or oversized one (its
    edges may hold changes too faint to survive rounding to 8 bits)."""
    for seed in (7, 8):
        good, _ = _render(seed)
        bad, box = _render(seed, kind, 0.8)
        changed = np.abs(bad.astype(int) - good.astype(int)) > 0
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        x, y, w, h = box
        assert cols[0] - x <= 8 and x + w - 1 - cols[-1] <= 8, (kind, box)
        assert rows[0] - y <= 8 and y + h - 1 - rows[-1] <= 8, (kind, box)


@pytest.mark.parametrize("kind", GRADED)
def test_low_severity_changes_less_than_high(kind):
    def change(severity: float) -> float:
        total = 0.0
        for seed in range(10, 16):
            good, _ = _render(seed)
            bad, _ = _render(seed, kind, severity)
            total += np.abs(bad.astype(float) - good).sum()
        return total
    assert change(0.1) < change(0.9)


def test_same_generator_state_gives_the_same_image():
    a, box_a = _render(42, "cracked_body", 0.5)
    b, box_b = _render(42, "cracked_body", 0.5)
    np.testing.assert_array_equal(a, b)
    assert box_a == box_b
    assert not np.array_equal(_render(42)[0], _render(43)[0])


def test_good_parts_vary_in_brightness_and_pose():
    images = [_render(s)[0] for s in range(20)]
    means = [img.mean() for img in images]
    assert np.std(means) > 8, "exposure drifts from image to image"
    assert not np.array_equal(images[0], images[1])


@pytest.mark.parametrize("defect, severity", [("no_such_defect", 0.5), ("particle", -0.1),
                                              ("particle", 1.5), (None, 2.0)])
def test_bad_input_is_refused(defect, severity):
    with pytest.raises(ValueError):
        dv.render_part(np.random.default_rng(0), defect, severity)


def test_render_time_per_image():
    _render(0, "particle")                       # warm the per-process caches
    start = time.process_time()
    n = 120
    for i in range(n):
        _render(i, KINDS[i % len(KINDS)] if i % 4 == 0 else None)
    per_image = (time.process_time() - start) / n
    assert per_image < 0.010, f"{per_image * 1e3:.1f} ms per image"


def test_mean_brightness_does_not_separate_good_from_bad():
    """Exposure drift must outweigh what a defect does to the mean (ROC AUC near 0.5)."""
    plan = np.random.default_rng(2024)
    weights = np.array([dv.DEFECT_WEIGHTS[k] for k in KINDS], float)
    means, labels = [], []
    for i in range(300):
        bad = i % 2 == 1
        kind = KINDS[plan.choice(len(KINDS), p=weights / weights.sum())] if bad else None
        low = plan.random() < dv.SUBTLE_FRACTION
        severity = plan.uniform(0.12, 0.35) if low else plan.uniform(0.35, 1.0)
        img, _ = _render(10_000 + i, kind, severity)
        means.append(img.mean())
        labels.append(int(bad))
    auc = roc_auc_score(labels, means)
    assert 0.4 < auc < 0.65, auc
