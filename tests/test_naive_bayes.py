"""Bernoulli naive Bayes: the closed-form fit through train.py, exact likelihoods and marginals.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dgbench import DGBenchError
from dgbench.binarize import fixed_binarization
from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
from models.naive_bayes import BernoulliNaiveBayes
from tests.helpers import TINY
from train import train


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", default_data_root(), train=False)
    return to_float(images[:1200]), labels[:1200]


@pytest.fixture(scope="module")
def fitted(digits: tuple[torch.Tensor, torch.Tensor]) -> BernoulliNaiveBayes:
    """Fitted on 1000 test digits (its closed form needs no Trainer); the last 200 are held out."""
    model = BernoulliNaiveBayes()
    model.count(digits[0][:1000], digits[1][:1000])
    return model.eval()


def hand_made(alpha: float = 1.0) -> BernoulliNaiveBayes:
    """Class 0 saw 3 images, each pixel on in one of them; the other classes saw nothing."""
    model = BernoulliNaiveBayes(alpha=alpha)
    with torch.no_grad():
        model.class_counts[0], model.pixel_counts[0] = 3.0, 1.0
    return model


def test_training_is_the_closed_form_and_epochs_do_not_accumulate(
    make_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = make_config("model=naive_bayes", *TINY)
    metrics = train(cfg)  # two epochs of 10 batches
    assert metrics["epochs"] == 2 and metrics["test/acc"] > 0.6  # Bernoulli NB: ~75% at 1000 examples
    assert metrics["test/bpd"] == pytest.approx(metrics["test/nll"] / (784 * math.log(2)))
    model = load_model(tmp_path / "checkpoints" / "best.ckpt")
    data = instantiate(cfg.data)
    data.setup("fit")
    images, labels = data.splits["train"]
    expected = torch.zeros(10, 784).index_add_(0, labels, images.flatten(1).float() / 255)
    assert model.class_counts.sum() == 1000  # counted once, not once per epoch
    torch.testing.assert_close(model.pixel_counts, expected)


def test_alpha_must_be_positive() -> None:
    with pytest.raises(DGBenchError, match="must be > 0"):
        BernoulliNaiveBayes(alpha=0)


def test_log_likelihood_equals_the_closed_form_on_a_hand_made_case() -> None:
    # alpha = 1: theta_0 = (1 + 1) / (3 + 2) = 2/5, theta_y = 1/2 otherwise; pi_0 = 4/13, pi_y = 1/13.
    model = hand_made(alpha=1.0)
    blank, half = torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28)
    half[..., :14, :] = 1  # 392 pixels on
    log_half = math.log(0.5) * 784
    expected_blank = math.log(4 / 13 * math.exp(784 * math.log(3 / 5) - log_half) + 9 / 13) + log_half
    expected_half = math.log(4 / 13 * math.exp(392 * math.log(6 / 25) - log_half) + 9 / 13) + log_half
    # Binary images are their own fixed binarization.
    log_px = model.log_likelihood(torch.cat([blank, half]))  # float32: ~1e-6 relative error over 784 terms
    torch.testing.assert_close(log_px, torch.tensor([expected_blank, expected_half]))


def test_posteriors_marginalise_missing_pixels(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x, y = digits[0][1000:], digits[1][1000:]
    assert (fitted.classify(x).argmax(1) == y).float().mean() > 0.6  # held out; chance is 10%
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= 0.5
    masked = fitted.classify(x, observed)
    torch.testing.assert_close(fitted.classify(torch.where(observed, x, 1 - x), observed), masked)
    # Nothing observed: the posterior is the prior.
    nothing = fitted.classify(x[:3], torch.zeros_like(x[:3], dtype=torch.bool))
    torch.testing.assert_close(nothing, fitted.log_params()[0].expand(3, 10))


def test_impute_mixes_class_means_by_the_posterior(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x = digits[0][1000:1010]
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) >= 0.7
    filled = fitted.impute(x, observed)
    theta = fitted.log_params()[1].exp()
    expected = (fitted.classify(x, observed).exp() @ theta).view_as(x)
    torch.testing.assert_close(filled[~observed], expected[~observed])


def test_samples_are_binary_and_follow_theta(fitted: BernoulliNaiveBayes) -> None:
    samples = fitted.sample(4000, torch.full((4000,), 3), torch.Generator().manual_seed(0))
    assert set(samples.unique().tolist()) == {0.0, 1.0}
    # 4000 draws: the per-pixel frequency is within ~5 standard errors of theta_3.
    torch.testing.assert_close(samples.mean(0).flatten(), fitted.log_params()[1].exp()[3], atol=0.04, rtol=0)


def test_score_anomalies(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x = digits[0][1000:1010]
    scores = fitted.score_anomalies(x)
    assert set(scores) == {"nll", "complexity_corrected"}
    torch.testing.assert_close(scores["nll"], -fitted.log_likelihood(x))
    assert torch.equal(fitted.log_likelihood(x), torch.logsumexp(fitted.log_joint(fixed_binarization(x)), 1))
