"""The flagged export with evidence: an overlay per flagged image and a contact sheet."""

from __future__ import annotations

import csv
import re

import numpy as np
from PIL import Image
from scoring_fixtures import make_lot, make_run

from core.annotations import set_flag
from core.dataset import open_dataset
from core.evidence_export import (
    PRINT_WIDTH_INCHES,
    SHEET_NAME,
    SHEET_PDF_NAME,
    export_flagged_evidence,
)
from core.export import export_flagged
from core.score_store import store_scores


def test_writes_an_overlay_per_flagged_row_and_one_sheet(tmp_path):
    dataset = open_dataset(make_lot(tmp_path / "lot", good=5, bad=3, test=2), workers=1)
    run = make_run(dataset.workspace, threshold=0.7)
    n = len(dataset.image_ids)
    scores = np.linspace(0.05, 0.95, n)
    store_scores(dataset.workspace, run.id, dataset.image_ids, scores,
                 np.zeros((n, 4), np.float32))
    set_flag(dataset.workspace, dataset.image_ids[[0]], True)  # a low score, flagged by hand
    out = tmp_path / "evidence"
    count = export_flagged_evidence(dataset, run, out, method="gradcam")
    export_flagged(dataset, run, tmp_path / "flagged.csv")
    with open(tmp_path / "flagged.csv", newline="") as fh:
        listed = [row["id"] for row in csv.DictReader(fh)]
    assert count == len(listed) == 1 + int((scores >= 0.7).sum())
    overlays = sorted(p.name for p in out.glob("*-overlay.png"))
    assert overlays == sorted(f"{i}-overlay.png" for i in listed)
    first = Image.open(out / f"{listed[0]}-overlay.png")
    assert first.mode == "RGB" and first.size == dataset.image_size[::-1]
    sheet = Image.open(out / SHEET_NAME)
    assert sheet.mode == "RGB"
    assert sheet.size[0] > 4 * dataset.image_size[1] * 0.75  # tiles side by side
    # Only the overlays and the sheet: no 16-bit maps in an export.
    assert sorted(p.name for p in out.glob("*.png")) == sorted([*overlays, SHEET_NAME])
    _assert_one_printable_page(out / SHEET_PDF_NAME, sheet.size)


def _assert_one_printable_page(path, pixels):
    """The PDF holds one page as wide as ``PRINT_WIDTH_INCHES`` with the sheet's aspect."""
    raw = path.read_bytes()
    assert raw.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page\b(?!s)", raw)) == 1
    box = [float(v) for v in re.search(rb"/MediaBox \[ *([\d. ]+)\]", raw).group(1).split()]
    width, height = box[2] - box[0], box[3] - box[1]
    assert abs(width - 72 * PRINT_WIDTH_INCHES) < 1
    assert abs(height / width - pixels[1] / pixels[0]) < 0.01


def test_nothing_flagged_writes_nothing(tmp_path):
    dataset = open_dataset(make_lot(tmp_path / "lot", good=3, bad=2, test=1), workers=1)
    run = make_run(dataset.workspace, threshold=0.99)
    n = len(dataset.image_ids)
    store_scores(dataset.workspace, run.id, dataset.image_ids, np.full(n, 0.1),
                 np.zeros((n, 4), np.float32))
    assert export_flagged_evidence(dataset, run, tmp_path / "ev") == 0
    assert not list((tmp_path / "ev").iterdir())


def test_cli_export_flagged_with_evidence(tmp_path, capsys):
    from core.cli import main

    dataset = open_dataset(make_lot(tmp_path / "lot", good=3, bad=2, test=1), workers=1)
    run = make_run(dataset.workspace, threshold=0.5)
    n = len(dataset.image_ids)
    store_scores(dataset.workspace, run.id, dataset.image_ids, np.linspace(0, 1, n),
                 np.zeros((n, 4), np.float32))
    out = tmp_path / "ev"
    code = main(["export", str(dataset.root), "--run", str(run.id), "--flagged",
                 str(tmp_path / "f.csv"), "--evidence", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / SHEET_NAME).is_file() and len(list(out.glob("*-overlay.png"))) == 3
    assert (out / SHEET_PDF_NAME).is_file()
    assert f"Wrote 3 heatmap overlays and {SHEET_NAME}" in capsys.readouterr().out
    code = main(["export", str(dataset.root), "--scores", str(tmp_path / "s.csv"),
                 "--evidence", str(out)])
    assert code == 2 and "--evidence goes with --flagged" in capsys.readouterr().err
