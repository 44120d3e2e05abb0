"""Screenshot: the main window with a defect's heatmap, its nearest images and golden difference.

Run (a scored demo set with ground_truth.csv and a trained run):
    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/screenshot_explain.py \
        --data .bench/explain/demo-900 --run 1 --out /tmp/shots [--kind chipped_corner]

Opens the window at 1366 x 768 and 1920 x 1080 on the Ranked tab, makes a bad test image
of ``--kind`` current, turns the heatmap on, waits for the heatmap and the Evidence dock,
and saves ``explain-WxH.png`` for each size.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SIZES = ((1366, 768), (1920, 1080))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", default="latest")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kind", default="chipped_corner")
    p.add_argument("--home", type=Path, default=ROOT / ".bench" / "explain" / "home")
    args = p.parse_args(argv)
    os.environ.setdefault("DIESIGHT_HOME", str(args.home))
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow, create_application
    from core.dataset import open_dataset
    from core.runs import resolve_run

    app = create_application([])
    dataset = open_dataset(args.data)
    position = defect_position(dataset, args.kind)
    args.out.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        ini = args.out / f"settings-{width}.ini"
        ini.unlink(missing_ok=True)  # a saved geometry would override the size asked for
        settings = QSettings(str(ini), QSettings.Format.IniFormat)
        window = MainWindow(settings)
        window.resize(width, height)
        window.show()
        window.state.set_dataset(dataset)
        window.state.set_current_run(resolve_run(dataset.workspace, args.run))
        window.state.set_threshold(0.5)  # a usual operating point, whatever the run chose
        window.tabs.setCurrentWidget(window.ranked)
        window.evidence_dock.raise_()
        window.state.set_current_image(position)
        window.viewer.heatmap.toggle_button.setChecked(True)
        wait(app, lambda w=window: w.viewer.heatmap.item.isVisible()
             and w.evidence.shown_key is not None)
        path = args.out / f"explain-{width}x{height}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")
        window.close()
    return 0


def defect_position(dataset, kind: str) -> int:
    """Position of the first bad test image of ``kind`` in ground_truth.csv."""
    by_stem = {stem: i for i, stem in enumerate(dataset.ids)}
    with open(Path(dataset.root) / "ground_truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["defect_type"] == kind and row["split"] == "test" and row["id"] in by_stem:
                return by_stem[row["id"]]
    raise SystemExit(f"no test image of kind {kind!r}")


def wait(app, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the heatmap and the evidence")
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let layouts and repaints settle
        app.processEvents()
        time.sleep(0.01)


if __name__ == "__main__":
    raise SystemExit(main())
