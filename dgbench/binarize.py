"""The binarized-MNIST likelihood protocol shared by every Bernoulli family (the VAE's, Burda et al. 2016).

Training sees dynamic binarizations b ~ Bernoulli(x), a fresh one each time an image is used;
test likelihoods are of one fixed binarization, so nats compare across families and runs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fixed_binarization(x: Tensor, seed: int = 0) -> Tensor:
    """A fixed Bernoulli(x) sample: one seeded uniform threshold per pixel position.

    Each pixel is marginally Bernoulli(x_i), and an image's binarization does not depend on the
    batch it comes in. For 28x28 images and the same seed the thresholds are those of
    ``ConditionalVAE.binarize``, so the test images are the same binary images.
    """
    thresholds = torch.rand((1, *x.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return (thresholds.to(x.device) < x).to(x.dtype)


def dynamic_binarization(x: Tensor) -> Tensor:
    """A fresh b ~ Bernoulli(x) (training data augmentation that keeps p(b) a proper likelihood)."""
    return torch.bernoulli(x.float()).to(x.dtype)
