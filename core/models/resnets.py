"""The two off-the-shelf baselines of the seed study: torchvision ResNet-18 and ResNet-50.

Each is the unchanged torchvision network with its 1000-class ``fc`` replaced by one logit
(ResNet-18: exactly 11,177,025 parameters, the seed's figure). The parameter names are
torchvision's own (``conv1.weight``, ``layer1.0.bn1.running_mean``, ..., ``fc.weight``), so a
torchvision ImageNet ``state_dict`` the user already has on disk loads directly; its 1000-class
``fc`` is ignored. Nothing is ever downloaded.

Grayscale input: the 3-channel stem is kept (so ImageNet weights fit) and the image is treated
as if its one channel were repeated three times. Instead of materialising the repeated tensor,
``conv1`` runs with its kernel summed over the colour axis, which gives the identical result
(conv is linear in its input channels) at a third of the stem's cost, and gradients still reach
all three colour kernels exactly as with a repeated input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from core.models.base import DefectModel
from core.models.registry import register_model


class TorchvisionResNet(DefectModel):
    """A torchvision ResNet with a one-logit ``fc``, fed grayscale through its RGB stem."""

    def __init__(self, builder: Callable[..., models.ResNet]) -> None:
        super().__init__()
        net = builder(weights=None, num_classes=1)  # weights=None: never download anything
        # Adopt the torchvision modules under their own names so state_dict keys match theirs.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer1, net.layer2,
                                                              net.layer3, net.layer4)
        self.avgpool, self.fc = net.avgpool, net.fc

    @property
    def head(self) -> nn.Linear:
        """The one-logit classifier (torchvision's ``fc``)."""
        return self.fc

    def embed(self, x: Tensor) -> Tensor:
        """Globally pooled features of the last stage, ``(B, 512)`` or ``(B, 2048)``."""
        gray_kernel = self.conv1.weight.sum(dim=1, keepdim=True)  # == feeding x repeated 3 times
        x = F.conv2d(x, gray_kernel, stride=self.conv1.stride, padding=self.conv1.padding)
        x = self.maxpool(self.relu(self.bn1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def adapt_state_dict(self, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], set[str]]:
        """Accept a torchvision ImageNet state_dict: drop its 1000-class ``fc``, keep ours."""
        if "fc.weight" in state and state["fc.weight"].shape != self.fc.weight.shape:
            state = {k: v for k, v in state.items() if k not in ("fc.weight", "fc.bias")}
            return state, {"fc.weight", "fc.bias"}
        return state, set()


@register_model(
    "resnet18",
    description="torchvision ResNet-18 (one logit); accepts local ImageNet weights",
    seed_parameter_count=11_177_025,
)
class ResNet18(TorchvisionResNet):
    """torchvision ResNet-18, one logit, 512-d embedding."""

    embedding_dim = 512

    def __init__(self) -> None:
        super().__init__(models.resnet18)


@register_model(
    "resnet50",
    description="torchvision ResNet-50 (one logit); accepts local ImageNet weights; heavy",
    seed_parameter_count=None,  # the seed only says "25.5e6", the 1000-class ImageNet figure
)
class ResNet50(TorchvisionResNet):
    """torchvision ResNet-50, one logit, 2048-d embedding."""

    embedding_dim = 2048

    def __init__(self) -> None:
        super().__init__(models.resnet50)
