"""Robust decoding of one image file into a uint8 grayscale array.

Everything the folder may hold is turned into the dataset's format here: RGB, palette,
LA/RGBA, 16-bit and float images become 8-bit grayscale, and images of another size are
resized to the dataset's size. A file that cannot be decoded raises
:class:`UnreadableImage` with a reason a user can act on, never a bare library error.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

# 16-bit industrial cameras often store 12-bit data; values that never exceed this are
# scaled as 12-bit so such images are not left nearly black.
_TWELVE_BIT_MAX = 4095

# Modes whose values exceed 8 bits; Pillow's own conversion to 'L' would clip them.
_HIGH_DEPTH_PREFIXES = ("I", "F")


class UnreadableImage(Exception):
    """A file that could not be decoded; ``str(exc)`` is the reason shown to the user."""


def is_image_name(name: str) -> bool:
    """True when ``name`` has one of the image extensions (any case)."""
    dot = name.rfind(".")  # cheaper than os.path.splitext, called once per file per open
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def read_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """The (height, width) from the file header without decoding pixels; None if unreadable."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception:  # any broken file: the decode step reports it properly
        return None
    return height, width


def decode_gray(path: str | os.PathLike, size: tuple[int, int] | None = None, *,
                data: bytes | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image file to a uint8 grayscale array.

    Args:
        path: the image file (named in error messages).
        size: (height, width) to resize to when the image differs; None keeps its size.
        data: the file's bytes when the caller has read them already (the cache hashes
            them), so the file is not read twice.

    Returns:
        The (height, width) uint8 array and the original (width, height) of the file.

    Raises:
        UnreadableImage: the file is empty, not an image, truncated, unreadable, ...
    """
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            original = im.size
            gray = _to_gray(im)
            if size is not None and gray.size != (size[1], size[0]):
                gray = gray.resize((size[1], size[0]), Image.Resampling.BILINEAR,
                                   reducing_gap=2.0)
            pixels = np.asarray(gray, dtype=np.uint8)
    except UnreadableImage:
        raise
    except Exception as exc:  # Pillow raises many types for broken data
        raise UnreadableImage(decode_failure_reason(exc, path)) from exc
    return pixels, original


def _to_gray(im: Image.Image) -> Image.Image:
    """Convert any Pillow image to mode 'L' (decoding its pixels)."""
    if im.format == "JPEG" and im.mode != "L":
        # Let the JPEG decoder produce luminance directly instead of RGB then convert.
        im.draft("L", im.size)
    if im.mode == "L":  # the usual case: no conversion copy
        im.load()
        return im
    if im.mode.startswith(_HIGH_DEPTH_PREFIXES):
        return Image.fromarray(_scale_to_uint8(np.asarray(im)))
    try:
        return im.convert("L")
    except ValueError:  # a mode with no direct conversion (e.g. 'PA'): go through RGBA
        return im.convert("RGBA").convert("L")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a high-bit-depth single-channel image to 0..255."""
    if values.ndim == 3:  # a multi-channel high-depth image: average the channels
        values = values.mean(axis=2)
    if values.size == 0:
        raise UnreadableImage("image has no pixels")
    if np.issubdtype(values.dtype, np.floating):
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(values.max())
        full = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else peak
    else:
        peak = int(values.max())
        full = _TWELVE_BIT_MAX if peak <= _TWELVE_BIT_MAX else 65535 if peak <= 65535 else peak
        values = values.astype(np.float32)
    scaled = np.clip(values, 0, full) * (255.0 / full)
    return np.rint(scaled).astype(np.uint8)


def decode_failure_reason(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """A short, user-facing reason for a failed read or decode."""
    if isinstance(exc, UnreadableImage):
        return str(exc)
    if isinstance(exc, UnidentifiedImageError):
        if path is not None and _is_empty(path):
            return "empty file (0 bytes)"
        return "not an image (unrecognised format)"
    if isinstance(exc, PermissionError):
        return "no permission to read"
    if isinstance(exc, FileNotFoundError):
        if path is not None and os.path.islink(path):
            return "broken symbolic link"
        return "file vanished while reading"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large (decompression bomb guard)"
    if isinstance(exc, OSError) and exc.errno in (errno.EIO, errno.ESTALE, errno.ENXIO):
        return f"read error ({exc.strerror or exc})"
    if "truncated" in str(exc).lower():
        return "truncated image"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"corrupt image ({detail[:120]})"


def _is_empty(path: str | os.PathLike) -> bool:
    try:
        return Path(path).stat().st_size == 0
    except OSError:
        return False
