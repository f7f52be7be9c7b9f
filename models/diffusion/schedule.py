"""The Gaussian diffusion noise schedule: the ᾱ table and every formula that needs only it.

That is the forward process q, its posterior, the DDPM, DDIM and DPM-Solver++(2M) reverse steps, and the terms of
the variational bound given the network's x̂_0 (the network itself lives elsewhere).

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", DDPM), with
timesteps 0-indexed as in code: ``t = 0`` is the first noisy step (the paper's t = 1),
``t = T - 1`` the last, and ``t = -1`` stands for clean data (ᾱ = 1). The schedule holds no
parameters: it is an ``nn.Module`` only so that its tables follow the model across devices, and
its buffers are non-persistent, so checkpoints do not contain them.

Tables are kept in float64 and every coefficient is computed in float64 before being cast to
the image dtype: near t = 0, quantities such as 1 - ᾱ_t and 1 - ᾱ_t / ᾱ_s are ~1e-5 and lose
their digits in float32, which would bias the variational bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgbench import DGBenchError


def make_betas(kind: str, num_timesteps: int) -> Tensor:
    """β_1..β_T in float64 for a ``linear`` (Ho et al. 2020, §4) or ``cosine`` schedule."""
    if kind == "linear":
        # β from 1e-4 to 0.02 over T = 1000, rescaled so other T give the same curve.
        scale = 1000 / num_timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    if kind == "cosine":
        # Nichol & Dhariwal 2021, eq. 17: ᾱ(t) = f(t) / f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2),
        # s = 0.008; β_t = 1 - ᾱ_t / ᾱ_{t-1}, clipped at 0.999 to avoid a singularity at t = T.
        s = 0.008
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise DGBenchError(f"unknown noise schedule {kind!r}: choose 'linear' or 'cosine'")


def normal_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element, in nats."""
    return 0.5 * (var2.log() - var1.log() + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log ∫ N(u; mean, std²) du over the 8-bit bin of each x in [-1, 1] (Ho et al. eq. 13).

    Bins are [x - 1/255, x + 1/255], with the outermost ones extended to ±∞. Computed with
    log Φ so that bins far in a tail keep their (tiny) mass instead of rounding to zero.
    """
    half_bin = 1 / 255
    lo, hi = (x - mean - half_bin) / std, (x - mean + half_bin) / std
    # log(Φ(hi) - Φ(lo)); mirror bins above the mean into the lower tail, where Φ is accurate.
    flip = lo > 0
    lo, hi = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    inner = log_hi + torch.log1p(-torch.exp(log_lo - log_hi))
    lowest = torch.special.log_ndtr(torch.where(flip, -lo, hi))  # log Φ(upper edge) for x = -1
    highest = torch.special.log_ndtr(torch.where(flip, hi, -lo))  # log(1 - Φ(lower edge)) for x = 1
    return torch.where(x < -0.999, lowest, torch.where(x > 0.999, highest, inner))


class NoiseSchedule(nn.Module):
    """ᾱ table with the forward process q, the posterior, and DDPM / DDIM reverse steps.

    Every ``t`` argument is an int or an int64 tensor of shape (N,); ``t_prev < t`` is the
    timestep a reverse step goes to (``t - 1`` for plain DDPM, any earlier step when a sampler
    skips steps, ``-1`` for clean data).
    """

    def __init__(self, num_timesteps: int = 1000, kind: str = "cosine") -> None:
        super().__init__()
        self.num_timesteps, self.kind = num_timesteps, kind
        betas = make_betas(kind, num_timesteps)
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, dim=0), persistent=False)

    def alpha_bar(self, t: Tensor | int, like: Tensor) -> Tensor:
        """ᾱ_t in float64 shaped (N, 1, 1, 1) to broadcast against ``like``; 1 where t = -1."""
        t = torch.as_tensor(t, device=like.device).expand(like.shape[0])
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], 1.0)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """Sample q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I) (Ho et al. eq. 4) with the given ε."""
        a = self.alpha_bar(t, x0)
        return a.sqrt().to(x0.dtype) * x0 + (1 - a).sqrt().to(x0.dtype) * noise

    def predict_x0(self, x_t: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        """Invert eq. 4: x̂_0 = (x_t - √(1 - ᾱ_t) ε) / √ᾱ_t."""
        a = self.alpha_bar(t, x_t)
        return (x_t - (1 - a).sqrt().to(x_t.dtype) * eps) * a.rsqrt().to(x_t.dtype)

    def predict_eps(self, x_t: Tensor, x0: Tensor, t: Tensor | int) -> Tensor:
        """The ε that eq. 4 maps ``x0`` to ``x_t`` with."""
        a = self.alpha_bar(t, x_t)
        return (x_t - a.sqrt().to(x_t.dtype) * x0) * (1 - a).rsqrt().to(x_t.dtype)

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor | int, t_prev: Tensor | int) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t_prev} | x_t, x_0) (Ho et al. eqs. 6-7).

        With t_prev = t - 1 this is the paper's posterior with β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) β_t;
        for a skipped step β_t becomes 1 - ᾱ_t / ᾱ_{t_prev} (Nichol & Dhariwal 2021, §4 respacing).
        The variance is (N, 1, 1, 1), float64.
        """
        a, a_prev = self.alpha_bar(t, x_t), self.alpha_bar(t_prev, x_t)
        beta = 1 - a / a_prev
        coef_x0 = a_prev.sqrt() * beta / (1 - a)
        coef_xt = (a / a_prev).sqrt() * (1 - a_prev) / (1 - a)
        mean = coef_x0.to(x0.dtype) * x0 + coef_xt.to(x_t.dtype) * x_t
        return mean, beta * (1 - a_prev) / (1 - a)

    def step(
        self, eps: Tensor, x_t: Tensor, t: Tensor | int, t_prev: Tensor | int, noise: Tensor, clip: bool = True
    ) -> Tensor:
        """DDPM ancestral step (Ho et al. Algorithm 2): x_{t_prev} ~ N(μ̃(x_t, x̂_0), β̃ I).

        Written in its posterior form: x̂_0 from ε, clipped to the data range [-1, 1] as in the
        authors' code, then a draw from q(x_{t_prev} | x_t, x̂_0). No noise is added at t_prev = -1.
        """
        x0 = self.predict_x0(x_t, eps, t)
        if clip:
            x0 = x0.clamp(-1, 1)
        mean, variance = self.posterior(x0, x_t, t, t_prev)
        return mean + variance.sqrt().to(x_t.dtype) * noise

    def ddim_step(
        self,
        eps: Tensor,
        x_t: Tensor,
        t: Tensor | int,
        t_prev: Tensor | int,
        eta: float = 0.0,
        noise: Tensor | None = None,
        clip: bool = True,
    ) -> Tensor:
        """DDIM step (Song et al. 2021, eq. 12); η = 0 is deterministic, η = 1 is DDPM (their eq. 16).

        x_{t_prev} = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z,
        σ = η √((1 - ᾱ_prev) / (1 - ᾱ_t)) √(1 - ᾱ_t / ᾱ_prev).
        """
        a, a_prev = self.alpha_bar(t, x_t), self.alpha_bar(t_prev, x_t)
        x0 = self.predict_x0(x_t, eps, t)
        if clip:
            # Keep ε̂ consistent with the clipped x̂_0, so both terms describe the same x_t.
            x0 = x0.clamp(-1, 1)
            eps = self.predict_eps(x_t, x0, t)
        sigma2 = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        out = a_prev.sqrt().to(x_t.dtype) * x0 + (1 - a_prev - sigma2).clamp(min=0).sqrt().to(x_t.dtype) * eps
        if eta > 0:
            if noise is None:
                raise ValueError("ddim_step with eta > 0 needs noise")
            out = out + sigma2.sqrt().to(x_t.dtype) * noise
        return out

    def log_snr(self, t: Tensor | int, like: Tensor) -> Tensor:
        """λ_t = log(α_t / σ_t) = ½ (log ᾱ_t - log(1 - ᾱ_t)), float64 (N, 1, 1, 1); +∞ at t = -1 (clean data)."""
        a = self.alpha_bar(t, like)
        return 0.5 * (a.log() - torch.log1p(-a))

    def dpmpp_2m_step(
        self,
        x0: Tensor,
        x_t: Tensor,
        t: Tensor | int,
        t_prev: Tensor | int,
        x0_last: Tensor | None = None,
        t_last: Tensor | int | None = None,
    ) -> Tensor:
        """DPM-Solver++(2M) step (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction form.

        With α_t = √ᾱ_t, σ_t = √(1 - ᾱ_t), λ = log(α/σ) and h = λ_prev - λ_t:
        x_prev = (σ_prev / σ_t) x_t + α_prev (1 - e^{-h}) D, where D = x̂_0 (first order, the
        DDIM step) or, given the previous step's x̂_0 at ``t_last`` with h_last = λ_t - λ_last,
        D = x̂_0 + (h / 2 h_last)(x̂_0 - x̂_0,last) (second order, multistep). To t_prev = -1
        (σ = 0, h = ∞) the first-order step is exactly x̂_0; the second-order one is undefined there,
        so callers take a first-order final step, as the authors' code does.
        """
        lam, lam_prev = self.log_snr(t, x_t), self.log_snr(t_prev, x_t)
        a, a_prev = self.alpha_bar(t, x_t), self.alpha_bar(t_prev, x_t)
        h = lam_prev - lam
        coef_x = ((1 - a_prev) / (1 - a)).sqrt()  # σ_prev / σ_t
        coef_d = a_prev.sqrt() * -torch.expm1(-h)  # α_prev (1 - e^{-h})
        d = x0
        if x0_last is not None:
            r = h / (lam - self.log_snr(t_last, x_t))  # 1 / r_0 of the paper: h / h_last
            d = x0 + (0.5 * r).to(x0.dtype) * (x0 - x0_last)
        return coef_x.to(x_t.dtype) * x_t + coef_d.to(x_t.dtype) * d

    def renoise(self, x_prev: Tensor, t_prev: Tensor | int, t: Tensor | int, noise: Tensor) -> Tensor:
        """Sample q(x_t | x_{t_prev}) = N(√(ᾱ_t/ᾱ_prev) x_prev, (1 - ᾱ_t/ᾱ_prev) I): a jump back in time (RePaint)."""
        ratio = self.alpha_bar(t, x_prev) / self.alpha_bar(t_prev, x_prev)
        return ratio.sqrt().to(x_prev.dtype) * x_prev + (1 - ratio).sqrt().to(x_prev.dtype) * noise

    def vlb_term(self, x0: Tensor, x0_hat: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """L_t of the bound (Ho et al. eq. 5) per row, in nats, for a model that predicts x̂_0 from x_t.

        The model's reverse step is p_θ(x_{t-1} | x_t) = q(x_{t-1} | x_t, x̂_0) with the variance
        fixed to β̃_t, so for t >= 1 the term is KL(q(x_{t-1} | x_t, x_0) || p_θ). At t = 0 (the
        paper's L_0) it is the discretized-Gaussian decoder -log p(x_0 | x_1) with mean x̂_0; β̃ is
        0 there, so the decoder borrows β̃ of the next step, as Ho et al.'s code does.
        """
        x0, x0_hat, x_t = x0.double(), x0_hat.double(), x_t.double()
        true_mean, variance = self.posterior(x0, x_t, t, t - 1)
        model_mean, _ = self.posterior(x0_hat, x_t, t, t - 1)
        _, decoder_variance = self.posterior(x0, x_t, torch.ones_like(t), torch.zeros_like(t))
        variance = variance.clamp(min=1e-30)  # only t = 0 is 0, and its KL is discarded below
        kl = normal_kl(true_mean, variance, model_mean, variance).flatten(1).sum(1)
        decoder = -discretized_gaussian_log_likelihood(x0, model_mean, decoder_variance.sqrt()).flatten(1).sum(1)
        return torch.where(t == 0, decoder, kl)

    def prior_term(self, x0: Tensor) -> Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per row, in nats: no parameters, ~1e-5 bits/dim."""
        a = self.alphas_cumprod[-1]
        return normal_kl(a.sqrt() * x0.double(), 1 - a, torch.zeros_like(a), torch.ones_like(a)).flatten(1).sum(1)

    def stratified_timesteps(
        self, k: int, generator: torch.Generator, spacing: str = "uniform"
    ) -> tuple[Tensor, Tensor]:
        """t = 0 plus one uniform draw from each of ``k`` integer strata of {1..T-1}, with weights.

        Σ_t L_t ≈ Σ_i w_i L_{t_i} with w = (1, stratum widths) is then unbiased: the decoder term
        exactly, the rest by stratified sampling (lower variance than k uniform draws). ``uniform``
        strata are equally wide; ``quadratic`` ones are equally wide in √t (edges 1 + (T-1)(i/k)²),
        narrow near t = 0 where the terms are largest and change fastest.
        """
        T = self.num_timesteps
        if not 1 <= k <= T - 1:
            raise DGBenchError(f"model.likelihood_timesteps={k} must be in [1, {T - 1}]")
        if spacing not in ("uniform", "quadratic"):
            raise DGBenchError(f"model.likelihood_spacing={spacing!r}: choose uniform or quadratic")
        fraction = torch.linspace(0, 1, k + 1, dtype=torch.float64)
        edges = (1 + (T - 1) * (fraction if spacing == "uniform" else fraction**2)).round().long()
        edges = torch.maximum(edges, torch.arange(k + 1) + 1)  # at least one timestep per stratum
        edges[-1] = T
        widths = edges[1:] - edges[:-1]
        t = edges[:-1] + (torch.rand(k, generator=generator) * widths).long()
        return torch.cat([torch.zeros(1, dtype=torch.long), t]), torch.cat([torch.ones(1), widths.double()])

    def timesteps(self, num_steps: int, spacing: str = "uniform") -> list[tuple[int, int]]:
        """(t, t_prev) pairs of a ``num_steps``-step sampler, from T - 1 down to clean data.

        Starting at the last timestep ("trailing" spacing, Lin et al. 2024), so the first step sees
        inputs whose ᾱ ≈ 0 matches the pure noise a sampler starts from. ``uniform``: evenly spaced
        in t. ``quadratic``: evenly spaced in √t (DPM-Solver's "time_quadratic" for discrete-time
        pixel models, Lu et al. 2022): the cosine schedule's log-SNR rises steeply near t = 0
        (λ ≈ 2.3 at t = 53, 5.0 at t = 0), and uniform steps would cross that rise in one step.
        Timesteps that round to the same integer are merged, so large ``num_steps`` may give fewer pairs.
        """
        if not 1 <= num_steps <= self.num_timesteps:
            raise DGBenchError(f"sampling steps must be in [1, {self.num_timesteps}], got {num_steps}")
        last = self.num_timesteps - 1
        if spacing == "uniform":
            ts = torch.linspace(last, 0, num_steps).round().long().tolist()
        elif spacing == "quadratic":
            ts = sorted(set((torch.linspace(math.sqrt(last), 0, num_steps) ** 2).round().long().tolist()), reverse=True)
        else:
            raise DGBenchError(f"unknown timestep spacing {spacing!r}: choose 'uniform' or 'quadratic'")
        return list(zip(ts, ts[1:] + [-1], strict=True))
