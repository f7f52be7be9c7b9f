"""Inference of a diffusion model, written against an ε-function and a noise schedule.

The reverse-process loops (sampling, DDIM from an intermediate step, RePaint) and the variational
bound. Each takes ``eps(x_t, t) -> ε̂`` (whatever network, guidance and batching the caller wants)
and a ``randn(shape)`` that draws the loop's noise (so the caller decides generators and devices);
the per-step formulas live in :class:`models.diffusion.schedule.NoiseSchedule`. Images are in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models.diffusion.schedule import NoiseSchedule

EpsFn = Callable[[Tensor, int], Tensor]
RandnFn = Callable[[tuple[int, ...]], Tensor]


def negative_vlb(
    schedule: NoiseSchedule,
    eps: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor,
    weights: Tensor,
    noise: Tensor,
) -> Tensor:
    """-L_vlb per image in nats (Ho et al. 2020, eq. 5): L_T + Σ_i w_i L_{t_i}, one (t_i, ε_i) per row of ``noise``.

    With ``t``, ``weights`` from :meth:`NoiseSchedule.stratified_timesteps` this is an unbiased
    estimate of the bound; every image gets the same (t_i, ε_i).
    """
    n, k = len(x0), len(t)
    x0_rows, t_rows = x0.repeat_interleave(k, 0), t.repeat(n)
    x_t = schedule.add_noise(x0_rows, noise.repeat(n, 1, 1, 1), t_rows)
    x0_hat = schedule.predict_x0(x_t, eps(x_t, t_rows), t_rows).clamp(-1, 1)
    terms = schedule.vlb_term(x0_rows, x0_hat, x_t, t_rows).view(n, k)
    return (terms * weights).sum(1) + schedule.prior_term(x0)


def sample(
    schedule: NoiseSchedule, eps: EpsFn, x_T: Tensor, steps: int, sampler: str, eta: float, randn: RandnFn
) -> Tensor:
    """DDIM (Song et al. 2021, η = ``eta``) or DDPM ancestral (Ho et al. 2020, Algorithm 2) from x_T."""
    x = x_T
    for t, t_prev in schedule.timesteps(steps):
        if sampler == "ddpm":
            x = schedule.step(eps(x, t), x, t, t_prev, randn(x.shape))
        else:
            x = schedule.ddim_step(eps(x, t), x, t, t_prev, eta, randn(x.shape) if eta > 0 else None)
    return x


def denoise_from(schedule: NoiseSchedule, eps: EpsFn, x_t: Tensor, start: int, steps: int) -> Tensor:
    """Deterministic DDIM from timestep ``start`` to clean data in ``steps`` evenly spaced steps."""
    ts = torch.linspace(start, 0, steps).round().long().tolist()
    for t, t_prev in zip(ts, ts[1:] + [-1], strict=True):
        x_t = schedule.ddim_step(eps(x_t, t), x_t, t, t_prev)
    return x_t


def repaint(
    schedule: NoiseSchedule, eps: EpsFn, x0: Tensor, known: Tensor, steps: int, resample: int, randn: RandnFn
) -> Tensor:
    """RePaint (Lugmayr et al. 2022, Algorithm 1) with jump length 1; returns x_0 for every pixel.

    Each reverse step joins the known pixels, noised to t_prev by q, with the model's DDPM step for
    the unknown ones; it is repeated ``resample`` times, each time jumping back to t with
    q(x_t | x_{t_prev}), so that the two parts harmonise.
    """
    x_t = randn(x0.shape)
    for t, t_prev in schedule.timesteps(steps):
        for u in range(resample):
            unknown = schedule.step(eps(x_t, t), x_t, t, t_prev, randn(x0.shape))
            x_prev = torch.where(known, schedule.add_noise(x0, randn(x0.shape), t_prev), unknown)
            if u < resample - 1:
                x_t = schedule.renoise(x_prev, t_prev, t, randn(x0.shape))
        x_t = x_prev
    return x_t
