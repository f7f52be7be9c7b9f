"""Reusable networks. Families in this package compose these; none of them knows about training."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        # The projection shortcut sees the activated input, as in the pre-activation paper.
        shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class ResNet(nn.Module):
    """A ResNet for 28x28 images of ``in_channels`` channels (1: a gray image).

    A 3x3 stem (stride ``stem_stride``) is followed by ``len(stages)`` stages of ``depth``
    blocks each; stage ``i`` has ``width * 2**i`` channels and halves the resolution, except
    the first. Input is expected in [0, 1]; it is centred here so callers never normalise.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 32,
        depth: int = 2,
        num_stages: int = 3,
        stem_stride: int = 1,
        dropout: float = 0.0,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False)
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(num_stages):
            out_channels = width * 2**stage
            for block in range(depth):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, channels): what FID-style metrics embed images with."""
        return self.head[:-2](self.blocks(self.stem(x * 2.0 - 1.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[-2:](self.features(x))
