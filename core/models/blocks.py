"""Building blocks shared by DieSight's own compact networks (``designed_resnet``, ``stratified``).

Both start with the same residual trunk (a two-convolution stem, max-pool, then stages of
torchvision ``BasicBlock``s) and end with the same embedding head (Linear -> BatchNorm -> ReLU,
the 32-d vectors the activation-space views plot). Keeping them here means the two models
differ only where their ideas differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock


def make_stem(out_channels: int, first_channels: int = 16) -> nn.Sequential:
    """Two 3x3 convolutions (the first with stride 2) then a 3x3 max-pool: 1/4 resolution.

    Two small kernels instead of ResNet's single 7x7 keep fine detail (defects are often a few
    pixels: a chipped lead, a scratch). The first conv sees ONE channel, so its 3x3 filters live
    in a 9-dimensional space: 16 of them lose nothing against more, and halve the cost of the
    second conv, the most expensive layer of the network (it runs at 1/2 resolution).
    """
    return nn.Sequential(
        nn.Conv2d(1, first_channels, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(first_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(first_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


def make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first changes width / resolution through a 1x1 shortcut."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def make_trunk(stem_channels: int, widths: Sequence[int],
               blocks_per_stage: Sequence[int]) -> nn.Sequential:
    """Stem then one stage per width; every stage after the first halves the resolution.

    With ``len(widths) == 3`` the output is at 1/16 of the input, with 4 at 1/32.
    """
    layers: list[nn.Module] = [make_stem(stem_channels)]
    in_channels = stem_channels
    for index, (width, blocks) in enumerate(zip(widths, blocks_per_stage, strict=True)):
        layers.append(make_stage(in_channels, width, blocks, stride=1 if index == 0 else 2))
        in_channels = width
    return nn.Sequential(*layers)


class EmbeddingLayer(nn.Module):
    """Linear -> BatchNorm1d -> ReLU: the penultimate layer whose output is the embedding.

    A training batch of ONE image (e.g. the last, ragged batch of an epoch) cannot give
    BatchNorm1d batch statistics; instead of failing, that batch is normalised with the running
    statistics, as in evaluation.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        # No bias: the BatchNorm right after it has its own shift.
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.norm = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(batch_norm_or_running(self.norm, self.linear(x)))


def batch_norm_or_running(norm: nn.BatchNorm1d | nn.BatchNorm2d, x: Tensor) -> Tensor:
    """``norm(x)``, except that a training batch with ONE value per channel uses running stats.

    BatchNorm cannot estimate a variance from one value and raises; this happens for a single
    image on a 1-d feature, or on a 1x1 stratum of a small image.
    """
    if norm.training and x.numel() == x.shape[1]:
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            training=False, eps=norm.eps)
    return norm(x)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions and ReLU-fed linears, unit BatchNorms, zero-init residuals.

    The last BatchNorm of every residual block starts at zero so each block begins as the
    identity: the usual trick (Goyal et al. 2017) that makes small-batch training start stably.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, EmbeddingLayer):
            nn.init.kaiming_normal_(module.linear.weight, nonlinearity="relu")
    for module in model.modules():
        if isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
