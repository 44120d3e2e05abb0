"""The flagged export with evidence: a heatmap overlay per flagged image and a contact sheet.

``export_flagged_evidence(dataset, run, OUT)`` writes, for the rows of the flagged-defect
list (``core.export.flagged_positions``, the same images in the same order):

* ``OUT/<id>-overlay.png``: the image with the run's heatmap over it (``core.explain``);
* ``OUT/contact-sheet.png`` and ``OUT/contact-sheet.pdf``: one page of those overlays in
  rows, highest score first, each captioned with its rank, id, score and label, headed by
  the run, model, threshold and heatmap method: what goes back to the line with the list
  (the PDF prints on one landscape A4 or Letter page).

The sheet holds at most ``SHEET_MAX`` images (the top of the list); every overlay is
written whatever the count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.atomic import atomic_write
from core.explain import Heatmaps, explain, overlay
from core.explain_files import file_stems, save_png, write_heatmap_pngs
from core.export import flagged_positions, run_threshold
from core.progress import CancelCheck, ProgressFn
from core.score_store import as_run

SHEET_NAME = "contact-sheet.png"
SHEET_PDF_NAME = "contact-sheet.pdf"
PRINT_WIDTH_INCHES = 10.5  # fits landscape A4 (11.7 in) and Letter (11 in) with margins
SHEET_MAX = 48
SHEET_COLUMNS = 6
TILE_SCALE = 0.75        # tiles at 3/4 of the image size: 8 x 6 fit one A4-ish page
CAPTION_PX = 30
HEADER_PX = 40
LABELS = {1: "bad", 0: "good", -1: "unlabelled"}


def export_flagged_evidence(dataset, run, out: str | os.PathLike,
                            threshold: float | None = None, *, include_predicted: bool = True,
                            method: str | None = None, opacity: float = 0.6,
                            progress: ProgressFn | None = None,
                            cancel: CancelCheck | None = None) -> int:
    """Overlay PNGs of the flagged images and their contact sheet into ``out``.

    Returns:
        The number of flagged images (overlays written).

    Raises:
        core.score_store.NoScoresError: the run has not scored the dataset.
        core.progress.Cancelled: ``cancel`` returned True (overlays written so far stay).
    """
    run = as_run(dataset.workspace, run)
    positions, scores = flagged_positions(dataset, run, threshold,
                                          include_predicted=include_predicted)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if len(positions) == 0:
        return 0
    heatmaps = explain(dataset, run, dataset.image_ids[positions], method,
                       progress=progress, cancel=cancel)
    write_heatmap_pngs(dataset, heatmaps, out, opacity, maps=False)
    sheet = contact_sheet(dataset, heatmaps, positions, scores,
                          f"Run {run.id} ({run.model}) · threshold "
                          f"{run_threshold(run, threshold):.4g} · heatmap {heatmaps.method} · "
                          f"{len(positions)} flagged", opacity)
    save_png(out / SHEET_NAME, sheet)
    save_pdf(out / SHEET_PDF_NAME, sheet)
    return len(positions)


def save_pdf(path: Path, page: np.ndarray) -> None:
    """One RGB page as a one-page PDF, its resolution set so it prints ``PRINT_WIDTH_INCHES``
    wide, written atomically."""
    with atomic_write(path, "wb") as handle:
        # Pillow embeds an RGB page as JPEG: at its default quality the captions smear.
        Image.fromarray(page).save(handle, format="PDF", quality=92,
                                   resolution=page.shape[1] / PRINT_WIDTH_INCHES)


def contact_sheet(dataset, heatmaps: Heatmaps, positions: np.ndarray, scores: np.ndarray,
                  title: str, opacity: float = 0.6) -> np.ndarray:
    """One RGB page of captioned overlays (the first ``SHEET_MAX`` images)."""
    shown = min(len(positions), SHEET_MAX)
    rows = math.ceil(shown / SHEET_COLUMNS)
    tile_h, tile_w = (round(s * TILE_SCALE) for s in dataset.image_size)
    cell_w, cell_h = tile_w + 8, tile_h + CAPTION_PX + 8
    page = Image.new("RGB", (SHEET_COLUMNS * cell_w + 8, HEADER_PX + rows * cell_h + 8),
                     "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default()
    more = f" (top {shown} shown)" if shown < len(positions) else ""
    draw.text((10, 12), title + more, fill="black", font=font)
    stems = file_stems(dataset, heatmaps.image_ids[:shown])
    for i in range(shown):
        position = int(positions[i])
        picture = overlay(dataset.images[int(dataset.image_ids[position])],
                          heatmaps.maps[i], opacity)
        tile = Image.fromarray(picture).resize((tile_w, tile_h), Image.Resampling.BILINEAR)
        x = 8 + (i % SHEET_COLUMNS) * cell_w
        y = HEADER_PX + (i // SHEET_COLUMNS) * cell_h
        page.paste(tile, (x, y))
        label = LABELS.get(int(dataset.labels[position]), "unlabelled")
        draw.text((x, y + tile_h + 3), f"{i + 1}. {stems[i][:22]}", fill="black", font=font)
        draw.text((x, y + tile_h + 16), f"score {scores[position]:.4f} · {label}",
                  fill=(214, 69, 69) if label == "bad" else (60, 60, 60), font=font)
    return np.asarray(page)
