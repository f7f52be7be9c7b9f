"""Small convolutional encoder/decoder pair for 28x28 images, reusable by any latent-variable family.

Both are plain ``nn.Module`` s that know nothing about distributions: the encoder maps images
(plus any extra input channels, e.g. a missing-pixel mask) to a feature vector, the decoder maps a
vector (e.g. a latent code concatenated with a one-hot label) to per-pixel logits. Which
distribution those numbers parameterise is the family's business.

Layout: 28 -> 14 -> 7 with stride-2 4x4 convolutions (DCGAN-style, Radford et al. 2016), one
3x3 convolution at 7x7, and a linear layer between the 7x7 map and the vector. No normalisation
layers: batch statistics would make an image's likelihood depend on the rest of its batch.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvEncoder(nn.Module):
    """(N, in_channels, 28, 28) -> (N, out_features)."""

    def __init__(self, in_channels: int, out_features: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1),  # 28 -> 14
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # 14 -> 7
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(N, in_features) -> (N, out_channels, 28, 28) unnormalised outputs (e.g. Bernoulli logits)."""

    def __init__(self, in_features: int, out_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.project = nn.Linear(in_features, 2 * width * 7 * 7)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),  # 7 -> 14
            nn.SiLU(),
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1),  # 14 -> 28
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(h).view(-1, 2 * self.width, 7, 7))
