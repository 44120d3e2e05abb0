"""The network-input resize in plain numpy, bit for bit the one training and scoring use.

DieSight resizes each cached uint8 image to a run's input size with PyTorch's antialiased
bilinear interpolation (``core.training.data._resize_uint8``: float32, then rounded half to
even and clipped to 0..255). The line-side scorer (``core.onnx_scoring``) must not import
torch yet has to feed the ONNX model the very pixels the torch path feeds the network, or
the two logits would differ by more than rounding. This module repeats that computation:

* the weights are PyTorch's (``_compute_indices_min_size_weights_aa`` for float32: a
  triangle filter widened by the downscale factor, normalised per output pixel), with the
  same float32 / float64 mix in every step;
* each axis is one pass, the width first, then the height; an axis whose size does not
  change is skipped, as PyTorch skips it;
* an output value accumulates its taps in order: PyTorch's CPU kernel (GCC, AVX2 build)
  multiplies the first 4 * floor((taps - 1) / 4) taps after the first one four at a time,
  rounding each product to float32 before the add, and fuses the remaining multiply-adds
  (one rounding each). Both are reproduced, so the float32 results are identical, not
  merely close (``tests/core/test_onnx.py`` compares them with PyTorch over many sizes).

That accumulation order is the compiled kernel's, measured on PyTorch's AVX2 CPU kernel.
Another build (AVX-512, ARM) may order it differently; then a value that lands within a
float32 rounding of a half grey level can round the other way: a rare pixel one grey
level apart, never more.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_F32 = np.float32
_F64 = np.float64
# Taps (after the first) that PyTorch's kernel multiplies as one vector before adding.
_UNFUSED_BLOCK = 4
_BLOCK_COLUMNS = 2048


def resize_uint8(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Resize uint8 images ``(..., H, W)`` to ``(..., rows, cols)`` as DieSight's torch path does.

    Returns:
        A uint8 array; the input itself when its size is already ``(rows, cols)``.
    """
    if images.shape[-2:] == (rows, cols):
        return images
    values = images.astype(_F32)
    if values.shape[-1] != cols:
        values = _resample_axis(values, values.ndim - 1, cols)
    if values.shape[-2] != rows:
        values = _resample_axis(values, values.ndim - 2, rows)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _resample_axis(values: np.ndarray, axis: int, size: int) -> np.ndarray:
    """One antialiased bilinear pass along ``axis`` (float32 in, float32 out)."""
    # The resampled axis goes first, so each tap gathers whole contiguous rows.
    moved = np.moveaxis(values, axis, 0)
    lines = np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
    out = np.empty((size, lines.shape[1]), dtype=_F32)
    taps = _taps(moved.shape[0], size)
    # Column blocks keep the float64 temporaries in the CPU cache (several times faster).
    for start in range(0, lines.shape[1], _BLOCK_COLUMNS):
        block = slice(start, start + _BLOCK_COLUMNS)
        out[:, block] = _resample_lines(lines[:, block], *taps)
    return np.moveaxis(out.reshape((size,) + moved.shape[1:]), 0, axis)


def _resample_lines(lines: np.ndarray, first: np.ndarray, weights: np.ndarray,
                    counts: np.ndarray) -> np.ndarray:
    """Output row i = the weighted sum of ``counts[i]`` input rows from ``first[i]``, in
    PyTorch's order and roundings."""
    out = lines[first] * weights[:, :1]
    unfused = (counts - 1) // _UNFUSED_BLOCK * _UNFUSED_BLOCK
    for k in range(1, weights.shape[1]):
        plain = np.flatnonzero((k < counts) & (k <= unfused))
        fused = np.flatnonzero((k < counts) & (k > unfused))
        if len(plain):
            out[plain] += lines[first[plain] + k] * weights[plain, k:k + 1]
        if len(fused):
            # A fused multiply-add: the float32 product is exact in float64, one rounding.
            exact = lines[first[fused] + k].astype(_F64) * weights[fused, k:k + 1].astype(_F64)
            out[fused] = (out[fused].astype(_F64) + exact).astype(_F32)
    return out


@lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel: its first input index, its weights (float32, zero-padded to the
    widest) and how many taps it uses."""
    scale = _F32(_F32(in_size) / _F32(out_size))
    support = scale if scale >= 1.0 else _F32(1.0)
    inverse = _F32(1.0 / _F64(scale)) if scale >= 1.0 else _F32(1.0)
    max_taps = int(math.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.int64)
    counts = np.zeros(out_size, dtype=np.int64)
    weights = np.zeros((out_size, max_taps), dtype=_F32)
    for i in range(out_size):
        center = _F32(_F64(scale) * (i + 0.5))
        lo = max(int(_F64(_F32(center - support)) + 0.5), 0)
        hi = min(int(_F64(_F32(center + support)) + 0.5), in_size)
        count = min(max(hi - lo, 0), max_taps)
        row = [_triangle(_F32((_F64(_F32(_F32(lo + j) - center)) + 0.5) * _F64(inverse)))
               for j in range(count)]
        total = _F32(0.0)
        for w in row:
            total = _F32(total + w)
        for j, w in enumerate(row):
            weights[i, j] = _F32(w / total) if total != 0 else w
        first[i], counts[i] = lo, count
    return first, weights, counts


def _triangle(x: np.float32) -> np.float32:
    x = abs(x)
    return _F32(1.0 - _F64(x)) if x < 1.0 else _F32(0.0)
