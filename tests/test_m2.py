"""M2's two bounds and its objective (Kingma et al. 2014, eqs. 6, 7 and 9), checked by brute force.

-L(x, y) against torch.distributions (Bernoulli likelihood, Gaussian KL); -U(x) against an explicit
loop over the ten classes; J^alpha on labelled-only, unlabelled-only and mixed batches against the
bounds and a hand-written cross-entropy.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from models.m2 import M2

N, CLASSES, LATENT = 6, 10, 3


@pytest.fixture(scope="module")
def model() -> M2:
    torch.manual_seed(0)
    return M2(latent_dim=LATENT, hidden=16, alpha=7.0).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 28, 28, generator=generator)
    b = torch.bernoulli(x, generator=generator)
    eps = torch.randn(N, CLASSES, LATENT, generator=generator)
    return x, b, eps


def test_labelled_bound_is_the_bernoulli_log_likelihood_plus_log_prior_minus_the_gaussian_kl(model, batch) -> None:
    x, b, eps = batch
    y = torch.tensor([0, 1, 2, 7, 8, 9])
    with torch.no_grad():
        bound = model.labelled_bound(x, b, y, eps[:, 0])
        for i in range(N):
            h = model.encoder(model.encoder_x(x[i].flatten()) + model.encoder_y.weight[:, y[i]])
            mean, log_var = h[:LATENT], h[LATENT:]
            q = Normal(mean, (0.5 * log_var).exp())
            z = mean + q.scale * eps[i, 0]
            logits = model.decoder(torch.cat([z, torch.eye(CLASSES)[y[i]]]))
            expected = (
                Bernoulli(logits=logits).log_prob(b[i].flatten()).sum()
                + torch.log(torch.tensor(0.1))
                - kl_divergence(q, Normal(torch.zeros(LATENT), torch.ones(LATENT))).sum()
            )
            torch.testing.assert_close(bound[i], expected, rtol=1e-5, atol=1e-3)


def test_unlabelled_bound_is_the_posterior_weighted_sum_of_labelled_bounds_plus_the_entropy(model, batch) -> None:
    x, b, eps = batch
    with torch.no_grad():
        unlabelled = model.unlabelled_bound(x, b, eps)
        q = torch.softmax(model.class_logits(x), dim=1)
        expected = torch.zeros(N)
        for c in range(CLASSES):  # brute force: one labelled bound per class, each with its own noise
            labelled = model.labelled_bound(x, b, torch.full((N,), c), eps[:, c])
            expected += q[:, c] * labelled - q[:, c] * q[:, c].log()
    torch.testing.assert_close(unlabelled, expected, rtol=1e-5, atol=1e-3)
    assert (q.sum(1) - 1).abs().max() < 1e-5


def cross_entropy_by_hand(model: M2, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model.class_logits(x)
    return torch.stack([torch.logsumexp(logits[i], 0) - logits[i, y[i]] for i in range(len(y))]).mean()


def test_a_labelled_only_batch_gives_exactly_the_labelled_objective(model, batch) -> None:
    x, _, eps = batch
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    with torch.no_grad():
        parts = model.objective(x, y, eps)
        bounds = torch.stack([model.labelled_bound(x[i : i + 1], x[i : i + 1], y[i : i + 1], eps[i : i + 1, y[i]])[0]
                              for i in range(N)])  # fmt: skip
        expected = -bounds.mean() + 7.0 * cross_entropy_by_hand(model, x, y)
    torch.testing.assert_close(parts["loss"], expected, rtol=1e-5, atol=1e-3)


def test_an_unlabelled_only_batch_has_no_classification_term_and_a_mixed_batch_averages_both(model, batch) -> None:
    x, _, eps = batch
    with torch.no_grad():
        unlabelled = model.objective(x, torch.full((N,), -1), eps)
        torch.testing.assert_close(unlabelled["loss"], -model.unlabelled_bound(x, x, eps).mean(), rtol=1e-5, atol=1e-3)
        y = torch.tensor([2, -1, -1, 6, -1, 0])
        known = y >= 0
        mixed = model.objective(x, y, eps)
        labelled = model.labelled_bound(x[known], x[known], y[known], eps[known, y[known]])
        total = labelled.sum() + model.unlabelled_bound(x[~known], x[~known], eps[~known]).sum()
        expected = -total / N + 7.0 * cross_entropy_by_hand(model, x[known], y[known])
    torch.testing.assert_close(mixed["loss"], expected, rtol=1e-5, atol=1e-3)


def test_the_likelihood_bound_lies_below_nothing_impossible_and_above_the_unlabelled_elbo_on_average(model) -> None:
    """IWAE over every class (exact sum over y) is at least as tight as M2's -U(b) on average."""
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    model.likelihood_k = 50
    log_px = model.log_likelihood(x)
    neg_elbo = model.score_anomalies(x)["neg_elbo"]
    assert (log_px <= 0).all() and log_px.mean() >= -neg_elbo.mean() - 1.0
