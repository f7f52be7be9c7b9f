"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Causality comes from masked convolution weights; the network is fully convolutional, so any image
size works (the tests check normalisation on 2x2 images). Two stacks remove the blind spot of the
plain masked PixelCNN: the vertical stack sees every pixel in the rows above (a cone that widens
with depth), the horizontal stack the pixels to the left in the current row, and it receives the
vertical stack's features at the same position. The class enters every gate as a learned bias
(their eq. 4): y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a fixed 0/1 mask (zeros = pixels it may not see).

    Masking (rather than cropped kernels with shifted padding) keeps the receptive field readable
    off the mask, at the cost of multiplying by the masked-out zeros.
    """

    def __init__(self, c_in: int, c_out: int, mask: Tensor, dilation: int = 1) -> None:
        kh, kw = mask.shape
        super().__init__(c_in, c_out, (kh, kw), padding=(dilation * (kh // 2), dilation * (kw // 2)), dilation=dilation)
        self.register_buffer("mask", mask[None, None].clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation)


def vertical_mask(k: int, include_center_row: bool) -> Tensor:
    """k x k kernel over the rows above (and the current row unless this is the first layer)."""
    mask = torch.ones(k, k)
    mask[k // 2 + (1 if include_center_row else 0) :] = 0
    return mask


def horizontal_mask(k: int, include_center: bool) -> Tensor:
    """1 x k kernel over the pixels to the left (and the pixel itself unless this is the first layer)."""
    mask = torch.ones(1, k)
    mask[0, k // 2 + (1 if include_center else 0) :] = 0
    return mask


class GatedLayer(nn.Module):
    """One gated layer: vertical and horizontal stacks, class bias in both gates, residual h."""

    def __init__(self, width: int, num_classes: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.vertical = MaskedConv2d(width, 2 * width, vertical_mask(kernel, True), dilation)
        self.horizontal = MaskedConv2d(width, 2 * width, horizontal_mask(kernel, True), dilation)
        # Vertical features at (i, j) see only rows < i, so feeding them to h at (i, j) is causal.
        self.vertical_to_horizontal = nn.Conv2d(2 * width, 2 * width, 1)
        self.horizontal_out = nn.Conv2d(width, width, 1)
        self.class_bias = nn.Embedding(num_classes, 4 * width)  # V_f h and V_g h for both stacks

    @staticmethod
    def gate(features: Tensor) -> Tensor:
        value, gate = features.chunk(2, dim=1)
        return torch.tanh(value) * torch.sigmoid(gate)

    def forward(self, v: Tensor, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        bias_v, bias_h = self.class_bias(y)[:, :, None, None].chunk(2, dim=1)
        v_features = self.vertical(v)
        h_features = self.horizontal(h) + self.vertical_to_horizontal(v_features)
        return self.gate(v_features + bias_v), h + self.horizontal_out(self.gate(h_features + bias_h))


class GatedPixelCNN(nn.Module):
    """Bernoulli logits (N, 1, H, W) of p(b_i = 1 | b_<i, y), raster order, for binary images b.

    The input is encoded as 2b - 1, so that the zero padding (and a missing pixel, encoded 0) is
    neither black nor white: the border is visible to the first layer.
    """

    def __init__(self, width: int = 32, dilations: tuple[int, ...] = (1, 1, 2, 1), num_classes: int = 10) -> None:
        super().__init__()
        # First layer: the current row / pixel itself is masked out (van den Oord's mask "A").
        self.vertical_in = MaskedConv2d(1, width, vertical_mask(3, False))
        self.horizontal_in = MaskedConv2d(1, width, horizontal_mask(3, False))
        self.layers = nn.ModuleList(GatedLayer(width, num_classes, 3, d) for d in dilations)
        self.out = nn.Sequential(nn.ELU(), nn.Conv2d(width, width, 1), nn.ELU(), nn.Conv2d(width, 1, 1))
        # Rows above that can influence a pixel: 1 for the first layer, +dilation per gated layer;
        # the same number of columns either side bounds the horizontal reach.
        self.receptive_rows = 1 + sum(dilations)

    def forward(self, inputs: Tensor, y: Tensor) -> Tensor:
        """``inputs``: 2b - 1 for observed pixels, 0 for unknown ones."""
        v, h = self.vertical_in(inputs), self.horizontal_in(inputs)
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.out(h)
