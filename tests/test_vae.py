"""The class-conditional VAE: bounds, Bayes classification, marginalisation, imputation, training masks.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import math

import pytest
import torch

from dgbench import DGBenchError
from dgbench.complexity import context_code_length
from models.vae import ConditionalVAE


def tiny_vae(**overrides: object) -> ConditionalVAE:
    torch.manual_seed(0)
    return ConditionalVAE(**{"width": 4, "latent_dim": 2, "classify_k": 3, "likelihood_k": 4, **overrides}).eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Gray images in [0, 1] with some exact zeros and ones, like MNIST."""
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return ((x - 0.3) * 2).clamp(0, 1)


def random_mask(x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) >= 0.5


def test_user_errors_are_one_line() -> None:
    with pytest.raises(DGBenchError, match="k=1 is the ELBO"):
        ConditionalVAE(classify_k=0)
    with pytest.raises(DGBenchError, match="one label per image"):
        tiny_vae().sample(4, labels=torch.arange(3))


def test_results_do_not_depend_on_the_batch() -> None:
    # Binarization and importance samples are seeded per image, not per batch.
    model, x = tiny_vae(), images(5)
    torch.testing.assert_close(model.log_likelihood(x)[2:4], model.log_likelihood(x[2:4]))


def exact_log_px_given_y(model: ConditionalVAE, binary: torch.Tensor) -> torch.Tensor:
    """log p(x|y) = log of the integral of p(x|z,y) N(z; 0, 1) over a 1-d latent, by quadrature: (N, 10)."""
    z = torch.linspace(-8, 8, 801)
    log_pz = -0.5 * (z.square() + math.log(2 * math.pi))
    rows = []
    for image in binary:
        logits = model.decode(z.repeat(10)[:, None], torch.arange(10).repeat_interleave(len(z)))
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, image.expand_as(logits), reduction="none"
        )
        log_joint = log_px_z.sum((1, 2, 3)).view(10, len(z)) + log_pz
        rows.append(torch.logsumexp(log_joint, 1) + math.log(z[1] - z[0]))
    return torch.stack(rows)


@torch.no_grad()
def test_bound_is_below_exact_likelihood_and_tightens_with_k() -> None:
    model = tiny_vae(latent_dim=1)
    model.decoder.project.weight[:, :1] *= 3  # make p(x|z,y) depend on z, so the posterior is not the prior
    # A deliberately poor proposal q(z|x,y) = N(1.5, 0.5^2) for every x and y: the bound must stay
    # below log p(x|y) whatever q is (this catches a wrong log q term), with a gap that closes as k grows.
    head = model.encoder.net[-1]
    head.weight.zero_()
    head.bias.copy_(torch.tensor([1.5, math.log(0.25)]).repeat(10))
    binary = torch.bernoulli(images(2))  # already binary: the evaluation binarization is the identity
    exact = exact_log_px_given_y(model, binary)

    def mean_bound(k: int, seeds: int = 8) -> torch.Tensor:
        bounds = []
        for seed in range(seeds):
            model.eval_seed = seed
            bounds.append(model.log_px_given_y(binary, None, k))
        return torch.stack(bounds).mean(0)

    gaps = {k: (exact - mean_bound(k)).mean().item() for k in (1, 10, 100)}
    # Jensen: E[IWAE_k] <= log p(x|y) for every k (Burda et al. 2016, theorem 1); the gap shrinks with k.
    assert all(gap > -1e-2 for gap in gaps.values()), gaps
    assert gaps[1] > 0.5 and gaps[1] - gaps[10] > 0.1 and gaps[10] - gaps[100] > 0.1, gaps


def test_classification_marginalises_missing_pixels() -> None:
    model, x = tiny_vae(), images(4)
    observed = random_mask(x)
    log_probs = model.classify(x, observed)
    # The missing pixels' values must not matter: they are integrated out, not read.
    scrambled = torch.where(observed, x, images(4, seed=7))
    torch.testing.assert_close(model.classify(scrambled, observed), log_probs)
    # ...while the observed ones do.
    assert not torch.allclose(model.classify(torch.where(observed, images(4, seed=8), x), observed), log_probs)


def test_imputation_reads_the_observed_pixels_only() -> None:
    model, x = tiny_vae(), images(4)
    observed = random_mask(x)
    filled = model.impute(x, observed)
    torch.testing.assert_close(model.impute(torch.where(observed, x, 1 - x), observed), filled)


def test_samples_follow_their_labels() -> None:
    model = tiny_vae()
    labels = torch.arange(10)
    first = model.sample(10, labels, torch.Generator().manual_seed(3))
    # Same noise, different labels: the label reaches the decoder.
    assert not torch.equal(first, model.sample(10, labels.roll(1), torch.Generator().manual_seed(3)))


def test_training_masks() -> None:
    model = tiny_vae(mask_prob=0.5, max_missing=0.8)
    observed = model.random_mask(torch.zeros(4000, 1, 28, 28))
    missing = 1 - observed.float().mean((1, 2, 3))
    assert abs((missing == 0).float().mean().item() - 0.5) < 0.05  # half the images are untouched
    # The others lose a fraction drawn uniformly in [0, 0.8] (binomial scatter aside): mean ~0.4.
    assert missing.max() < 0.85 and 0.33 < missing[missing > 0].mean() < 0.45


def test_complexity_is_a_code_length() -> None:
    # A sequential probability model: 2^-L summed over every possible 3x3 binary image is exactly 1.
    every = ((torch.arange(512)[:, None] >> torch.arange(9)) & 1).float().view(512, 1, 3, 3)
    torch.testing.assert_close((2.0 ** -context_code_length(every)).sum(), torch.tensor(1.0))
    blank, stripes = torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28)
    stripes[..., ::4, :] = 1
    noise = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5), generator=torch.Generator().manual_seed(0))
    bits = context_code_length(torch.cat([blank, stripes, noise]))
    assert bits[0] < 20 < bits[1] < 784 < bits[2]  # coin flips cannot be compressed below 1 bit each
