"""Layout detection: folder naming variants, labels CSVs, and which CSV is used when."""

from __future__ import annotations

import numpy as np
import pytest

from core.folder_layout import (
    BAD,
    GOOD,
    UNLABELLED,
    LabelsCsvError,
    detect_layout,
    parse_label,
    read_labels_csv,
)


def labels_by_path(relpaths, result):
    return {p: (int(label), split)
            for p, label, split in zip(relpaths, result.labels, result.splits, strict=True)}


def test_kaggle_layout_labels_train_and_leaves_test_unlabelled(tmp_path):
    relpaths = ["test/all_tests/t1.jpg", "train/bad_1/b1.jpg", "train/good_0/g1.jpg",
                "train/good_0/g2.jpg"]
    result = detect_layout(relpaths, tmp_path)
    assert result.layout.kind == "kaggle"
    assert "train/good_0" in result.layout.description
    assert labels_by_path(relpaths, result) == {
        "test/all_tests/t1.jpg": (UNLABELLED, "test"),
        "train/bad_1/b1.jpg": (BAD, "train"),
        "train/good_0/g1.jpg": (GOOD, "train"),
        "train/good_0/g2.jpg": (GOOD, "train"),
    }


def test_kaggle_zip_layout_with_doubled_split_folders(tmp_path):
    relpaths = ["train/train/good_0/a.jpg", "train/train/bad_1/b.jpg",
                "test/test/all_tests/c.jpg"]
    result = detect_layout(relpaths, tmp_path)
    assert result.layout.kind == "kaggle"
    assert result.labels.tolist() == [GOOD, BAD, UNLABELLED]
    assert result.splits == ["train", "train", "test"]


@pytest.mark.parametrize("good, bad", [
    ("good", "bad"), ("GOOD", "Bad"), ("ok", "ng"), ("OK", "NG"), ("pass", "fail"),
    ("Pass", "FAIL"), ("normal", "defect"), ("Normal", "Defective"), ("0", "1"),
    ("good_0", "bad_1"),
])
def test_two_class_folders_under_the_root(tmp_path, good, bad):
    relpaths = [f"{good}/a.png", f"{good}/b.png", f"{bad}/c.png"]
    result = detect_layout(relpaths, tmp_path)
    assert result.layout.kind == "class-folders"
    assert result.labels.tolist() == [GOOD, GOOD, BAD]
    assert result.splits == ["train"] * 3


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Val", "VALIDATION"])
def test_class_folders_inside_split_folders(tmp_path, val_name):
    relpaths = ["train/ok/a.jpg", "train/ng/b.jpg", f"{val_name}/ok/c.jpg",
                f"{val_name}/ng/d.jpg", "Test/OK/e.jpg", "test/NG/f.jpg"]
    result = detect_layout(relpaths, tmp_path)
    assert result.layout.kind == "split-folders"
    assert result.labels.tolist() == [GOOD, BAD, GOOD, BAD, GOOD, BAD]
    assert result.splits == ["train", "train", "val", "val", "test", "test"]


def test_subfolders_inside_a_class_folder_inherit_its_label(tmp_path):
    result = detect_layout(["bad/lot7/x.jpg", "good/lot7/day2/y.jpg"], tmp_path)
    assert result.labels.tolist() == [BAD, GOOD]


def test_flat_folder_is_unlabelled(tmp_path):
    result = detect_layout(["a.jpg", "b.JPG", "c.tiff"], tmp_path)
    assert result.layout.kind == "flat"
    assert result.labels.tolist() == [UNLABELLED] * 3
    assert result.splits == ["unlabelled"] * 3


def test_numbered_lot_folders_are_not_class_folders(tmp_path):
    # '1' only means 'bad' directly under the root or a split folder.
    result = detect_layout(["lots/1/a.jpg", "lots/0/b.jpg"], tmp_path)
    assert result.layout.kind == "flat"
    assert result.labels.tolist() == [UNLABELLED, UNLABELLED]


def test_split_folders_without_classes(tmp_path):
    result = detect_layout(["train/a.jpg", "test/b.jpg"], tmp_path)
    assert result.layout.kind == "split-unlabelled"
    assert result.labels.tolist() == [UNLABELLED, UNLABELLED]
    assert result.splits == ["train", "test"]


def test_stray_images_beside_class_folders_stay_unlabelled(tmp_path):
    result = detect_layout(["good/a.jpg", "bad/b.jpg", "loose.jpg"], tmp_path)
    assert result.labels.tolist() == [GOOD, BAD, UNLABELLED]
    assert result.splits == ["train", "train", "unlabelled"]


# --- labels CSV --------------------------------------------------------------------------


@pytest.mark.parametrize("header, rows", [
    ("filename,label", ["a.jpg,0", "b.jpg,1", "c.jpg,0"]),
    ("file,class", ["a.jpg,good", "b.jpg,bad", "c.jpg,good"]),
    ("path,target", ["a.jpg,ok", "b.jpg,ng", "c.jpg,OK"]),
    ("image,label", ["./a.jpg,pass", "./b.jpg,fail", "./c.jpg,pass"]),
    ("id,label", ["a,0", "b,1", "c,0"]),
    ("Image_ID;Class", ["a;normal", "b;defect", "c;normal"]),
    ("ID,Label", ["A.JPG,0.0", "B.JPG,1.0", "C.JPG,0"]),
    ("", ["a.jpg,0", "b.jpg,1", "c.jpg,0"]),
    ("", ["0,a.jpg", "1,b.jpg", "0,c.jpg"]),
])
def test_csv_labels_a_flat_folder(tmp_path, header, rows):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(([header] if header else []) + rows) + "\n")
    result = detect_layout(["a.jpg", "b.jpg", "c.jpg"], tmp_path, labels_csv=csv_path)
    assert result.layout.kind == "csv"
    assert result.layout.labels_csv == str(csv_path)
    assert result.labels.tolist() == [GOOD, BAD, GOOD]
    assert result.splits == ["train"] * 3


def test_csv_matches_relative_paths_and_paths_above_the_root(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\nlot1/x.jpg,1\ndata/lot2/x.jpg,0\n"
                        f"{tmp_path / 'lot3' / 'x.jpg'},1\n")
    relpaths = ["lot1/x.jpg", "lot2/x.jpg", "lot3/x.jpg"]
    result = detect_layout(relpaths, tmp_path, labels_csv=csv_path)
    assert result.labels.tolist() == [BAD, GOOD, BAD]


def test_csv_name_shared_by_two_images_matches_neither(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label\nx.jpg,1\ny.jpg,0\n")
    result = detect_layout(["lot1/x.jpg", "lot2/x.jpg", "y.jpg"], tmp_path, labels_csv=csv_path)
    assert result.labels.tolist() == [UNLABELLED, UNLABELLED, GOOD]
    assert any("name no image" in note for note in result.layout.notes)


def test_single_matching_csv_in_a_flat_folder_is_used_automatically(tmp_path):
    (tmp_path / "truth.csv").write_text("id,label\na,1\nb,0\n")
    result = detect_layout(["a.jpg", "b.jpg"], tmp_path, root_csv_files=["truth.csv"])
    assert result.layout.kind == "csv"
    assert result.labels.tolist() == [BAD, GOOD]


def test_csv_naming_other_images_is_not_used_automatically(tmp_path):
    (tmp_path / "truth.csv").write_text("id,label\nq,1\nr,0\ns,1\na,0\n")
    result = detect_layout(["a.jpg", "b.jpg"], tmp_path, root_csv_files=["truth.csv"])
    assert result.layout.kind == "flat"
    assert result.labels.tolist() == [UNLABELLED, UNLABELLED]
    assert "not used" in result.layout.notes[0]


def test_two_csvs_in_a_flat_folder_are_not_guessed_between(tmp_path):
    for name in ("one.csv", "two.csv"):
        (tmp_path / name).write_text("id,label\na,1\n")
    result = detect_layout(["a.jpg"], tmp_path, root_csv_files=["one.csv", "two.csv"])
    assert result.layout.kind == "flat"
    assert result.labels.tolist() == [UNLABELLED]


def test_answer_key_beside_kaggle_folders_does_not_label_the_test_images(tmp_path):
    (tmp_path / "ground_truth.csv").write_text("id,label,split\nt1,1,test\ng1,0,train\n")
    relpaths = ["test/all_tests/t1.jpg", "train/good_0/g1.jpg"]
    result = detect_layout(relpaths, tmp_path, root_csv_files=["ground_truth.csv"])
    assert result.layout.kind == "kaggle"
    assert result.labels.tolist() == [UNLABELLED, GOOD]
    assert "ground_truth.csv not used" in result.layout.notes[0]


def test_explicit_csv_labels_what_the_folders_leave_unlabelled(tmp_path):
    csv_path = tmp_path / "ground_truth.csv"
    csv_path.write_text("id,label,split\nt1,1,test\ng1,1,train\n")
    relpaths = ["test/all_tests/t1.jpg", "train/good_0/g1.jpg"]
    result = detect_layout(relpaths, tmp_path, labels_csv=csv_path)
    assert result.layout.kind == "kaggle"
    # The test image gets the CSV's label; the folder label of g1 wins over the CSV.
    assert labels_by_path(relpaths, result) == {"test/all_tests/t1.jpg": (BAD, "test"),
                                                "train/good_0/g1.jpg": (GOOD, "train")}
    assert any("disagrees" in note for note in result.layout.notes)


def test_csv_split_column_sets_the_split_of_a_flat_folder(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label,split\na.jpg,0,train\nb.jpg,1,validation\nc.jpg,1,test\n")
    result = detect_layout(["a.jpg", "b.jpg", "c.jpg"], tmp_path, labels_csv=csv_path)
    assert result.splits == ["train", "val", "test"]


def test_csv_rows_with_unknown_labels_are_reported(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label\na.jpg,0\nb.jpg,maybe\n")
    result = detect_layout(["a.jpg", "b.jpg"], tmp_path, labels_csv=csv_path)
    assert result.labels.tolist() == [GOOD, UNLABELLED]
    assert any("unknown label" in note for note in result.layout.notes)


@pytest.mark.parametrize("content, message", [
    ("file,score\na.jpg,0.3\n", "label column"),
    ("just one column\na.jpg\n", "two columns"),
    ("a.jpg,blue\nb.jpg,green\n", "no column of labels"),
    ("file,label\na.jpg,blue\n", "no rows with a recognisable label"),
    ("", "empty"),
])
def test_unusable_csv_says_why(tmp_path, content, message):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(content)
    with pytest.raises(LabelsCsvError, match=message):
        read_labels_csv(csv_path)


def test_explicit_csv_that_names_no_image_is_an_error(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label\nzzz.jpg,1\n")
    with pytest.raises(LabelsCsvError, match="names none of the 1 images"):
        detect_layout(["a.jpg"], tmp_path, labels_csv=csv_path)


def test_csv_with_bom_and_tabs(tmp_path):
    csv_path = tmp_path / "labels.tsv"
    csv_path.write_bytes("\ufefffilename\tlabel\na.jpg\tNG\n".encode())
    assert read_labels_csv(csv_path).labels == {"a.jpg": BAD}


@pytest.mark.parametrize("value, expected", [
    ("0", GOOD), ("1", BAD), (" Good ", GOOD), ("BAD", BAD), ("ok", GOOD), ("NG", BAD),
    ("pass", GOOD), ("fail", BAD), ("normal", GOOD), ("defect", BAD), ("1.0", BAD),
    ("true", BAD), ("2", None), ("", None), ("cat", None),
])
def test_parse_label(value, expected):
    assert parse_label(value) == expected


def test_labels_are_int8_aligned_with_the_paths(tmp_path):
    result = detect_layout(["good/a.jpg", "bad/b.jpg"], tmp_path)
    assert result.labels.dtype == np.int8
    assert len(result.splits) == 2
