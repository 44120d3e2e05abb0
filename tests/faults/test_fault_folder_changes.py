"""Guarantee (so far): after images are deleted, replaced and added, ``scan`` says how many
were removed, changed and new, on one line."""

from __future__ import annotations

import os

import numpy as np
from fault_helpers import cli
from PIL import Image
from scoring_fixtures import IMAGE_SHAPE, make_lot


def test_scan_reports_removed_changed_and_new_images(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=10, bad=6, test=6)
    first = cli("scan", data, home=isolated_home, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Changes:" not in first.stdout  # a first open: nothing to compare with

    for name in ("0.png", "1.png"):
        (data / "train/good_0" / name).unlink()
    replaced = data / "train/bad_1/12.png"
    pixels = np.full(IMAGE_SHAPE, 200, dtype=np.uint8)
    Image.fromarray(pixels).save(replaced)
    stat = replaced.stat()
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    Image.fromarray(pixels).save(data / "test/all_tests/100.png")

    again = cli("scan", data, home=isolated_home, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "Changes:   2 removed, 1 changed, 1 new since the last open" in again.stdout
    unchanged = cli("scan", data, home=isolated_home, timeout=60)
    assert "Changes:" not in unchanged.stdout
