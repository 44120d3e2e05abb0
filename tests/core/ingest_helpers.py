"""Helpers for the ingest tests (dataset, cache, scan): tiny image folders made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

TINY = (6, 8)  # (height, width) of the test images: decoding stays instant


def write_image(path: Path, value: int = 100, size: tuple[int, int] = TINY) -> Path:
    """A lossless single-value gray PNG/BMP/TIFF (or JPEG, by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def make_kaggle_folder(root: Path, good: int = 4, bad: int = 2, test: int = 3) -> Path:
    """train/good_0, train/bad_1 and test/all_tests, each image a distinct gray value."""
    value = 10
    for folder, prefix, count in (("train/good_0", "g", good), ("train/bad_1", "b", bad),
                                  ("test/all_tests", "t", test)):
        for i in range(count):
            write_image(root / folder / f"{prefix}{i:03d}.png", value)
            value += 3
    return root


def snapshot(root: Path) -> list[tuple[str, int, int, int]]:
    """Every entry under ``root`` (hidden ones too) with its size, mtime and mode."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            entries.append((str(path.relative_to(root)), info.st_size, info.st_mtime_ns,
                            info.st_mode))
    return sorted(entries)
