"""``designed_resnet``: the seed study's compact residual network ("Designed Resnet", 2.88 M).

The seed's best plain model beat ResNet-18 with a quarter of its parameters, and its 32-d
penultimate layer is what the activation-space plots show. This is our reconstruction:

* stem: 3x3 conv (stride 2, 16 ch) + 3x3 conv (32 ch) + max-pool -> 1/4 resolution;
* four stages of two BasicBlocks, widths 32 / 64 / 128 / 256 (the ResNet-18 layout at half
  width, so a quarter of its convolution parameters) -> 1/32 resolution;
* global average AND max pool, concatenated -> Linear(512 -> 32) + BatchNorm + ReLU = the
  32-d embedding. A defect (a chipped corner, a bent lead, a particle) covers a few cells of
  the final 9 x 9 map: the average divides its evidence by the area, the max keeps it whole,
  and the average still describes the part as a whole;
* Linear(32 -> 1) head.

Half-width stages suit the data: one grayscale channel of a single, aligned part type has far
less variety than ImageNet, and the smaller network trains ~4x faster per image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.models.base import DefectModel
from core.models.blocks import EmbeddingLayer, init_weights, make_trunk
from core.models.registry import register_model

STEM_CHANNELS = 32
STAGE_WIDTHS = (32, 64, 128, 256)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


@register_model(
    "designed_resnet",
    description="compact residual net of the seed study (half-width ResNet stages, 32-d embedding)",
    seed_parameter_count=2_878_241,
)
class DesignedResNet(DefectModel):
    """Compact four-stage residual network with a 32-d embedding layer."""

    embedding_dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.trunk = make_trunk(STEM_CHANNELS, STAGE_WIDTHS, BLOCKS_PER_STAGE)
        self.avg_pool, self.max_pool = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
        self.embedding = EmbeddingLayer(2 * STAGE_WIDTHS[-1], self.embedding_dim)
        self.head = nn.Linear(self.embedding_dim, 1)
        init_weights(self)

    def embed(self, x: Tensor) -> Tensor:
        """32-d embedding ``(B, 32)`` (non-negative: it follows a ReLU)."""
        features = self.trunk(x)
        pooled = torch.cat([self.avg_pool(features), self.max_pool(features)], dim=1)
        return self.embedding(pooled.flatten(1))
