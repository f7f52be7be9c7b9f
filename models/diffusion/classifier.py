"""The diffusion classifier (Li et al. 2023), written against an ε-function like :mod:`sampling`.

    log p(y|x) = log softmax_y -E_{t,ε} ||ε - ε_θ(x_t, t, y)||²      (Li et al. 2023, eq. 4)

P (t, ε) pairs, the same for every class (and every image), so the class comparison is paired: the
noise common to every class cancels (Li et al. §3.2; Clark & Jaini 2023). Adaptive class elimination
(Li et al. Algorithm 2): every class gets P₁ of the pairs (evenly strided among them); only the K
classes with the smallest error get the rest, so an image costs 10·P₁ + K·(P − P₁) network passes
instead of 10·P. A class keeps the mean error over the pairs it got. Errors are kept per pixel and
summed over observed pixels only, so the same computation classifies and explains.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models.diffusion.schedule import NoiseSchedule

EpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # ε_θ(x_t, t, y) for rows of x_t, t and labels
NUM_CLASSES = 10


def pair_timesteps(pairs: int, num_timesteps: int) -> Tensor:
    """The pairs' t: evenly spaced over [0, T), the midpoints of P equal strata."""
    return ((torch.arange(pairs) + 0.5) * num_timesteps / pairs).long()


def pair_errors(
    schedule: NoiseSchedule, eps: EpsFn, x: Tensor, mask: Tensor, t: Tensor, noise: Tensor, classes: Tensor
) -> Tensor:
    """(ε - ε_θ(x_t, t, y))² per pixel (0 where unobserved), for every image, pair and class of
    ``classes`` (n, K): shape (n, P, K, pixels). Every class of an image sees the same x_t."""
    n, P, K = len(x), len(t), classes.shape[1]
    x_t = schedule.add_noise((x.float() * 2 - 1).repeat_interleave(P, 0), noise.repeat(n, 1, 1, 1), t.repeat(n))
    labels = classes.repeat_interleave(P, 0).flatten()  # rows ordered (image, pair, class)
    predicted = eps(x_t.repeat_interleave(K, 0), t.repeat(n).repeat_interleave(K), labels)
    return (predicted.view(n, P, K, -1) - noise.view(1, P, 1, -1)) ** 2 * mask.view(n, 1, 1, -1)


def split_pairs(pairs: int, first_pairs: int, keep: int) -> tuple[Tensor, Tensor, int]:
    """(indices every class gets, indices only the kept classes get, kept classes K)."""
    K = min(keep, NUM_CLASSES)
    P1 = min(first_pairs, pairs) if K < NUM_CLASSES else pairs
    first = torch.arange(P1) * pairs // P1
    rest = torch.ones(pairs, dtype=torch.bool).index_fill_(0, first, False).nonzero().squeeze(1)
    return first, rest, K


def class_errors(
    schedule: NoiseSchedule, eps: EpsFn, x: Tensor, mask: Tensor, t: Tensor, noise: Tensor, first_pairs: int, keep: int
) -> Tensor:
    """Per-pixel class scores (n, 10, pixels): for each class the mean over the pairs it got (elimination
    above) of (ε - ε_θ(x_t, t, y))², 0 at unobserved pixels. Minus their sum is the class's logit."""
    first, rest, K = split_pairs(len(t), first_pairs, keep)
    first, rest = first.to(x.device), rest.to(x.device)
    every = torch.arange(NUM_CLASSES, device=x.device).expand(len(x), NUM_CLASSES)
    summed = pair_errors(schedule, eps, x, mask, t[first], noise[first], every).sum(1)  # (n, C, pixels)
    if not len(rest):
        return summed / len(t)
    kept = summed.sum(2).topk(K, dim=1, largest=False).indices[..., None].expand(-1, -1, summed.shape[2])
    more = pair_errors(schedule, eps, x, mask, t[rest], noise[rest], kept[..., 0]).sum(1)
    return (summed / len(first)).scatter(1, kept, (summed.gather(1, kept) + more) / len(t))


def passes_per_image(pairs: int, first_pairs: int, keep: int) -> int:
    """Network rows one image needs in the larger of the two rounds (for batching)."""
    first, rest, K = split_pairs(pairs, first_pairs, keep)
    return max(len(first) * NUM_CLASSES, len(rest) * K)
