"""open_dataset end to end: arrays, hostile files, the cache, invalidation, cancel and kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import TINY, make_kaggle_folder, snapshot, write_image
from PIL import Image

import core.cache
import core.dataset
from core.cache import CACHE_FILE_NAME
from core.dataset import DatasetError, open_dataset
from core.progress import Cancelled

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def lot(tmp_path) -> Path:
    return make_kaggle_folder(tmp_path / "lot")


def expected_pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def assert_pixels_match_files(ds) -> None:
    for i, relpath in enumerate(ds.relpaths):
        assert np.array_equal(ds.images[ds.image_ids[i]], expected_pixels(ds.root / relpath)), \
            relpath


def db_rows(ds, sql: str):
    with ds.workspace.transaction() as con:
        return [tuple(row) for row in con.execute(sql).fetchall()]


# --- the happy path ----------------------------------------------------------------------


def test_opens_a_kaggle_folder(lot):
    ds = open_dataset(lot, workers=1)
    assert ds.layout.kind == "kaggle"
    assert len(ds) == 9
    assert ds.image_size == TINY
    assert ds.images.dtype == np.uint8 and not ds.images.flags.writeable
    assert ds.image_ids.dtype == np.int64 and (np.diff(ds.image_ids) > 0).all()
    assert ds.labels.dtype == np.int8
    assert len(ds.relpaths) == len(ds.labels) == len(ds.splits) == len(ds.image_ids)
    assert ds.counts() == {"train": {"good": 4, "bad": 2, "unlabelled": 0},
                           "test": {"good": 0, "bad": 0, "unlabelled": 3}}
    assert ds.relpaths[0] == "test/all_tests/t000.png"
    assert ds.names[0] == "t000.png" and ds.ids[0] == "t000"
    assert ds.path(0) == lot / "test/all_tests/t000.png"
    assert ds.positions([ds.image_ids[4], 999]).tolist() == [4, -1]
    assert_pixels_match_files(ds)
    assert ds.workspace.path.is_relative_to(Path(os.environ["DIESIGHT_HOME"]))
    assert ds.stats.decoded == 9 and ds.stats.new == 9


def test_database_rows_describe_every_image(lot):
    ds = open_dataset(lot, workers=1)
    rows = db_rows(ds, "SELECT id, relpath, label, split, orig_width, orig_height, present "
                       "FROM images ORDER BY id")
    assert [r[0] for r in rows] == ds.image_ids.tolist()
    assert rows[0][1:] == ("test/all_tests/t000.png", None, "test", TINY[1], TINY[0], 1)
    assert {r[2] for r in rows if r[3] == "train"} == {0, 1}


def test_nothing_is_written_into_a_read_only_image_folder(lot):
    (lot / "ground_truth.csv").write_text("id,label\nt000,1\n")
    folders = [lot] + [p for p in lot.rglob("*") if p.is_dir()]
    files = [p for p in lot.rglob("*") if p.is_file()]
    for path in files:
        path.chmod(0o444)
    for path in folders:
        path.chmod(0o555)
    before = snapshot(lot)
    try:
        open_dataset(lot, workers=1)
        open_dataset(lot, workers=1, labels_csv=lot / "ground_truth.csv")
        after = snapshot(lot)
    finally:
        for path in folders:
            path.chmod(0o755)
    assert after == before


def test_user_relabels_override_folder_labels(lot):
    ds = open_dataset(lot, workers=1)
    target = int(ds.image_ids[ds.relpaths.index("train/good_0/g000.png")])
    with ds.workspace.transaction() as con:
        con.execute("INSERT INTO annotations (image_id, user_label) VALUES (?, 1)", (target,))
    again = open_dataset(lot, workers=1)
    assert again.labels[again.relpaths.index("train/good_0/g000.png")] == 1


def test_explicit_labels_csv_labels_the_test_images(lot):
    csv_path = lot / "truth.csv"
    csv_path.write_text("id,label\nt000,1\nt001,0\nt002,0\n")
    ds = open_dataset(lot, workers=1, labels_csv=csv_path)
    assert ds.counts()["test"] == {"good": 2, "bad": 1, "unlabelled": 0}
    assert ds.layout.labels_csv == str(csv_path)
    plain = open_dataset(lot, workers=1)
    assert plain.counts()["test"] == {"good": 0, "bad": 0, "unlabelled": 3}
    assert plain.stats.decoded == 0


# --- formats -----------------------------------------------------------------------------


def test_formats_are_converted_and_odd_sizes_resized(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(3):
        write_image(root / f"common{i}.PNG", 50 + i)
    Image.fromarray(np.full((*TINY, 3), 200, np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(np.full(TINY, 40000, np.uint16)).save(root / "deep.tif")
    Image.fromarray(np.full(TINY, 77, np.uint8)).convert("P").save(root / "palette.bmp")
    Image.fromarray(np.full((*TINY, 2), 90, np.uint8), "LA").save(root / "la.png")
    Image.fromarray(np.full((30, 40), 120, np.uint8)).save(root / "odd.TIFF")
    ds = open_dataset(root, workers=1)
    assert ds.layout.kind == "flat" and len(ds) == 8 and not ds.skipped
    assert ds.image_size == TINY
    by_name = {name: ds.images[ds.image_ids[i]] for i, name in enumerate(ds.names)}
    assert (by_name["deep.tif"] == round(40000 * 255 / 65535)).all()
    assert (by_name["palette.bmp"] == 77).all()
    assert (by_name["la.png"] == 90).all()
    assert (by_name["odd.TIFF"] == 120).all()
    assert abs(int(by_name["rgb.jpg"].mean()) - 200) <= 3
    assert db_rows(ds, "SELECT orig_width, orig_height FROM images "
                       "WHERE relpath = 'odd.TIFF'") == [(40, 30)]


# --- hostile files -----------------------------------------------------------------------


def test_hostile_files_are_listed_with_reasons_and_skipped(lot):
    good_jpeg = lot / "train/good_0/real.jpg"
    write_image(good_jpeg, 33)
    data = good_jpeg.read_bytes()
    (lot / "train/good_0/empty.jpg").write_bytes(b"")
    (lot / "train/good_0/cut.jpg").write_bytes(data[:len(data) // 2])
    (lot / "train/good_0/text.png").write_text("definitely not a picture")
    (lot / "train/bad_1/dangling.jpg").symlink_to(lot / "nowhere.jpg")
    os.mkfifo(lot / "train/bad_1/pipe.jpg")
    ds = open_dataset(lot, workers=1)
    reasons = {s.relpath: s.reason for s in ds.skipped}
    assert reasons == {
        "train/good_0/empty.jpg": "empty file (0 bytes)",
        "train/good_0/cut.jpg": "truncated image",
        "train/good_0/text.png": "not an image (unrecognised format)",
        "train/bad_1/dangling.jpg": "broken symbolic link",
        "train/bad_1/pipe.jpg": "not a regular file (named pipe)",
    }
    assert len(ds) == 10  # the 9 images plus real.jpg
    assert dict(db_rows(ds, "SELECT relpath, reason FROM skipped")) == reasons
    assert ds.stats.failed == 2  # cut and text fail in the decoder; the rest at the scan


@pytest.mark.skipif(ROOT_USER, reason="root reads files regardless of permissions")
def test_file_without_read_permission_is_skipped(lot):
    secret = write_image(lot / "train/good_0/secret.png", 5)
    secret.chmod(0)
    try:
        ds = open_dataset(lot, workers=1)
    finally:
        secret.chmod(0o644)
    assert {s.relpath: s.reason for s in ds.skipped} == {
        "train/good_0/secret.png": "no permission to read"}


@pytest.mark.skipif(ROOT_USER, reason="root lists folders regardless of permissions")
def test_folder_without_permission_is_skipped(lot):
    locked = lot / "train/bad_1"
    locked.chmod(0)
    try:
        ds = open_dataset(lot, workers=1)
    finally:
        locked.chmod(0o755)
    assert [(s.relpath, s.reason) for s in ds.skipped] == [
        ("train/bad_1/", "folder cannot be read (permission denied)")]


def test_unreadable_folder_is_skipped(lot, monkeypatch):
    # Works as root too: the folder listing itself fails the way a permission error does.
    real_scandir = os.scandir
    locked = str(lot / "train" / "bad_1")

    def scandir(path):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    ds = open_dataset(lot, workers=1)
    assert [(s.relpath, s.reason) for s in ds.skipped] == [
        ("train/bad_1/", "folder cannot be read (permission denied)")]
    assert ds.counts()["train"]["bad"] == 0 and len(ds) == 7


def test_unreadable_file_reports_permission(lot, monkeypatch):
    # As root, simulate the denied read where the cache reads a file's bytes.
    import core.cache

    def deny(path, *args, **kwargs):
        if str(path).endswith("g001.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(core.cache, "open", deny, raising=False)
    ds = open_dataset(lot, workers=1)
    assert [(s.relpath, s.reason) for s in ds.skipped] == [
        ("train/good_0/g001.png", "no permission to read")]


def test_hidden_and_non_image_files_are_ignored_and_counted(lot):
    write_image(lot / "train/good_0/.thumb.png")
    write_image(lot / ".cache/x.png")
    (lot / "notes.txt").write_text("hello")
    (lot / "train/readme.md").write_text("hello")
    ds = open_dataset(lot, workers=1)
    assert ds.ignored == {"hidden": 2, "not an image": 2}
    assert len(ds) == 9 and not ds.skipped


def test_folder_named_like_an_image_is_walked_into(lot):
    write_image(lot / "train/good_0/odd.jpg/inner.png", 9)
    ds = open_dataset(lot, workers=1)
    assert "train/good_0/odd.jpg/inner.png" in ds.relpaths
    assert ds.labels[ds.relpaths.index("train/good_0/odd.jpg/inner.png")] == 0


def test_symlinked_folder_loop_is_not_followed_forever(lot):
    (lot / "train/good_0/loop").symlink_to(lot / "train", target_is_directory=True)
    ds = open_dataset(lot, workers=1)
    assert len(ds) == 9


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "Folder not found"),
    (lambda p: p.write_text("x"), "Not a folder"),
    (lambda p: p.mkdir(), "No images found"),
])
def test_unusable_folders_give_a_clear_error(tmp_path, make, message):
    target = tmp_path / "data"
    make(target)
    with pytest.raises(DatasetError, match=message):
        open_dataset(target, workers=1)


def test_folder_of_only_broken_images_lists_them(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "a.jpg").write_text("nope")
    (root / "b.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="None of the 1 images") as info:
        open_dataset(root, workers=1)
    assert {s.relpath for s in info.value.skipped} == {"a.jpg", "b.png"}


def test_missing_or_bad_labels_csv_is_a_clear_error(lot):
    with pytest.raises(DatasetError, match="Labels file not found"):
        open_dataset(lot, workers=1, labels_csv=lot / "nope.csv")
    (lot / "bad.csv").write_text("file,score\nx,1\n")
    with pytest.raises(DatasetError, match="Cannot use the labels file"):
        open_dataset(lot, workers=1, labels_csv=lot / "bad.csv")


# --- the cache ---------------------------------------------------------------------------


def test_reopening_an_unchanged_folder_decodes_nothing(lot, monkeypatch):
    first = open_dataset(lot, workers=1)
    cache_file = first.workspace.path / CACHE_FILE_NAME
    cache_mtime = cache_file.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("an unchanged image was decoded again")

    monkeypatch.setattr(core.cache, "decode_chunk", no_decoding)
    again = open_dataset(lot, workers=1)
    assert again.stats.decoded == 0 and again.stats.reused == 9
    assert cache_file.stat().st_mtime_ns == cache_mtime
    assert again.image_ids.tolist() == first.image_ids.tolist()
    assert_pixels_match_files(again)


def test_changed_new_and_vanished_files(lot):
    first = open_dataset(lot, workers=1)
    ids = dict(zip(first.relpaths, first.image_ids.tolist(), strict=True))
    changed = lot / "train/good_0/g001.png"
    write_image(changed, 250)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    write_image(lot / "train/bad_1/new.png", 222)
    (lot / "test/all_tests/t002.png").unlink()

    second = open_dataset(lot, workers=1)
    assert (second.stats.changed, second.stats.new, second.stats.vanished) == (1, 1, 1)
    assert second.stats.decoded == 2 and second.stats.reused == 7
    assert "test/all_tests/t002.png" not in second.relpaths
    assert ids["test/all_tests/t002.png"] not in second.image_ids
    position = second.relpaths.index("train/good_0/g001.png")
    assert second.image_ids[position] == ids["train/good_0/g001.png"]  # same row, new pixels
    assert (second.images[second.image_ids[position]] == 250).all()
    new_id = second.image_ids[second.relpaths.index("train/bad_1/new.png")]
    assert new_id == max(ids.values()) + 1
    assert_pixels_match_files(second)
    assert db_rows(second, "SELECT present FROM images WHERE relpath = "
                           "'test/all_tests/t002.png'") == [(0,)]

    write_image(lot / "test/all_tests/t002.png", 99)  # it comes back: its old row again
    third = open_dataset(lot, workers=1)
    assert third.image_ids[third.relpaths.index("test/all_tests/t002.png")] == \
        ids["test/all_tests/t002.png"]
    assert_pixels_match_files(third)


def test_a_touch_is_no_change_and_a_same_size_same_mtime_rewrite_is(lot, monkeypatch):
    monkeypatch.setattr(core.dataset, "RACY_WINDOW_NS", 200_000_000)  # 0.2 s, for speed
    rewritten = lot / "train/good_0/g001.png"
    pixels = np.asarray(Image.open(rewritten)).copy()
    Image.fromarray(pixels).save(rewritten, compress_level=0)  # size set by the dimensions
    time.sleep(0.3)  # older than the window: the files' ctimes vouch for their bytes
    first = open_dataset(lot, workers=1)
    assert open_dataset(lot, workers=1).stats.checked == 0

    os.utime(lot / "train/good_0/g000.png")  # its times move, its bytes do not
    again = open_dataset(lot, workers=1)
    assert (again.stats.checked, again.stats.changed, again.stats.decoded) == (1, 0, 0)

    before = rewritten.stat()
    pixels[0, 0] ^= 0xFF  # one pixel
    Image.fromarray(pixels).save(rewritten, compress_level=0)
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (rewritten.stat().st_size, rewritten.stat().st_mtime_ns) == \
        (before.st_size, before.st_mtime_ns)
    last = open_dataset(lot, workers=1)
    # g000 again too: touched just before the last open, its ctime could not vouch.
    assert (last.stats.checked, last.stats.changed, last.stats.decoded) == (2, 1, 1)
    row = first.image_ids[first.relpaths.index("train/good_0/g001.png")]
    assert np.array_equal(last.images[row], pixels)


def test_a_file_rewritten_just_before_an_open_is_checked_again_at_the_next(lot, monkeypatch):
    monkeypatch.setattr(core.dataset, "RACY_WINDOW_NS", 200_000_000)
    open_dataset(lot, workers=1)  # right after the files were written: within the window
    time.sleep(0.3)
    second = open_dataset(lot, workers=1)
    assert (second.stats.checked, second.stats.decoded) == (9, 0)
    assert open_dataset(lot, workers=1).stats.checked == 0


def test_file_that_breaks_later_leaves_the_dataset(lot):
    open_dataset(lot, workers=1)
    broken = lot / "train/bad_1/b000.png"
    broken.write_text("garbage now")
    ds = open_dataset(lot, workers=1)
    assert "train/bad_1/b000.png" not in ds.relpaths
    assert [s.relpath for s in ds.skipped] == ["train/bad_1/b000.png"]


def test_deleted_cache_file_is_rebuilt_in_the_same_rows(lot):
    first = open_dataset(lot, workers=1)
    (first.workspace.path / CACHE_FILE_NAME).unlink()
    again = open_dataset(lot, workers=1)
    assert again.stats.decoded == 9
    assert again.image_ids.tolist() == first.image_ids.tolist()
    assert_pixels_match_files(again)


def many_images(root: Path, count: int) -> Path:
    for i in range(count):
        write_image(root / ("good" if i % 3 else "bad") / f"{i:04d}.png", i % 256)
    return root


def test_cancel_half_way_then_reopen_completes(tmp_path):
    root = many_images(tmp_path / "lot", 80)
    decoded = []

    def progress(report) -> None:
        if report.stage == "decode":
            decoded.append(report.done)

    with pytest.raises(Cancelled):
        open_dataset(root, workers=1, progress=progress, cancel=lambda: bool(decoded))
    assert decoded and decoded[-1] < 80
    # What finished before the cancel is committed; the rest is decoded by the next open.
    again = open_dataset(root, workers=1)
    assert 0 < again.stats.reused < 80
    assert again.stats.decoded == 80 - again.stats.reused
    assert len(again) == 80
    assert_pixels_match_files(again)


def test_killed_open_leaves_a_workspace_the_next_open_completes(tmp_path):
    root = many_images(tmp_path / "lot", 200)
    script = textwrap.dedent(f"""
        import os, signal
        from core.dataset import open_dataset

        def progress(p):
            if p.stage == "decode" and p.done >= 64:
                os.kill(os.getpid(), signal.SIGKILL)

        open_dataset({str(root)!r}, workers=1, progress=progress)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(),
                            cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert result.returncode == -signal.SIGKILL
    ds = open_dataset(root, workers=1)
    assert len(ds) == 200 and ds.stats.decoded + ds.stats.reused == 200
    assert_pixels_match_files(ds)


# --- the process pool --------------------------------------------------------------------


@pytest.fixture
def small_pool_limits(monkeypatch):
    """Send even a tiny folder through the worker processes."""
    monkeypatch.setattr(core.cache, "IN_PROCESS_LIMIT", 0)
    monkeypatch.setattr(core.cache, "MIN_CHUNK", 8)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_worker_processes_give_the_same_result(tmp_path, small_pool_limits, monkeypatch,
                                               start_method):
    import multiprocessing

    monkeypatch.setattr(core.cache, "_pool_context",
                        lambda: multiprocessing.get_context(start_method))
    root = many_images(tmp_path / "lot", 60)
    (root / "good" / "broken.png").write_text("nope")
    ds = open_dataset(root, workers=2)
    assert len(ds) == 60 and ds.stats.decoded == 60
    assert [(s.relpath, s.reason) for s in ds.skipped] == [
        ("good/broken.png", "not an image (unrecognised format)")]
    assert_pixels_match_files(ds)


def test_cancelled_pool_keeps_finished_chunks(tmp_path, small_pool_limits):
    root = many_images(tmp_path / "lot", 120)
    with pytest.raises(Cancelled):
        open_dataset(root, workers=2, cancel=lambda: True)
    again = open_dataset(root, workers=2)
    assert again.stats.decoded + again.stats.reused == 120
    assert_pixels_match_files(again)


def dying_worker(jobs):
    os._exit(3)  # a worker killed mid-chunk (out of memory, kill -9, ...)


def test_dead_worker_process_does_not_fail_the_open(tmp_path, small_pool_limits, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(core.cache, "_pool_context", lambda: multiprocessing.get_context("fork"))
    monkeypatch.setattr(core.cache, "_decode_chunk_in_worker", dying_worker)
    root = many_images(tmp_path / "lot", 40)
    ds = open_dataset(root, workers=2)
    assert len(ds) == 40 and ds.stats.decoded == 40
    assert_pixels_match_files(ds)


# --- the demo data -----------------------------------------------------------------------


def test_demo_folder_opens_as_kaggle_without_using_the_answer_key(demo_folder):
    ds = open_dataset(demo_folder)
    assert ds.layout.kind == "kaggle"
    assert ds.image_size == (267, 275)
    counts = ds.counts()
    assert counts["test"]["good"] == counts["test"]["bad"] == 0
    assert counts["test"]["unlabelled"] > 0
    assert not ds.skipped
    answer_key = open_dataset(demo_folder, labels_csv=demo_folder / "ground_truth.csv")
    assert answer_key.counts()["test"]["unlabelled"] == 0
    assert answer_key.stats.decoded == 0
