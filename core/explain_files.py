"""Heatmaps as files: the 16-bit map and the overlay PNG per image, and id lists.

Used by ``diesight explain`` and the flagged export with evidence, so both write the same
pictures. Every PNG is written atomically (a killed export leaves no half image).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from core.atomic import atomic_write
from core.explain import Heatmaps, heatmap_png16, overlay


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Image ids (file stems) or paths from a text file: one per line, the first
    comma-separated field; blank lines, ``#`` comments and an ``id`` header are skipped.

    Raises:
        ValueError: the file names no image.
        OSError: the file cannot be read.
    """
    names = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            field = line.split(",", 1)[0].strip().strip('"')
            if field and not field.startswith("#"):
                names.append(field)
    if names and names[0].lower() in ("id", "image", "path"):
        names = names[1:]
    if not names:
        raise ValueError(f"{path} names no images (one id or path per line)")
    return names


def file_stems(dataset, image_ids: np.ndarray) -> list[str]:
    """A file-system-safe name per image: its id (file stem), plus the image id when two
    files of the dataset share a stem (good_0/12.png and bad_1/12.png)."""
    positions = dataset.positions(image_ids)
    stems = [dataset.ids[p] for p in positions]
    repeated = Counter(dataset.ids)
    return [re.sub(r"[^\w.-]", "_", s) + (f"_{i}" if repeated[s] > 1 else "")
            for s, i in zip(stems, np.asarray(image_ids).tolist(), strict=True)]


def save_png(path: Path, pixels: np.ndarray) -> None:
    """Write a uint8 grey/RGB or uint16 grey array as PNG, atomically."""
    if pixels.dtype == np.uint16:
        picture = Image.fromarray(pixels)  # 16-bit grey ('I;16')
    else:
        picture = Image.fromarray(np.ascontiguousarray(pixels))
    with atomic_write(path, "wb") as fh:
        picture.save(fh, format="PNG")


def write_heatmap_pngs(dataset, heatmaps: Heatmaps, out: str | os.PathLike,
                       opacity: float = 0.6, maps: bool = True) -> int:
    """``ID.png`` (16-bit map) and ``ID-overlay.png`` per image into ``out``.

    Args:
        maps: write the 16-bit maps too (False: overlays only, as in the export).

    Returns:
        The number of images written.
    """
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must lie in 0..1, got {opacity}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems = file_stems(dataset, heatmaps.image_ids)
    for image_id, stem, heat in zip(heatmaps.image_ids.tolist(), stems, heatmaps.maps,
                                    strict=True):
        if maps:
            save_png(out / f"{stem}.png", heatmap_png16(heat))
        save_png(out / f"{stem}-overlay.png",
                 overlay(dataset.images[image_id], heat, opacity))
    return len(stems)
