"""A small UNet ε-predictor with timestep and class embeddings (the DDPM network, Ho et al. 2020).

The layout follows the DDPM / ADM UNet (Ho et al. 2020, App. B; Dhariwal & Nichol 2021) scaled
down for 28x28: one resolution level per entry of ``channels`` (28 -> 14 -> 7), residual blocks
that receive the embedding through a scale-and-shift of their normalised activations
("AdaGN", Dhariwal & Nichol 2021, §3), optional self-attention at chosen levels, and skip
connections from every encoder stage to the mirrored decoder stage. Class index ``num_classes``
is the "null" class used for classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal position embedding of the integer timestep (Vaswani et al. 2017, §3.5)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding as a per-channel scale and shift in between."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2, self.dropout = group_norm(out_channels), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # Zero-initialised last conv: each block starts as the identity, which stabilises early training.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual, zero-initialised output."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm, self.qkv = group_norm(channels), nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (n, heads, hw, c/heads)
        return x + self.out(out.transpose(-1, -2).reshape(n, c, h, w))


class Block(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, dropout)
        self.attn = SelfAttention(out_channels) if attention else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """ε_θ(x_t, t, y) for (N, 1, H, W) inputs; H and W must be divisible by 2**(len(channels) - 1).

    Args:
        channels: widths of the resolution levels, e.g. (32, 64, 64) at 28, 14, 7 pixels.
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more,
            to consume the skip of each downsampling as in ADM).
        attention_levels: indices of the levels that get self-attention after each block.
        num_classes: class labels 0..num_classes-1; label ``num_classes`` means "no class".
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 64),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (2,),
        num_classes: int = 10,
        dropout: float = 0.1,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.null_class, emb_dim, levels = num_classes, 4 * channels[0], len(channels)
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)

        # Encoder: every block's output (and every downsampled map) is kept as a skip connection.
        self.down, skip_channels, ch = nn.ModuleList(), [channels[0]], channels[0]
        for level, width in enumerate(channels):
            for _ in range(num_res_blocks):
                self.down.append(Block(ch, width, emb_dim, dropout, level in attention_levels))
                ch = width
                skip_channels.append(ch)
            if level < levels - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_channels.append(ch)
        bottom_attention = levels - 1 in attention_levels
        self.mid = nn.ModuleList(
            [Block(ch, ch, emb_dim, dropout, bottom_attention), Block(ch, ch, emb_dim, dropout, False)]
        )
        # Decoder: mirror image, each block concatenating one skip; nearest upsampling + conv.
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            for _ in range(num_res_blocks + 1):
                self.up.append(Block(ch + skip_channels.pop(), width, emb_dim, dropout, level in attention_levels))
                ch = width
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))
                )
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.conv_in.out_channels)) + self.class_emb(labels)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block) else layer(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(layer, Block) else layer(h)
        return self.out(h)
