"""Guarantees: a labels CSV that labels one image twice, differently, is refused with one
line naming the file, the image and both lines; and the layout detector and the labels-CSV
reader, fed 1,500 random folder trees and CSV files, never fail with anything but their
one-line LabelsCsvError."""

from __future__ import annotations

import random

import numpy as np
import pytest
from fault_helpers import cli, error_line
from scoring_fixtures import make_lot

from core.folder_layout import SPLITS, UNLABELLED, LabelsCsvError, detect_layout, read_labels_csv


def test_conflicting_duplicate_ids_are_refused_naming_both_lines(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\na,good\nb,bad\n\na,bad\n")
    with pytest.raises(LabelsCsvError) as caught:
        read_labels_csv(csv)
    message = str(caught.value)
    assert str(csv) in message and "'a'" in message
    assert "line 2" in message and "line 5" in message and "\n" not in message


def test_the_same_label_twice_is_fine(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\na,good\na,0\n")
    assert read_labels_csv(csv).labels == {"a": 0}


def test_two_references_to_one_image_with_different_labels_are_refused(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nx/a.png,good\na,bad\n")
    with pytest.raises(LabelsCsvError, match=r"x/a\.png is labelled twice.*line 2.*line 3"):
        detect_layout(["x/a.png", "x/b.png"], tmp_path, labels_csv=csv)


def test_scan_with_a_conflicting_csv_is_one_line_exit_2(tmp_path, isolated_home):
    data = make_lot(tmp_path / "lot", good=2, bad=2, test=3)
    csv = tmp_path / "answers.csv"
    csv.write_text("id,label\n4,good\n5,bad\n4,bad\n")
    result = cli("scan", data, "--labels", csv, home=isolated_home, timeout=60)
    assert result.returncode == 2
    error_line(result, str(csv), "'4'", "line 2", "line 4")


# -- fuzz -------------------------------------------------------------------------------------

_FOLDER_WORDS = ["train", "TRAIN", "val", "Validation", "test", "good", "bad", "OK", "ng",
                 "good_0", "bad_1", "all_tests", "0", "1", "pass", "Fail", "defect", "lots",
                 "x", "data", "", " ", "normal", "true", "yes", "..", "a b", "é", "train.val"]
_EXTENSIONS = [".jpg", ".PNG", ".bmp", ".tif", ".jpeg", ".csv", ""]
_HEADERS = ["id", "file", "filename", "path", "image", "label", "class", "target", "split",
            "set", "fold", "bad", "name", "", "x", "ID", "Label"]
_CELLS = ["0", "1", "good", "bad", "ok", "ng", "yes", "no", "", " ", "2", "-1", "nan", "1.0",
          "0.0", "inf", "train", "val", "test", "\u00e9", "\"", "a,b", ";", "\t"]


def _random_tree(rng: random.Random) -> list[str]:
    paths = set()
    for _ in range(rng.randint(0, 25)):
        depth = rng.randint(0, 4)
        folders = [rng.choice(_FOLDER_WORDS) for _ in range(depth)]
        folders = [f for f in folders if f.strip() and f != ".."]
        name = f"img{rng.randint(0, 40)}{rng.choice(_EXTENSIONS)}"
        paths.add("/".join([*folders, name]))
    return sorted(paths)


def _random_csv(rng: random.Random, relpaths: list[str]) -> bytes:
    kind = rng.random()
    if kind < 0.08:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    if kind < 0.12:
        return b""
    delimiter = rng.choice([",", ";", "\t", "|"])
    lines = []
    if rng.random() < 0.7:
        lines.append(delimiter.join(rng.choice(_HEADERS) for _ in range(rng.randint(1, 4))))
    for _ in range(rng.randint(0, 30)):
        cells = []
        for _ in range(rng.randint(1, 4)):
            if relpaths and rng.random() < 0.4:
                reference = rng.choice(relpaths)
                cells.append(rng.choice([reference, reference.rpartition("/")[2],
                                         reference.rpartition("/")[2].rpartition(".")[0],
                                         "/abs/" + reference, "./" + reference]))
            else:
                cells.append(rng.choice(_CELLS))
        lines.append(delimiter.join(cells))
    text = "\n".join(lines)
    if rng.random() < 0.1:
        text = "\ufeff" + text
    return text.encode("utf-8" if rng.random() < 0.95 else "utf-16")


def test_fuzz_layout_detector_and_labels_csv_reader(tmp_path):
    rng = random.Random(20240609)
    cases = 1500
    outcomes = {"ok": 0, "LabelsCsvError": 0}
    for case in range(cases):
        relpaths = _random_tree(rng)
        csv_path = tmp_path / f"case{case}.csv"
        csv_path.write_bytes(_random_csv(rng, relpaths))
        try:
            read_labels_csv(csv_path)
        except LabelsCsvError as exc:
            assert "\n" not in str(exc)
        explicit = rng.random() < 0.5
        root_csvs = [csv_path.name] if rng.random() < 0.5 else []
        try:
            result = detect_layout(relpaths, tmp_path,
                                   labels_csv=csv_path if explicit else None,
                                   root_csv_files=root_csvs)
        except LabelsCsvError as exc:
            assert explicit, f"case {case}: an automatic CSV must never fail the open: {exc}"
            assert "\n" not in str(exc)
            outcomes["LabelsCsvError"] += 1
            continue
        outcomes["ok"] += 1
        assert len(result.labels) == len(result.splits) == len(relpaths)
        assert set(np.unique(result.labels).tolist()) <= {0, 1, UNLABELLED}
        assert set(result.splits) <= set(SPLITS)
        assert result.layout.kind in ("kaggle", "split-folders", "class-folders",
                                      "split-unlabelled", "flat", "csv")
    assert outcomes["ok"] > 300 and outcomes["LabelsCsvError"] > 100, outcomes
