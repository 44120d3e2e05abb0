"""``stratified``: the seed study's best model, a network with a *stratified convolution* (3.1 M).

Idea. The images are aligned: the part sits centred in its carrier pocket, so a given region of
every image always shows the same thing - the package body in the middle, the leads above and
below it, the pocket walls at the sides, background in the corners. What a defect looks like
differs by region (a bent lead, a cracked body, a part shifted against the wall), yet an
ordinary convolution applies ONE kernel everywhere. A stratified convolution splits the image
into fixed spatial strata and learns a SEPARATE kernel set for each.

Design chosen here, and why:

* Shared trunk first (stem + three half-width ResNet stages, as in ``designed_resnet``) down to
  1/16 resolution. Low-level features - edges, texture, lead outlines - are the same everywhere,
  so sharing them costs nothing and gives every trunk kernel the whole image to learn from.
* Then :class:`StratifiedConv2d` (3x3, 128 -> 224 channels) with a 3 x 3 grid of strata cut at
  thirds of the height and width (9 kernel sets): centre = package body, top / bottom centre =
  the two lead rows, left / right centre = pocket walls, corners = pocket corners. The grid
  contains both readings the team discussed (horizontal bands *and* centre vs edge), and the
  cuts are fractions, so it works at any input size (>= 64 px: the 1/16 map then has >= 4 rows).
  Each stratum also has its own BatchNorm, because body and wall activations have different
  statistics and channel c means a different feature in each stratum.
* Per-stratum average pooling, concatenated (9 x 224 values), then Linear -> BatchNorm -> ReLU
  to the 32-d embedding and Linear(32 -> 1). Pooling each stratum separately keeps WHERE the
  evidence came from; one global pool would throw away what the stratification bought.

Implementation. Strata partition the OUTPUT positions; an output position of stratum k is
computed with kernel set k from its usual 3x3 neighbourhood (which may reach into the next
stratum), exactly as "run all K kernel sets everywhere, then select by the stratum map". Instead
of that K-fold computation, each stratum's rectangle is convolved on its own slice of the
(once) zero-padded input, so the layer costs the same as one ordinary convolution; it uses only
pad / slice / conv2d / cat, so it is autocast- (bf16 / fp16) and channels_last-friendly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.models.base import DefectModel
from core.models.blocks import EmbeddingLayer, batch_norm_or_running, init_weights, make_trunk
from core.models.registry import register_model

THIRDS = (1 / 3, 2 / 3)
TRUNK_STEM_CHANNELS = 32
TRUNK_WIDTHS = (32, 64, 128)
TRUNK_BLOCKS = (2, 2, 2)
STRATIFIED_CHANNELS = 224


@dataclass(frozen=True)
class Stratum:
    """One rectangle of a feature map: rows ``[top, bottom)`` and columns ``[left, right)``."""

    index: int
    top: int
    bottom: int
    left: int
    right: int


def band_edges(size: int, cuts: Sequence[float]) -> list[int]:
    """Split ``size`` rows (or columns) at fractional ``cuts`` into non-empty bands.

    Returns:
        ``len(cuts) + 2`` increasing edges from 0 to ``size``.

    Raises:
        ValueError: ``size`` is smaller than the number of bands.
    """
    bands = len(cuts) + 1
    if size < bands:
        raise ValueError(f"a feature map of {size} rows/columns cannot hold {bands} strata; "
                         "use larger images")
    edges = [0]
    for position, cut in enumerate(cuts, start=1):
        # Round to the nearest row, but keep every band (this one and those left) non-empty.
        edge = round(size * cut)
        edges.append(min(max(edge, edges[-1] + 1), size - (bands - position)))
    edges.append(size)
    return edges


class StratifiedConv2d(nn.Module):
    """A stride-1 convolution with a separate kernel set for each cell of a fractional grid.

    Args:
        in_channels: input channels.
        out_channels: output channels (per stratum; every stratum produces all of them).
        kernel_size: odd square kernel size; the output keeps the input's height and width.
        row_cuts: increasing fractions of the height where a new band of strata starts.
        col_cuts: increasing fractions of the width where a new column of strata starts.

    ``weight`` has shape ``(num_strata * out, in, k, k)`` (4-D, so ``model.to(channels_last)``
    converts it like any conv weight); ``kernel_set(k)`` = rows ``k*out:(k+1)*out`` is the kernel
    set of stratum ``k``. Strata are numbered row-major
    (``k = row_band * (len(col_cuts) + 1) + col_band``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 row_cuts: Sequence[float] = THIRDS, col_cuts: Sequence[float] = THIRDS) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        for cuts in (row_cuts, col_cuts):
            if list(cuts) != sorted(cuts) or any(not 0 < c < 1 for c in cuts):
                raise ValueError(f"cuts must be increasing fractions in (0, 1), got {cuts}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        self.row_cuts, self.col_cuts = tuple(row_cuts), tuple(col_cuts)
        self.num_strata = (len(self.row_cuts) + 1) * (len(self.col_cuts) + 1)
        self.weight = nn.Parameter(torch.empty(self.num_strata * out_channels, in_channels,
                                               kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out, ReLU) per kernel set, like the torchvision convolutions."""
        std = math.sqrt(2.0 / (self.out_channels * self.kernel_size ** 2))
        nn.init.normal_(self.weight, mean=0.0, std=std)

    def kernel_set(self, index: int) -> Tensor:
        """The ``(out, in, k, k)`` kernels of stratum ``index`` (a view of :attr:`weight`)."""
        return self.weight[index * self.out_channels:(index + 1) * self.out_channels]

    def strata(self, height: int, width: int) -> list[Stratum]:
        """The strata of a ``height x width`` feature map, in index order."""
        rows, cols = band_edges(height, self.row_cuts), band_edges(width, self.col_cuts)
        n_cols = len(cols) - 1
        return [Stratum(r * n_cols + c, rows[r], rows[r + 1], cols[c], cols[c + 1])
                for r in range(len(rows) - 1) for c in range(n_cols)]

    def stratum_map(self, height: int, width: int) -> Tensor:
        """``(height, width)`` int64 map of stratum indices (for plots and checks)."""
        index_map = torch.empty(height, width, dtype=torch.long)
        for s in self.strata(height, width):
            index_map[s.top:s.bottom, s.left:s.right] = s.index
        return index_map

    def stratum_outputs(self, x: Tensor) -> list[Tensor]:
        """Each stratum's output rectangle ``(B, out, rows_k, cols_k)``, in index order."""
        pad = self.kernel_size // 2
        padded = F.pad(x, (pad, pad, pad, pad))  # zero padding, as an ordinary conv would use
        return [F.conv2d(padded[:, :, s.top:s.bottom + 2 * pad, s.left:s.right + 2 * pad],
                         self.kernel_set(s.index))
                for s in self.strata(x.shape[2], x.shape[3])]

    def forward(self, x: Tensor) -> Tensor:
        """Full output map ``(B, out, H, W)``: each stratum's rectangle from its own kernels."""
        return self.assemble(self.stratum_outputs(x))

    def assemble(self, pieces: Sequence[Tensor]) -> Tensor:
        """Stitch per-stratum rectangles (row-major order) back into one map."""
        per_row = len(self.col_cuts) + 1
        rows = [torch.cat(list(pieces[i:i + per_row]), dim=3)
                for i in range(0, len(pieces), per_row)]
        return torch.cat(rows, dim=2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"row_cuts={self.row_cuts}, col_cuts={self.col_cuts}")


@register_model(
    "stratified",
    description="shared residual trunk + 3x3-grid stratified convolution (seed's best model)",
    seed_parameter_count=3_118_497,
)
class StratifiedNet(DefectModel):
    """Shared trunk -> stratified conv (+ per-stratum BN/ReLU) -> per-stratum pooling -> 32-d."""

    embedding_dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.trunk = make_trunk(TRUNK_STEM_CHANNELS, TRUNK_WIDTHS, TRUNK_BLOCKS)
        self.stratified = StratifiedConv2d(TRUNK_WIDTHS[-1], STRATIFIED_CHANNELS)
        self.stratum_norms = nn.ModuleList(nn.BatchNorm2d(STRATIFIED_CHANNELS)
                                           for _ in range(self.stratified.num_strata))
        self.relu = nn.ReLU(inplace=True)
        self.embedding = EmbeddingLayer(self.stratified.num_strata * STRATIFIED_CHANNELS,
                                        self.embedding_dim)
        self.head = nn.Linear(self.embedding_dim, 1)
        init_weights(self)

    def embed(self, x: Tensor) -> Tensor:
        """32-d embedding ``(B, 32)`` (non-negative: it follows a ReLU)."""
        pieces = self.stratified.stratum_outputs(self.trunk(x))
        pooled = [self.relu(batch_norm_or_running(norm, piece)).mean(dim=(2, 3))
                  for norm, piece in zip(self.stratum_norms, pieces, strict=True)]
        return self.embedding(torch.cat(pooled, dim=1))
