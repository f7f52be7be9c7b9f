"""One contract for every diffusion sampler (DDPM, DDIM, DPM-Solver++(2M)), diffusers style.

Each sampler subclasses :class:`SamplerContract` and inherits its tests: seeded determinism, shape
and range, and closed-form checks on data whose exact ε-predictor is known. For data x_0 ~ N(μ, s²)
per pixel, x_t = α x_0 + σ ε is N(αμ, v) with v = α²s² + σ², so E[ε | x_t] = σ (x_t - αμ) / v; the
probability-flow ODE is then an affine map that keeps each x's standard score, so a deterministic
sampler started from x_T must end at μ + s (x_T - α_T μ) / √v_T. A single point is s = 0: every
sampler's x̂_0 is exactly μ at every step, so it must land on μ.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dgbench import DGBenchError
from models.diffusion import sampling
from models.diffusion.model import DiffusionModel
from models.diffusion.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule(1000, "cosine")
SHAPE = (2000, 1, 2, 2)  # 8000 independent pixels


def gaussian_eps(mu: float | Tensor, s: float) -> sampling.EpsFn:
    """The exact ε-predictor E[ε | x_t] of data N(μ, s²) per pixel (s = 0: the single point μ)."""

    def eps(x: Tensor, t: int) -> Tensor:
        a = SCHEDULE.alpha_bar(t, x)
        return ((1 - a).sqrt() * (x.double() - a.sqrt() * mu) / (a * s**2 + 1 - a)).float()

    return eps


def exact_ode_endpoint(x_T: Tensor, mu: float, s: float) -> Tensor:
    a = SCHEDULE.alphas_cumprod[-1].item()
    return mu + s * (x_T.double() - a**0.5 * mu) / (a * s**2 + 1 - a) ** 0.5


def run(sampler: str, steps: int, eps: sampling.EpsFn, seed: int = 0, clip: bool = False) -> tuple[Tensor, Tensor]:
    """(x_T, x_0) of one sampler run whose every draw comes from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    randn = lambda shape: torch.randn(shape, generator=generator)  # noqa: E731
    x_T = randn(SHAPE)
    return x_T, sampling.sample(SCHEDULE, eps, x_T, steps, sampler, 0.0, randn, clip=clip)


class SamplerContract:
    """What every sampler must do; subclasses set the sampler, its step count and its tolerances."""

    sampler: str
    steps: int
    deterministic = True
    endpoint_tol = 0.0  # mean |x_0 - exact ODE endpoint| per pixel (deterministic samplers)
    moment_tol = 0.01  # |mean - μ| and |std - s|

    def test_seed_reproducible(self) -> None:
        eps = gaussian_eps(0.3, 0.2)
        assert torch.equal(run(self.sampler, 10, eps, seed=1)[1], run(self.sampler, 10, eps, seed=1)[1])
        differs = not torch.equal(run(self.sampler, 10, eps, seed=1)[1], run(self.sampler, 10, eps, seed=2)[1])
        assert differs  # another seed, another x_T

    def test_shape_and_range(self) -> None:
        # Data far outside [-1, 1]: clipping x̂_0 must still keep the output in the data range.
        x_T, x = run(self.sampler, 7, gaussian_eps(0.0, 3.0), clip=True)
        assert x.shape == x_T.shape and x.dtype == x_T.dtype
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1

    @pytest.mark.parametrize("steps", [1, 2, 10])
    def test_single_point_is_reached(self, steps: int) -> None:
        mu = torch.linspace(-0.9, 0.9, 4).view(1, 1, 2, 2)
        _, x = run(self.sampler, steps, gaussian_eps(mu, 0.0))
        # float32 ε is divided by √ᾱ_{T-1} ≈ 5e-5 in x̂_0 at the first step: ~1e-4 of roundoff is expected.
        torch.testing.assert_close(x, mu.expand(SHAPE), atol=1e-3, rtol=0)

    def test_gaussian_moments(self) -> None:
        mu, s = 0.3, 0.2
        _, x = run(self.sampler, self.steps, gaussian_eps(mu, s))
        assert abs(x.mean().item() - mu) < self.moment_tol
        assert abs(x.std().item() - s) < self.moment_tol

    def test_gaussian_lands_on_exact_ode_solution(self) -> None:
        if not self.deterministic:
            pytest.skip("a stochastic sampler has no ODE endpoint; its moments are tested")
        for mu, s in [(0.3, 0.2), (0.0, 0.5), (-0.2, 0.05)]:
            x_T, x = run(self.sampler, self.steps, gaussian_eps(mu, s))
            error = (x.double() - exact_ode_endpoint(x_T, mu, s)).abs().mean().item()
            assert error < self.endpoint_tol, (mu, s, error)


class TestDDIM(SamplerContract):
    sampler, steps, endpoint_tol = "ddim", 1000, 0.002


class TestDDPM(SamplerContract):
    sampler, steps, deterministic = "ddpm", 1000, False


class TestDPMSolverPP2M(SamplerContract):
    # The narrowest Gaussian (s = 0.05) has its error in the first-order step into t = 0, as DDIM does.
    sampler, steps, endpoint_tol, moment_tol = "dpmpp_2m", 20, 0.025, 0.02  # std 0.216 at 20 steps (exact: 0.2)

    def test_close_to_many_step_ddim_and_better_than_ddim_at_equal_steps(self) -> None:
        eps = gaussian_eps(0.0, 0.5)
        _, reference = run("ddim", 1000, eps)  # the exact ODE solution, to < 0.002 (TestDDIM)
        _, fast = run("dpmpp_2m", 20, eps)
        _, ddim = run("ddim", 20, eps)
        fast_error, ddim_error = (fast - reference).abs().mean(), (ddim - reference).abs().mean()
        assert fast_error < 0.005
        assert fast_error < ddim_error / 3

    def test_error_shrinks_with_steps(self) -> None:
        x_T, _ = run("ddim", 1, gaussian_eps(0.0, 0.5))
        exact = exact_ode_endpoint(x_T, 0.0, 0.5)
        errors = [(run("dpmpp_2m", n, gaussian_eps(0.0, 0.5))[1] - exact).abs().mean().item() for n in (10, 20, 50)]
        assert errors[0] > errors[1] > errors[2]


def test_first_order_step_is_ddim() -> None:
    """Without a previous x̂_0 the DPM-Solver++ update is the DDIM step (Lu et al. 2022, §4)."""
    x_t, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    x0 = SCHEDULE.predict_x0(x_t, eps, 600)
    torch.testing.assert_close(
        SCHEDULE.dpmpp_2m_step(x0, x_t, 600, 400), SCHEDULE.ddim_step(eps, x_t, 600, 400, clip=False)
    )


def test_diffusion_model_samples_with_dpmpp_2m() -> None:
    torch.manual_seed(0)
    model = DiffusionModel(channels=[8, 16, 16], sampler="dpmpp_2m", sample_steps=3).eval()
    labels = torch.tensor([0, 1, 2])
    x = model.sample(3, labels=labels, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, model.sample(3, labels=labels, generator=torch.Generator().manual_seed(0)))
    model.sampler = "euler"
    with pytest.raises(DGBenchError, match="dpmpp_2m"):
        model.sample(1)
    with pytest.raises(DGBenchError, match="dpmpp_2m"):
        DiffusionModel(channels=[8, 16, 16], sampler="euler")
