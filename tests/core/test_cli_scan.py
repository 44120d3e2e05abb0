"""`diesight scan`: the headless report of layout, counts, workspace and skipped files."""

from __future__ import annotations

from ingest_helpers import make_kaggle_folder

from core.cli import main
from core.workspace import workspace_dir_for


def test_scan_reports_layout_counts_workspace_and_skipped(tmp_path, capsys):
    lot = make_kaggle_folder(tmp_path / "lot")
    (lot / "train/bad_1/empty.jpg").write_bytes(b"")
    (lot / "test/all_tests/junk.png").write_text("junk")
    assert main(["scan", str(lot), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "Kaggle layout" in out
    assert str(workspace_dir_for(lot)) in out
    assert "train" in out and "test" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["train"] == ["4", "2", "0", "6"]
    assert lines["test"] == ["0", "0", "3", "3"]
    assert "Skipped 2 file(s):" in out
    assert "train/bad_1/empty.jpg: empty file (0 bytes)" in out
    assert "test/all_tests/junk.png: not an image (unrecognised format)" in out


def test_scan_with_labels_csv(tmp_path, capsys):
    lot = make_kaggle_folder(tmp_path / "lot")
    labels = tmp_path / "answers.csv"
    labels.write_text("id,label\nt000,1\nt001,1\nt002,0\n")
    assert main(["scan", str(lot), "--labels", str(labels), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "answers.csv" in out
    test_row = next(line for line in out.splitlines() if line.startswith("test"))
    assert test_row.split()[1:] == ["1", "2", "0", "3"]


def test_scan_of_a_missing_folder_fails_clearly(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nowhere")]) == 2
    assert "Folder not found" in capsys.readouterr().err


def test_scan_of_a_folder_without_images_fails_clearly(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("no pictures here")
    assert main(["scan", str(tmp_path)]) == 2
    assert "No images found" in capsys.readouterr().err


def test_scan_rejects_zero_workers(tmp_path, capsys):
    make_kaggle_folder(tmp_path / "lot")
    assert main(["scan", str(tmp_path / "lot"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
