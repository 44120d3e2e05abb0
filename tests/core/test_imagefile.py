"""Decoding single files: every supported mode becomes uint8 grayscale; broken files say why."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.imagefile import UnreadableImage, decode_gray, is_image_name, read_size

H, W = 6, 8


def gradient(height=H, width=W) -> np.ndarray:
    return (np.arange(height * width, dtype=np.uint16).reshape(height, width) * 5).astype(np.uint8)


def test_gray_png_round_trips_exactly(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(gradient()).save(path)
    pixels, original = decode_gray(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (H, W)
    assert np.array_equal(pixels, gradient())
    assert original == (W, H)


def test_rgb_becomes_luminance(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 200
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    pixels, _ = decode_gray(path)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(pixels, expected)
    assert 0 < pixels[0, 0] < 200


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1", "CMYK"])
def test_other_modes_convert_to_gray(tmp_path, mode):
    image = Image.fromarray(gradient()).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    pixels, _ = decode_gray(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (H, W)
    if mode in ("RGBA", "LA", "P"):
        assert np.abs(pixels.astype(int) - gradient().astype(int)).max() <= 2


def test_palette_with_transparency(tmp_path):
    image = Image.fromarray(gradient()).convert("P")
    image.info["transparency"] = 0
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    pixels, _ = decode_gray(path)
    assert pixels.shape == (H, W)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_full_range_is_scaled_down(tmp_path, suffix):
    values = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(values).save(path)
    pixels, _ = decode_gray(path)
    assert pixels.tolist() == [[0, 255], [128, 1]]


def test_twelve_bit_data_in_sixteen_bit_file_uses_the_whole_range(tmp_path):
    values = np.array([[0, 4095], [2048, 16]], dtype=np.uint16)
    path = tmp_path / "twelve.png"
    Image.fromarray(values).save(path)
    pixels, _ = decode_gray(path)
    assert pixels.tolist() == [[0, 255], [128, 1]]


def test_float_image(tmp_path):
    values = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values).save(path)
    pixels, _ = decode_gray(path)
    assert pixels.tolist() == [[0, 255], [128, 64]]


def test_other_size_is_resized_and_original_size_reported(tmp_path):
    path = tmp_path / "big.bmp"
    Image.fromarray(np.full((12, 20), 90, np.uint8)).save(path)
    pixels, original = decode_gray(path, size=(H, W))
    assert pixels.shape == (H, W)
    assert original == (20, 12)
    assert (pixels == 90).all()


def test_rgb_jpeg_decodes_to_gray(tmp_path):
    path = tmp_path / "c.JPEG"
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(path, "JPEG")
    pixels, _ = decode_gray(path)
    assert pixels.shape == (H, W)
    assert abs(int(pixels.mean()) - 120) <= 3


def good_jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not an image"),
    (good_jpeg_bytes()[:300], "truncated"),
    (good_jpeg_bytes()[:len(good_jpeg_bytes()) * 2 // 3], "truncated"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image"),
])
def test_broken_files_raise_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason):
        decode_gray(path)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImage, match="vanished"):
        decode_gray(tmp_path / "nope.png")


def test_broken_symlink(tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.raises(UnreadableImage, match="broken symbolic link"):
        decode_gray(link)


def test_directory(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(UnreadableImage, match="folder"):
        decode_gray(tmp_path / "folder.png")


def test_read_size_reads_only_the_header(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(gradient()).save(path)
    assert read_size(path) == (H, W)
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert read_size(tmp_path / "bad.png") is None


@pytest.mark.parametrize("name, expected", [
    ("a.jpg", True), ("a.JPG", True), ("a.Jpeg", True), ("a.png", True), ("a.bmp", True),
    ("a.TIF", True), ("a.tiff", True), ("a.gif", False), ("a.csv", False), ("jpg", False),
])
def test_is_image_name(name, expected):
    assert is_image_name(name) == expected
