"""Missing-pixel masks: the training-time sampler of every family that trains with them, and the
fixed patterns (bottom half, random pixels, a mask image) that sample.py imputes with.

The VAE trains its encoder on masked images so that q(z | x_obs) can infer from whatever is left;
a discriminative family with ``mask_channel`` trains on the same masks, so that a missing-features
comparison between them measures the family and not the augmentation. Masks follow
:mod:`dgbench.capabilities`: bool, the shape of the images, True = observed.
"""

from __future__ import annotations

from pathlib import Path

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


def bottom_half_mask(n: int) -> Tensor:
    """Masks (n, 1, 28, 28), bool, True = observed: the top 14 rows observed, the bottom 14 missing."""
    mask = torch.ones(n, 1, 28, 28, dtype=torch.bool)
    mask[:, :, 14:] = False
    return mask


def random_pixel_mask(n: int, missing: float, generator: torch.Generator | None = None) -> Tensor:
    """Masks (n, 1, 28, 28), bool, True = observed: each pixel missing independently with probability
    ``missing`` (pixel observed where u >= missing, u ~ Uniform[0, 1) drawn from ``generator``)."""
    return torch.rand(n, 1, 28, 28, generator=generator) >= missing


def mask_from_spec(spec: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Masks (n, 1, 28, 28), bool, True = observed, named by ``spec``: ``bottom_half``,
    ``random_<fraction of pixels missing>`` (e.g. ``random_0.5``) or the path of a 28x28 PNG (white = observed)."""
    if spec == "bottom_half":
        return bottom_half_mask(n)
    if spec.startswith("random_"):
        try:
            missing = float(spec.removeprefix("random_"))
        except ValueError:
            missing = -1.0
        if not 0 <= missing <= 1:
            raise DGBenchError(f"impute={spec}: write random_<fraction of pixels missing in [0, 1]>, e.g. random_0.5")
        return random_pixel_mask(n, missing, generator)
    path = Path(spec)
    if not path.is_file():
        raise DGBenchError(f"impute={spec}: choose bottom_half, random_<fraction> or the path of a 28x28 mask PNG")
    from torchvision.io import ImageReadMode, read_image

    image = read_image(str(path), ImageReadMode.GRAY)
    if image.shape[-2:] != (28, 28):
        raise DGBenchError(f"mask {path} is {tuple(image.shape[-2:])} pixels: it must be 28x28 (white = observed)")
    return (image > 127).expand(n, 1, 28, 28).clone()
