"""A small decoder-only transformer (GPT-2, Radford et al. 2019) and the lossless patch tokeniser it reads.

Images as sequences (ImageGPT, Chen et al. 2020): a binary image is cut into 2x2 patches, each patch
one of 16 symbols s = b_tl + 2 b_tr + 4 b_bl + 8 b_br, the patches in raster order (a 28x28 image is
196 tokens). The network models the sequence by the chain rule, p(s) = prod_t p(s_t | s_<t), each
factor a softmax over the logits of position t:

    h_0 = E[s_<t] + P[t],   h_l = h_l-1 + Attn(LN(h_l-1)),  h_l = h_l + MLP(LN(h_l))   (pre-LayerNorm blocks)
    logits_t = LN(h_L)_t E_out^T                                                     (tied: E_out = rows of E)

Attention is causal (``scaled_dot_product_attention`` with a lower-triangular mask), so position t
sees only tokens <= t. A key-value cache makes incremental decoding cost one token per step: each
block keeps the keys and values of the tokens seen so far and attends from the new ones to all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCH = 2  # side of a patch: 2x2 binary pixels, 16 symbols
SYMBOLS = 2 ** (PATCH * PATCH)
Cache = list[tuple[Tensor, Tensor]]  # per block: keys and values (N, heads, tokens so far, head width)


def to_patches(pixels: Tensor) -> Tensor:
    """(N, 1, H, W) -> (N, H/2 * W/2, 4): the 4 pixels of each 2x2 patch (tl, tr, bl, br), patches in raster order."""
    n, _, height, width = pixels.shape
    grid = pixels.reshape(n, height // PATCH, PATCH, width // PATCH, PATCH)
    return grid.permute(0, 1, 3, 2, 4).reshape(n, -1, PATCH * PATCH)


def from_patches(patches: Tensor, side: int) -> Tensor:
    """Inverse of ``to_patches`` for a square image of ``side`` pixels: (N, T, 4) -> (N, 1, side, side)."""
    n, k = len(patches), side // PATCH
    return patches.reshape(n, k, k, PATCH, PATCH).permute(0, 1, 3, 2, 4).reshape(n, 1, side, side)


BIT_VALUES = 2 ** torch.arange(PATCH * PATCH)  # symbol = sum of bit_j 2^j


def tokenize(binary: Tensor) -> Tensor:
    """Binary images (N, 1, H, W) -> int64 tokens (N, H/2 * W/2) in [0, 16)."""
    return (to_patches(binary).long() * BIT_VALUES.to(binary.device)).sum(-1)


def symbol_bits(tokens: Tensor) -> Tensor:
    """Tokens (...) -> their 4 pixels (..., 4) as 0/1 int64."""
    return (tokens[..., None] >> torch.arange(PATCH * PATCH, device=tokens.device)) & 1


def agreeing(tokens: Tensor, known: Tensor) -> Tensor:
    """(..., 16) bool: the symbols whose pixels equal those of ``tokens`` (...) where ``known`` (..., 4)."""
    every = symbol_bits(torch.arange(SYMBOLS, device=tokens.device))
    return ((every == symbol_bits(tokens)[..., None, :]) | ~known[..., None, :]).all(-1)


def detokenize(tokens: Tensor, side: int) -> Tensor:
    """Tokens (N, T) -> binary float images (N, 1, side, side); ``detokenize(tokenize(b)) == b``."""
    return from_patches(symbol_bits(tokens).float(), side)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal multi-head self-attention, then a 4x-wide GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: Tensor, cache: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        n, t, width = h.shape
        q, k, v = (z.view(n, t, self.heads, -1).transpose(1, 2) for z in self.qkv(self.norm1(h)).split(width, -1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        past = k.shape[2] - t
        # New token i (position past + i) sees keys 0..past + i: a causal mask aligned bottom-right.
        mask = torch.ones(t, past + t, dtype=torch.bool, device=h.device).tril(past)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.proj(attended.transpose(1, 2).reshape(n, t, width))
        return h + self.mlp(self.norm2(h)), (k, v)


class DecoderTransformer(nn.Module):
    """Next-token logits over ``outputs`` symbols for a sequence of ``vocabulary`` >= ``outputs`` tokens.

    Input tokens 0..outputs-1 are the symbols the model predicts; tokens above (start tokens) are
    only read. The output embedding is the input embedding of the predicted symbols (tied weights).
    """

    def __init__(self, vocabulary: int, outputs: int, length: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.outputs = outputs
        self.embed, self.position = nn.Embedding(vocabulary, width), nn.Embedding(length, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        for module in self.modules():  # GPT-2's initialisation
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(
        self, tokens: Tensor, cache: Cache | None = None, states: list[Tensor] | None = None
    ) -> tuple[Tensor, Cache]:
        """Logits (N, T, outputs) for tokens (N, T) that follow the ``cache``d ones, and the extended cache.
        ``states``: a list that receives every block's output (N, T, width), first block first."""
        past = 0 if cache is None else cache[0][0].shape[2]
        positions = torch.arange(past, past + tokens.shape[1], device=tokens.device)
        h = self.embed(tokens) + self.position(positions)
        new_cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, None if cache is None else cache[i])
            new_cache.append(kv)
            if states is not None:
                states.append(h)
        return self.norm(h) @ self.embed.weight[: self.outputs].T, new_cache
