"""Inference of a diffusion model, written against an ε-function and a noise schedule.

The reverse-process loops (DDPM, DDIM and DPM-Solver++(2M) sampling, DDIM from an intermediate step,
RePaint) and the variational bound. Each takes ``eps(x_t, t) -> ε̂`` (whatever network, guidance and batching the caller wants)
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


def vlb_terms(
    schedule: NoiseSchedule,
    eps: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor,
    weights: Tensor,
    noise: Tensor,
) -> Tensor:
    """The weighted terms w_i L_{t_i} of -L_vlb per image, (n, len(t)), one (t_i, ε_i) per row of ``noise``
    (Ho et al. 2020, eq. 5); :func:`negative_vlb` adds them up with the prior term."""
    n, k = len(x0), len(t)
    x0_rows, t_rows = x0.repeat_interleave(k, 0), t.repeat(n)
    x_t = schedule.add_noise(x0_rows, noise.repeat(n, 1, 1, 1), t_rows)
    x0_hat = schedule.predict_x0(x_t, eps(x_t, t_rows), t_rows).clamp(-1, 1)
    return schedule.vlb_term(x0_rows, x0_hat, x_t, t_rows).view(n, k) * weights


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
    return vlb_terms(schedule, eps, x0, t, weights, noise).sum(1) + schedule.prior_term(x0)


def collapsed_strata_se(terms: Tensor) -> Tensor:
    """Standard error of Σ_i terms[:, i] where column 0 is exact and columns 1..k are one draw from each
    of k equal-probability strata: the collapsed-strata estimator (Cochran 1977, Sampling Techniques,
    §5A.12), Var ≈ Σ_j (y_{2j-1} - y_{2j})² over adjacent pairs of strata (an odd last stratum is
    paired with its neighbour again). Conservative where the integrand changes smoothly with t."""
    draws = terms[:, 1:]
    if draws.shape[1] < 2:
        return torch.full((len(terms),), float("nan"), dtype=terms.dtype, device=terms.device)
    if draws.shape[1] % 2:
        draws = torch.cat([draws, draws[:, -2:-1]], dim=1)
    pairs = draws.view(len(draws), -1, 2)
    return (pairs[..., 0] - pairs[..., 1]).pow(2).sum(1).sqrt()


SAMPLERS = ("ddim", "ddpm", "dpmpp_2m")


def sample(
    schedule: NoiseSchedule,
    eps: EpsFn,
    x_T: Tensor,
    steps: int,
    sampler: str,
    eta: float,
    randn: RandnFn,
    clip: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, η = ``eta``), DDPM ancestral (Ho et al. 2020, Algorithm 2) or
    DPM-Solver++(2M) (Lu et al. 2022) from x_T, in ``steps`` network evaluations.

    ``clip`` clips every x̂_0 to the data range [-1, 1]; ``progress(i)`` is called after step i.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: choose one of {SAMPLERS}")
    if sampler == "dpmpp_2m":
        return dpmpp_2m(schedule, eps, x_T, steps, clip, progress)
    x = x_T
    for i, (t, t_prev) in enumerate(schedule.timesteps(steps)):
        if sampler == "ddpm":
            x = schedule.step(eps(x, t), x, t, t_prev, randn(x.shape), clip)
        else:
            x = schedule.ddim_step(eps(x, t), x, t, t_prev, eta, randn(x.shape) if eta > 0 else None, clip)
        if progress is not None:
            progress(i + 1)
    return x


def dpmpp_2m(
    schedule: NoiseSchedule,
    eps: EpsFn,
    x_T: Tensor,
    steps: int,
    clip: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): the multistep second-order solver of the
    probability-flow ODE in its data-prediction (x̂_0) form, on the same timesteps as DDIM.

    The first step has no earlier x̂_0, so it is first order. The last two are first order too (the
    authors' and diffusers' ``lower_order_final``): the step to clean data (σ = 0) has h = ∞, and
    the step to t = 0 crosses the cosine schedule's steep rise of λ near t = 0 (h ≈ 2.7 against
    h_last ≈ 0.6 at 20 steps), where the multistep extrapolation overshoots. Every step between is
    second order. (Quadratic spacing, ``schedule.timesteps(steps, "quadratic")``, solves the Gaussian
    toy problem better but gave far worse samples on the MNIST checkpoint: results/diffusion_samplers.md.)
    """
    x, last = x_T, None
    for i, (t, t_prev) in enumerate(schedule.timesteps(steps)):
        x0 = schedule.predict_x0(x, eps(x, t), t)
        if clip:
            x0 = x0.clamp(-1, 1)
        x0_last, t_last = last if last is not None and t_prev > 0 else (None, None)
        x = schedule.dpmpp_2m_step(x0, x, t, t_prev, x0_last, t_last)
        last = (x0, t)
        if progress is not None:
            progress(i + 1)
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
