"""Training-time missing-pixel masks, one sampler for every family that trains with them.

The VAE trains its encoder on masked images so that q(z | x_obs) can infer from whatever is left;
a discriminative family with ``mask_channel`` trains on the same masks, so that a missing-features
comparison between them measures the family and not the augmentation. Masks follow
:mod:`dgbench.capabilities`: bool, the shape of the images, True = observed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dgbench import DGBenchError


def check_mask_parameters(mask_prob: float, max_missing: float) -> None:
    """Refuse parameters outside [0, 1] with a one-line error, at construction rather than mid-training."""
    for name, value in (("mask_prob", mask_prob), ("max_missing", max_missing)):
        if not 0.0 <= value <= 1.0:
            raise DGBenchError(f"{name}={value} must be a fraction in [0, 1]")


def random_training_mask(x: Tensor, mask_prob: float, max_missing: float) -> Tensor:
    """Masks (N, 1, 28, 28) for a batch ``x`` of 28x28 images, bool, True = observed, on ``x``'s device.

    Each image independently, with probability ``mask_prob``, loses pixels; the others are fully
    observed. A masked image draws a rate r ~ Uniform(0, ``max_missing``) and then, with probability
    1/2 each, either loses every pixel independently with probability r (scattered: a Binomial(784, r)
    count, so the realised fraction fluctuates around r) or loses one rectangle of random aspect
    ratio placed uniformly, whose area is at least one pixel and at most max(r, 2/784) of the image
    (the sides are rounded down). A scattered mask with a small r may lose no pixel at all (chance
    about 1 / (784 * max_missing) over r), so slightly fewer than ``mask_prob`` images end up masked.

    Draws from the global RNG of ``x``'s device, in a fixed order (the VAE's training, and hence
    its results, depend on it): rate, scattered pixels, rectangle shape and position, pattern
    choice, whether to mask at all.
    """
    n, device = len(x), x.device
    rate = torch.rand(n, 1, 1, 1, device=device) * max_missing
    scattered = torch.rand_like(x) >= rate
    # A rectangle of area ~ rate, random aspect ratio, placed uniformly.
    height = (28 * rate.sqrt() * (0.5 + torch.rand_like(rate))).clamp(1, 28).floor()
    width = (28 * 28 * rate / height).clamp(1, 28).floor()
    top, left = (torch.rand_like(rate) * (29 - height)).floor(), (torch.rand_like(rate) * (29 - width)).floor()
    grid = torch.arange(28, device=device, dtype=x.dtype)
    rows = (grid.view(1, 1, 28, 1) >= top) & (grid.view(1, 1, 28, 1) < top + height)
    cols = (grid.view(1, 1, 1, 28) >= left) & (grid.view(1, 1, 1, 28) < left + width)
    pattern = torch.where(torch.rand_like(rate) < 0.5, scattered, ~(rows & cols))
    return pattern | (torch.rand_like(rate) >= mask_prob)
