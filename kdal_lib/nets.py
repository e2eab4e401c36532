"""Network builders shared by the methods (one place for torchvision's ResNet-18 and its stems)."""
from __future__ import annotations

import torch
from torch import nn

from .validation import check_param

__all__ = ["RESNET_STEMS", "resnet18_net"]

#: ``imagenet``: torchvision's 7×7 stride-2 conv + max-pool; ``cifar``: 3×3 stride-1 conv, no max-pool (small
#: images); ``stride2``: 3×3 stride-2 conv, no max-pool (28 px → 14 px, cheaper on CPU); ``stride1``: 7×7
#: stride-1 conv with the max-pool kept (the AngularDINO original)
RESNET_STEMS = ("imagenet", "cifar", "stride2", "stride1")


def resnet18_net(in_channels: int = 3, n_outputs: int = 1000, stem: str = "imagenet",
                 weights_path: str | None = None) -> nn.Module:
    """torchvision ResNet-18 (random init; nothing is downloaded) with ``n_outputs`` outputs and the given stem.

    ``weights_path``: a local torchvision ImageNet state dict, loaded with ``weights_only=True`` before the
    stem and head are adapted (the ImageNet conv1 is kept when ``stem="imagenet"`` and 3 channels)."""
    from torchvision.models import resnet18

    check_param("stem", stem, choices=RESNET_STEMS)
    if weights_path:
        net = resnet18(weights=None)
        net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        net.fc = nn.Linear(net.fc.in_features, n_outputs)
    else:
        net = resnet18(weights=None, num_classes=n_outputs)
    if stem == "imagenet":
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    elif stem == "stride1":
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 1, 3, bias=False)
    else:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1 if stem == "cifar" else 2, 1, bias=False)
        net.maxpool = nn.Identity()
    return net
