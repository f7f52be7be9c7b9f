"""Diffusion family: schedule maths, samplers, the training loss, the bound, classifier, reconstruction, inpainting.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

from dgbench import DGBenchError
from dgbench.data import default_data_root, load_split, to_float
from models.diffusion import DiffusionModel
from models.diffusion.schedule import NoiseSchedule, discretized_gaussian_log_likelihood


def cosine_alpha_bar(t: int, T: int = 1000, s: float = 0.008) -> float:
    """Nichol & Dhariwal eq. 17 written out independently: ᾱ for the 0-indexed step t."""
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t + 1) / f(0)


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", default_data_root(), train=False)
    return to_float(images[:6]), labels[:6]


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    """A tiny untrained model whose zero-initialised layers are perturbed, so ε depends on x, t, y."""
    torch.manual_seed(0)
    m = DiffusionModel(
        channels=[8, 16, 16],
        dropout=0.0,
        sample_steps=4,
        likelihood_timesteps=4,
        classify_pairs=3,
        bf16_inference=False,  # exact comparisons below: fp32 (bf16 is checked on its own)
        recon_levels=[0.5],
        recon_steps=2,
        impute_steps=3,
        impute_resample=2,
    )
    with torch.no_grad():
        for p in m.ema.averaged.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


# --- schedule -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alpha_bar_is_monotone_from_one_to_zero(kind: str) -> None:
    a = NoiseSchedule(1000, kind).alphas_cumprod
    assert (a[1:] < a[:-1]).all()
    assert 0.9999 <= a[0] < 1
    assert 0 < a[-1] < 1e-4


def test_schedule_golden_values() -> None:
    linear, cosine = NoiseSchedule(1000, "linear").alphas_cumprod, NoiseSchedule(1000, "cosine").alphas_cumprod
    assert linear[0].item() == pytest.approx(1 - 1e-4, abs=1e-12)  # β_1 = 1e-4 (Ho et al. §4)
    assert linear[-1].item() == pytest.approx(4.036e-5, rel=1e-3)  # √ᾱ_T ≈ 0.0064: x_T is nearly pure noise
    for t in (0, 10, 499, 900):
        assert cosine[t].item() == pytest.approx(cosine_alpha_bar(t), rel=1e-9)


def test_add_noise_matches_closed_form() -> None:
    schedule, generator = NoiseSchedule(1000, "cosine"), torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 1, 28, 28, generator=generator) * 2 - 1, torch.randn(4, 1, 28, 28, generator=generator)
    t = torch.tensor([0, 250, 600, 950])
    out = schedule.add_noise(x0, eps, t)
    for i, step in enumerate(t.tolist()):
        a = cosine_alpha_bar(step)
        torch.testing.assert_close(out[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * eps[i])
    assert torch.equal(schedule.add_noise(x0, eps, -1), x0)  # t = -1 is clean data


@pytest.mark.parametrize("t_prev", [-1, 0, 200])
def test_ddim_step_with_oracle_eps_lands_on_the_forward_process(t_prev: int) -> None:
    schedule, generator = NoiseSchedule(1000, "cosine"), torch.Generator().manual_seed(1)
    x0, eps = torch.rand(3, 1, 28, 28, generator=generator) * 2 - 1, torch.randn(3, 1, 28, 28, generator=generator)
    x_t = schedule.add_noise(x0, eps, 700)
    # Deterministic DDIM keeps ε: from x_t it reaches exactly q's sample at t_prev (x_0 itself at -1).
    torch.testing.assert_close(
        schedule.ddim_step(eps, x_t, 700, t_prev), schedule.add_noise(x0, eps, t_prev), atol=2e-5, rtol=0
    )


@pytest.mark.parametrize("t, t_prev", [(500, 499), (500, 400), (0, -1)])
def test_ddpm_step_is_ddim_with_eta_one(t: int, t_prev: int) -> None:
    schedule, generator = NoiseSchedule(1000, "linear"), torch.Generator().manual_seed(2)
    x_t, eps, z = (torch.randn(2, 1, 28, 28, generator=generator) for _ in range(3))
    ddpm = schedule.step(eps, x_t, t, t_prev, z)
    torch.testing.assert_close(ddpm, schedule.ddim_step(eps, x_t, t, t_prev, eta=1.0, noise=z), atol=1e-5, rtol=1e-5)


def test_sampler_timesteps_run_from_last_step_to_clean() -> None:
    steps = NoiseSchedule(1000).timesteps(50)
    assert len(steps) == 50 and steps[0][0] == 999 and steps[-1] == (0, -1)
    assert all(t > t_prev for t, t_prev in steps)


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("k", [1, 7, 100, 999])
def test_stratified_timesteps_cover_every_timestep_once(k: int, spacing: str) -> None:
    """The bound's estimator: t = 0 with weight 1, then one draw per stratum of {1..T-1} weighted by
    its width, so the weights sum to T and Σ_t L_t is estimated without bias."""
    schedule = NoiseSchedule(1000)
    t, weights = schedule.stratified_timesteps(k, torch.Generator().manual_seed(k), spacing)
    assert t.shape == weights.shape == (k + 1,) and t[0] == 0 and weights[0] == 1
    assert weights.dtype == torch.float64 and weights.sum().item() == 1000
    upper = torch.cumsum(weights[1:], 0).long() + 1  # exclusive upper edge of each stratum
    assert ((upper - weights[1:].long() <= t[1:]) & (t[1:] < upper)).all()
    if k == 999:  # one stratum per timestep: no randomness left
        assert torch.equal(t, torch.arange(1000))
    if spacing == "quadratic" and k == 7:  # edges 1 + 999 (i/7)^2, rounded: 1, 21, 83, 184, 327, 511, 735, 1000
        assert weights[1:].tolist() == [20, 62, 101, 143, 184, 224, 265]
    with pytest.raises(DGBenchError, match="likelihood_timesteps"):
        schedule.stratified_timesteps(1000, torch.Generator())


def test_discretized_gaussian_is_a_distribution_over_the_256_levels() -> None:
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, std in [(0.3, 0.01), (-1.0, 0.002), (0.9, 0.5), (1.0, 1e-3)]:
        log_p = discretized_gaussian_log_likelihood(levels, torch.tensor(mean), torch.tensor(std, dtype=torch.float64))
        assert log_p.logsumexp(0).exp().item() == pytest.approx(1.0, abs=1e-9)


# --- capabilities -----------------------------------------------------------------------------
def test_training_loss_is_zero_for_an_oracle_and_the_noise_energy_for_the_zero_predictor(
    model: DiffusionModel, mnist
) -> None:
    """L_simple = mean ||ε - ε_θ(x_t, t, y)||², x_t = √ᾱ_t (2x - 1) + √(1 - ᾱ_t) ε. An oracle that inverts
    this with ᾱ from the independent formula above (per image, at its own t) scores 0, which it does
    only if the images are mapped to [-1, 1] and noised at the t the network is given; predicting 0
    scores mean ε² (≈ 1, the loss an untrained network starts near)."""
    x, y = mnist
    t = torch.tensor([0, 10, 250, 499, 900, 999])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    a = torch.tensor([cosine_alpha_bar(s) for s in t.tolist()], dtype=torch.float64).view(-1, 1, 1, 1)

    def oracle(x_t: torch.Tensor, t_in: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert torch.equal(t_in, t) and torch.equal(labels, y)
        return ((x_t.double() - a.sqrt() * (2 * x.double() - 1)) / (1 - a).sqrt()).float()

    assert model._loss(x, y, t, noise, oracle).item() == pytest.approx(0.0, abs=1e-6)
    zero = model._loss(x, y, t, noise, lambda x_t, t_in, labels: torch.zeros_like(x_t))
    assert zero.item() == pytest.approx(noise.double().pow(2).mean().item(), rel=1e-6)
    assert 0.9 < zero.item() < 1.1


@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_guidance_scale_changes_samples(
    model: DiffusionModel, monkeypatch: pytest.MonkeyPatch, sampler: str, eta: float
) -> None:
    monkeypatch.setattr(model, "sampler", sampler)
    monkeypatch.setattr(model, "eta", eta)
    labels = torch.arange(4)
    samples = {}
    for w in (0.0, 2.0):
        monkeypatch.setattr(model, "guidance_scale", w)
        samples[w] = model.sample(4, labels, torch.Generator().manual_seed(0))
    assert (samples[0.0] - samples[2.0]).abs().max() > 1e-3


def test_classify_is_paired_and_independent_of_batching(
    model: DiffusionModel, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = mnist
    log_p = model.classify(x)
    monkeypatch.setattr(model, "eval_batch_size", 7)  # forces several network calls per image
    torch.testing.assert_close(model.classify(x), log_p, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.classify(x[2:4]), log_p[2:4], atol=1e-4, rtol=1e-4)  # per image
    observed = torch.zeros_like(x, dtype=torch.bool)
    observed[..., :14, :] = True
    assert not torch.allclose(model.classify(x, observed), log_p)
    # With the class embedding removed every class is the same model: the shared (t, ε) pairs
    # must then give exactly equal errors, hence a uniform posterior.
    original = model.ema.averaged.class_emb.weight.clone()
    with torch.no_grad():
        model.ema.averaged.class_emb.weight.zero_()
        uniform = model.classify(x)
        model.ema.averaged.class_emb.weight.copy_(original)
    torch.testing.assert_close(uniform, torch.full((6, 10), -math.log(10)), atol=1e-3, rtol=0)


def test_bound_with_oracle_denoiser_is_prior_plus_decoder(
    model: DiffusionModel, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network that predicts the true ε makes every KL term 0: -L_vlb = -(L_T + L_0(x_0 | x_0))."""
    x = mnist[0][:1]
    x0 = x * 2 - 1
    monkeypatch.setattr(
        model, "_eps", lambda x_t, t, labels, w=0.0, exact=False: model.schedule.predict_eps(x_t, x0.expand_as(x_t), t)
    )
    schedule = model.schedule
    a_T = schedule.alphas_cumprod[-1]
    prior = 0.5 * (-(1 - a_T).log() + (1 - a_T) + a_T * x0.double() ** 2 - 1).sum()
    std = schedule.posterior(x0, x0, torch.tensor([1]), torch.tensor([0]))[1].sqrt().squeeze()
    normal = torch.distributions.Normal(0.0, std)
    half = torch.tensor(1 / 255, dtype=torch.float64)
    inner, edge = (normal.cdf(half) - normal.cdf(-half)).log(), normal.cdf(half).log()
    flat = x0.flatten()
    decoder = torch.where((flat < -0.999) | (flat > 0.999), edge, inner).sum()
    assert model.log_likelihood(x).item() == pytest.approx((decoder - prior).item(), rel=1e-5)


def test_likelihood_is_per_image_and_the_declared_score_is_its_negative(model: DiffusionModel, mnist) -> None:
    x = mnist[0]
    log_lik = model.log_likelihood(x)
    torch.testing.assert_close(model.log_likelihood(x[3:]), log_lik[3:])  # independent of the batch
    torch.testing.assert_close(model.score_anomalies(x)[model.primary_score], -log_lik)


def test_class_marginal_bound_is_a_log_sum_exp_over_per_class_bounds(model: DiffusionModel, mnist) -> None:
    """Brute force, one image and one class at a time, in float64: log (1/10) Σ_y exp(-L_vlb(x|y)), every
    class's bound from the same seeded (t, ε) draws; and the unconditional branch's bound as bits/dim."""
    from models.diffusion.sampling import negative_vlb

    x = mnist[0][:3]
    generator = torch.Generator().manual_seed(0)  # the model's fixed evaluation seed
    t, weights = model.schedule.stratified_timesteps(model.likelihood_timesteps, generator)
    noise = torch.randn((len(t), 1, 28, 28), generator=generator)
    net = model.ema.averaged

    def bound(image: torch.Tensor, label: int) -> float:
        eps = lambda x_t, t_rows: net(x_t, t_rows, torch.full_like(t_rows, label)).float()  # noqa: E731
        x0 = (image[None] * 255).round() / 127.5 - 1
        return -negative_vlb(model.schedule, eps, x0, t=t, weights=weights, noise=noise).item()

    expected = []
    for image in x:
        per_class = [bound(image, y) for y in range(10)]
        top = max(per_class)
        expected.append(top + math.log(sum(math.exp(b - top) for b in per_class) / 10))
    with torch.inference_mode():
        got = model.log_likelihood(x)
        null_bpd = model.score_anomalies(x)["vlb_bpd"]
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-3)
    unconditional = torch.tensor([-bound(image, model.null_class) for image in x]) / (784 * math.log(2))
    torch.testing.assert_close(null_bpd, unconditional.float(), rtol=1e-5, atol=1e-5)


def test_reconstruction_score_is_the_distance_to_what_the_denoiser_returns(
    model: DiffusionModel, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DDPM-OOD: noise x to each level, denoise with DDIM, mean squared error in [0, 1] pixel units. A
    denoiser whose ε points at a fixed image x' (ε = (x_t - √ᾱ_t x') / √(1 - ᾱ_t)) makes every DDIM step
    land on q's path to x', so it reconstructs x' exactly: the score is mean((x' - x)²), 0 for x' = x."""
    x = mnist[0]
    torch.testing.assert_close(model.score_anomalies(x)["reconstruction"], model._reconstruction_error(x))

    def pointing_at(image: torch.Tensor):  # noqa: ANN202
        x0 = image * 2 - 1
        return lambda x_t, t, labels, w=0.0, exact=False: model.schedule.predict_eps(x_t, x0, t)

    other = x.roll(1, 0)  # each image's target is another digit
    monkeypatch.setattr(model, "_eps", pointing_at(other))
    expected = (other - x).pow(2).flatten(1).mean(1)
    assert (expected > 0.05).all()
    # Through _reconstruction_error, the score's function: the bound's rows would need other targets.
    torch.testing.assert_close(model._reconstruction_error(x), expected, atol=1e-5, rtol=1e-4)
    monkeypatch.setattr(model, "_eps", pointing_at(x))
    torch.testing.assert_close(model._reconstruction_error(x), torch.zeros(6), atol=1e-6, rtol=0)


def test_inpainting_returns_observed_values_off_the_8_bit_grid_unchanged(model: DiffusionModel, mnist) -> None:
    # The bound rounds images to the k/255 grid; inpainting must not: observed pixels come back as given.
    x = mnist[0] + 1e-3 * torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) < 0.5
    assert torch.equal(model.impute(x, observed)[observed], x[observed])


def test_adaptive_class_elimination_matches_a_brute_force_two_stage_classifier(
    model: DiffusionModel, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Li et al. Algorithm 2 written out by hand from single-class network calls: every class gets the
    strided first pairs, the best ``keep`` classes all pairs; a class's score is its mean error."""
    x, _ = mnist
    P, P1, K, T = 6, 2, 3, model.schedule.num_timesteps
    monkeypatch.setattr(model, "classify_pairs", P)
    t = ((torch.arange(P) + 0.5) * T / P).long()
    noise = torch.randn((P, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    errors = torch.zeros(len(x), P, 10)  # every (image, pair, class), one network call each
    with torch.no_grad():
        for p in range(P):
            x_t = model.schedule.add_noise(x * 2 - 1, noise[p : p + 1].expand_as(x), t[p].expand(len(x)))
            for c in range(10):
                eps = model.ema.averaged(x_t, t[p].expand(len(x)), torch.full((len(x),), c))
                errors[:, p, c] = ((eps - noise[p]) ** 2).flatten(1).sum(1)
    first = [0, 3]  # P1 = 2 of 6 pairs, strided
    expected = errors[:, first].mean(1)
    for i in range(len(x)):
        kept = expected[i].topk(K, largest=False).indices
        expected[i, kept] = errors[i, :, kept].mean(0)
    monkeypatch.setattr(model, "classify_first_pairs", P1)
    monkeypatch.setattr(model, "classify_keep", K)
    torch.testing.assert_close(model.classify(x), torch.log_softmax(-expected, 1), atol=1e-4, rtol=1e-4)
    monkeypatch.setattr(model, "classify_keep", 10)  # keeping every class is the plain classifier
    torch.testing.assert_close(model.classify(x), torch.log_softmax(-errors.mean(1), 1), atol=1e-4, rtol=1e-4)


def test_bf16_inference_keeps_the_bound_in_fp32(model: DiffusionModel, mnist, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast (where the CPU has it) speeds up everything but the likelihood, which stays fp32."""
    x, _ = mnist
    monkeypatch.setattr("models.diffusion.model.fast_bf16", lambda device: True)  # as on an AVX512-BF16 CPU
    fp32 = {"bound": model.log_likelihood(x), "classify": model.classify(x)}
    monkeypatch.setattr(model, "bf16_inference", True)
    assert torch.equal(model.log_likelihood(x), fp32["bound"])
    low = model.classify(x)
    assert not torch.equal(low, fp32["classify"])  # autocast really ran
    torch.testing.assert_close(low.exp(), fp32["classify"].exp(), atol=0.05, rtol=0)


def test_collapsed_strata_standard_error_by_hand() -> None:
    from models.diffusion.sampling import collapsed_strata_se

    # column 0 is the exact decoder term (no error); strata pairs (1, 3) and (2, 2): sqrt(2^2 + 0^2) = 2
    terms = torch.tensor([[100.0, 1.0, 3.0, 2.0, 2.0], [5.0, 1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(collapsed_strata_se(terms), torch.tensor([2.0, 0.0]))
    # an odd last stratum is paired with its neighbour again: pairs (1, 4) and (2, 4): sqrt(3^2 + 2^2)
    torch.testing.assert_close(collapsed_strata_se(torch.tensor([[0.0, 1.0, 4.0, 2.0]])), torch.tensor([13**0.5]))


def test_likelihood_standard_error_weights_the_classes_by_their_posterior(model: DiffusionModel, mnist) -> None:
    """Delta method by brute force: per class the weighted terms (one image, one class at a time), the
    classes weighted by softmax of their bounds, then the collapsed-strata error of the weighted sum."""
    from models.diffusion.sampling import collapsed_strata_se, vlb_terms

    x = mnist[0][:2]
    generator = torch.Generator().manual_seed(0)
    t, weights = model.schedule.stratified_timesteps(model.likelihood_timesteps, generator)
    noise = torch.randn((len(t), 1, 28, 28), generator=generator)
    net = model.ema.averaged
    expected = []
    for image in x:
        x0 = (image[None] * 255).round() / 127.5 - 1
        per_class = torch.stack(
            [
                -vlb_terms(
                    model.schedule,
                    lambda x_t, r, y=y: net(x_t, r, torch.full_like(r, y)).float(),
                    x0,
                    t,
                    weights,
                    noise,
                )[0]
                for y in range(10)
            ]
        )  # (10, 1 + k)
        posterior = torch.softmax(per_class.sum(1), dim=0)
        expected.append(collapsed_strata_se((posterior[:, None] * per_class).sum(0, keepdim=True))[0])
    with torch.inference_mode():
        got = model.log_likelihood_standard_error(x)
    torch.testing.assert_close(got.double(), torch.stack(expected).double(), rtol=1e-4, atol=1e-4)
