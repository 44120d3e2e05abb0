"""Contact sheet of one demo style: a grid of good and bad images with the defect written under
each, for the README and for checking a style by eye against the real Nexperia samples.

Usage:
    .venv/bin/python tests/benchmarks/contact_sheet.py --style single \\
        --out resources/screenshots/demo-style-single.png [--seed 0] [--cols 4] [--rows 3]

Generates a small set with ``generate_demo_data`` in a temporary folder (deleted afterwards),
so the sheet shows exactly what ``diesight demo-data --style S`` writes, JPEG artefacts
included. The first row holds good parts, the other rows bad ones, one defect type per tile
as far as the style has types.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.demodata import FOLDERS, GROUND_TRUTH_NAME, IMAGE_SHAPE, generate_demo_data
from core.demostyles import STYLES

CAPTION_PX = 22
GAP = 6


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / GROUND_TRUTH_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


def pick(rows: list[dict[str, str]], good: int, bad: int) -> list[dict[str, str]]:
    """``good`` good rows, then ``bad`` bad ones covering as many defect types as possible
    (round-robin over the types in order of first appearance)."""
    by_type: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["label"] == "1":
            by_type.setdefault(r["defect_type"], []).append(r)
    chosen: list[dict[str, str]] = []
    while len(chosen) < bad and any(by_type.values()):
        for members in by_type.values():
            if members and len(chosen) < bad:
                chosen.append(members.pop(0))
    return [r for r in rows if r["label"] == "0"][:good] + chosen


def _caption(r: dict[str, str]) -> str:
    if r["label"] == "0":
        return "good"
    subtle = " (subtle)" if float(r["severity"]) < 0.35 else ""
    return f"{r['defect_type'].replace('_', ' ')}{subtle}"


def sheet(root: Path, picked: list[dict[str, str]], cols: int, width: int) -> Image.Image:
    """Tiles the picked images with their captions, then scales the sheet to ``width``."""
    h, w = IMAGE_SHAPE
    rows = -(-len(picked) // cols)
    cell_h = h + CAPTION_PX + GAP
    canvas = Image.new("L", (cols * (w + GAP) + GAP, rows * cell_h + GAP), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=CAPTION_PX - 4)
    for k, r in enumerate(picked):
        x, y = GAP + (k % cols) * (w + GAP), GAP + (k // cols) * cell_h
        path = root / FOLDERS[r["split"], int(r["label"])] / f"{r['id']}.jpg"
        with Image.open(path) as im:
            canvas.paste(im, (x, y))
        draw.text((x + 2, y + h + 1), _caption(r), fill=0, font=font)
    scale = width / canvas.width
    return canvas.resize((width, round(canvas.height * scale)), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=list(STYLES), default="mixed")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cols", type=int, default=4)
    parser.add_argument("--rows", type=int, default=3, help="rows; the first shows good parts")
    parser.add_argument("--width", type=int, default=900, help="width of the sheet in pixels")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="contact-sheet-"))
    try:
        generate_demo_data(tmp / "demo", n=120, bad_fraction=0.5, seed=args.seed, workers=1,
                           style=args.style)
        picked = pick(_rows(tmp / "demo"), args.cols, args.cols * (args.rows - 1))
        image = sheet(tmp / "demo", picked, args.cols, args.width)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {image.width}x{image.height}, {len(picked)} images of style {args.style}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
