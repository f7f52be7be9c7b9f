"""Bernoulli naive Bayes: the closed-form fit through train.py, exact marginals, and every capability."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY
from hydra.utils import instantiate
from omegaconf import DictConfig

from dgbench import DGBenchError
from dgbench.binarize import fixed_binarization
from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model
from dgbench.data import MNISTDataModule, default_data_root, load_split
from models.naive_bayes import BernoulliNaiveBayes
from train import train


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", default_data_root(), train=False)
    return images[:1200].unsqueeze(1).float() / 255, labels[:1200]


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


def test_fast_dev_run_through_train_py(make_config: Callable[..., DictConfig]) -> None:
    metrics = train(make_config("model=naive_bayes", *TINY, "debug=fast_dev_run"))
    assert (metrics["family"], metrics["kind"]) == ("naive_bayes", "generative")
    assert 0 <= metrics["test/acc"] <= 1 and 0 < metrics["test/nll"] < 784 * math.log(2)
    assert metrics["test/bpd"] == pytest.approx(metrics["test/nll"] / (784 * math.log(2)))


def test_training_is_the_closed_form_and_epochs_do_not_accumulate(
    make_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = make_config("model=naive_bayes", *TINY)
    metrics = train(cfg)  # two epochs of 10 batches
    assert metrics["epochs"] == 2 and metrics["test/acc"] > 0.6  # Bernoulli NB: ~75% at 1000 examples
    model = load_model(tmp_path / "checkpoints" / "best.ckpt")
    data = instantiate(cfg.data)
    data.setup("fit")
    images, labels = data.splits["train"]
    expected = torch.zeros(10, 784).index_add_(0, labels, images.flatten(1).float() / 255)
    assert model.class_counts.sum() == 1000  # counted once, not once per epoch
    torch.testing.assert_close(model.pixel_counts, expected)


def test_capabilities() -> None:
    assert capabilities_of(BernoulliNaiveBayes()) == [
        "classify",
        "sample",
        "score_anomalies",
        "log_likelihood",
        "impute",
    ]
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


def test_posteriors_sum_to_one_and_marginalise_missing_pixels(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x, y = digits[0][1000:], digits[1][1000:]
    log_probs = fitted.classify(x)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(len(x)))
    assert (log_probs.argmax(1) == y).float().mean() > 0.6  # held out; chance is 10%
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= 0.5
    masked = fitted.classify(x, observed)
    torch.testing.assert_close(masked.exp().sum(1), torch.ones(len(x)))
    torch.testing.assert_close(fitted.classify(torch.where(observed, x, 1 - x), observed), masked)
    # Nothing observed: the posterior is the prior.
    nothing = fitted.classify(x[:3], torch.zeros_like(x[:3], dtype=torch.bool))
    torch.testing.assert_close(nothing, fitted.log_params()[0].expand(3, 10))


def test_impute_mixes_class_means_by_the_posterior(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x = digits[0][1000:1010]
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) >= 0.7
    filled = fitted.impute(x, observed)
    assert filled.shape == x.shape and torch.equal(filled[observed], x[observed])
    theta = fitted.log_params()[1].exp()
    expected = (fitted.classify(x, observed).exp() @ theta).view_as(x)
    torch.testing.assert_close(filled[~observed], expected[~observed])


def test_sampling_is_reproducible_and_follows_theta(fitted: BernoulliNaiveBayes) -> None:
    labels = torch.full((4000,), 3)
    first = fitted.sample(4000, labels, torch.Generator().manual_seed(0))
    assert torch.equal(first, fitted.sample(4000, labels, torch.Generator().manual_seed(0)))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    # 4000 draws: the per-pixel frequency is within ~5 standard errors of theta_3.
    torch.testing.assert_close(first.mean(0).flatten(), fitted.log_params()[1].exp()[3], atol=0.04, rtol=0)
    assert fitted.sample(20).shape == (20, 1, 28, 28)


def test_score_anomalies(fitted: BernoulliNaiveBayes, digits: tuple) -> None:
    x = digits[0][1000:1010]
    scores = fitted.score_anomalies(x)
    assert set(scores) == {"nll", "complexity_corrected"}
    torch.testing.assert_close(scores["nll"], -fitted.log_likelihood(x))
    assert torch.equal(fitted.log_likelihood(x), torch.logsumexp(fitted.log_joint(fixed_binarization(x)), 1))


def test_weights_only_reload_gives_identical_outputs(tmp_path: Path, digits: tuple) -> None:
    model = BernoulliNaiveBayes(alpha=0.5)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, enable_model_summary=False, **quiet)
    trainer.fit(model, datamodule=MNISTDataModule(train_size=300, batch_size=100, val_size=100))
    assert trainer.global_step == 3 and model.class_counts.sum() == 300
    trainer.save_checkpoint(tmp_path / "nb.ckpt")
    reloaded, model, x = load_model(tmp_path / "nb.ckpt"), model.eval(), digits[0][:20]
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) >= 0.5
    assert reloaded.alpha == 0.5
    assert torch.equal(reloaded.classify(x, observed), model.classify(x, observed))
    assert torch.equal(reloaded.log_likelihood(x), model.log_likelihood(x))
    assert torch.equal(reloaded.impute(x, observed), model.impute(x, observed))


def test_experiment_config_composes(make_config: Callable[..., DictConfig]) -> None:
    cfg = make_config("experiment=naive_bayes")
    assert cfg.model._target_ == "models.naive_bayes.BernoulliNaiveBayes" and cfg.trainer.max_epochs == 1
