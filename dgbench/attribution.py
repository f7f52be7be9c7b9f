"""Per-pixel attribution helpers: integrated gradients, decisions, and deletion / insertion curves.

Integrated gradients (Sundararajan, Taly & Yan 2017, eq. 1) attribute a differentiable score F to
each input coordinate along the straight path from a baseline x' to x:

    IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x')) / dx_i da ~= (x_i - x'_i) * 1/m sum_k dF/dx_i at a_k

with the midpoint rule a_k = (k + 1/2) / m. Completeness: sum_i IG_i = F(x) - F(x') up to the
quadrature error, which vanishes for a linear F (then IG_i = w_i (x_i - x'_i) exactly).

Deletion and insertion (Petsiuk, Das & Saenko 2018, "RISE", §4.1): rank pixels by attribution,
delete (make *missing*) the most-attributed first, and follow the probability of the originally
predicted class; its area is low when the ranking found the pixels the decision rests on.
Insertion starts from nothing observed and adds them in the same order; its area is high then.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

IG_STEPS = 32


def integrated_gradients(
    fn: Callable[[Tensor], Tensor], x: Tensor, baseline: Tensor | None = None, steps: int = IG_STEPS
) -> Tensor:
    """IG of ``fn`` ((N, ...) -> (N,), one score per example) at ``x``; zero baseline by default.

    Runs with gradients enabled even inside ``torch.inference_mode`` (inputs are cloned out of it),
    one forward and backward pass per step, in float32. Returns attributions shaped like ``x``.
    """
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        x = x.detach().clone().float()
        baseline = torch.zeros_like(x) if baseline is None else baseline.detach().clone().float()
        total = torch.zeros_like(x)
        for k in range(steps):
            point = (baseline + (k + 0.5) / steps * (x - baseline)).requires_grad_(True)
            (grad,) = torch.autograd.grad(fn(point).sum(), point)
            total += grad
        return ((x - baseline) * total / steps).detach()


def decision(scores: Tensor) -> tuple[Tensor, Tensor]:
    """The predicted class ŷ (``argmax``, as the evaluation takes it) and the runner-up y' (the highest
    other score) of scores (N, classes)."""
    predicted = scores.argmax(1)
    others = scores.float().scatter(1, predicted[:, None], float("-inf"))
    return predicted, others.argmax(1)


def autograd_copy(tensor: Tensor) -> Tensor:
    """A copy autograd may save (an output of ``torch.inference_mode`` code may not be)."""
    with torch.inference_mode(False):
        return tensor.clone()


def pick(values: Tensor, labels: Tensor) -> Tensor:
    """``values[n, labels[n]]`` for values (N, classes, ...)."""
    return values[torch.arange(len(labels), device=values.device), labels]


def ranking(attributions: Tensor, generator: torch.Generator) -> Tensor:
    """Pixel indices (N, pixels), most-attributed first; ties (e.g. the zero attributions of a blank
    background) in a seeded random order rather than raster order, which would favour the top rows."""
    flat = attributions.flatten(1).float().cpu()
    shuffle = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(len(flat))])
    order = flat.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    return shuffle.gather(1, order)


def masks_at(order: Tensor, count: int, shape: torch.Size) -> Tensor:
    """Bool (N, *shape) masks, True at the first ``count`` pixels of each row of ``order``."""
    mask = torch.zeros(order.shape, dtype=torch.bool)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(len(order), *shape)


def area_under_curve(fractions: Tensor, values: Tensor) -> Tensor:
    """Trapezoid area under ``values`` (N, points) against ``fractions`` (points,) in [0, 1]."""
    widths = fractions[1:] - fractions[:-1]
    return ((values[:, 1:] + values[:, :-1]) / 2 * widths).sum(1)


def bootstrap_mean_ci(values: Tensor, resamples: int = 2000, seed: int = 0) -> list[float]:
    """Percentile-bootstrap 95 % interval of the mean of ``values`` (N,) (Efron & Tibshirani 1993)."""
    values = values.double().flatten()
    draws = torch.randint(len(values), (resamples, len(values)), generator=torch.Generator().manual_seed(seed))
    means = values[draws].mean(1)
    return [means.quantile(0.025).item(), means.quantile(0.975).item()]
