"""Mask-trained discriminative variants: the shared mask sampler, ``mask_channel`` on and off, checkpoints.

``mask_channel=False`` must be the old model exactly (shapes, outputs, no mask drawn, old checkpoints
load); with True the mask must reach the network, and training must draw the VAE's masks from the
one sampler (dgbench/masks.py). The sampler is checked against its documented distribution with
tolerances from the binomial variance, not from its code.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.data import MNISTDataModule, default_data_root, load_split, to_float
from dgbench.family import CHECKPOINT_FORMAT
from dgbench.masks import random_training_mask
from dgbench.runtime import compose_config
from models.logistic_regression import LogisticRegression
from models.nets.resnet import ResNet
from models.resnet import ResNetClassifier
from models.vae import ConditionalVAE
from tests.helpers import TINY
from train import train

PIXELS = 28 * 28
TINY_RESNET_ARGS = {"width": 4, "depth": 1, "num_stages": 2, "stem_stride": 2}


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def random_observed(n: int, seed: int = 1, p_missing: float = 0.5) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) >= p_missing


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights (logistic regression starts at zero, where every input gives the same logits)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model


# --- mask_channel=False is the old model --------------------------------------------------------------
def test_unmasked_logistic_regression_is_the_old_linear_model(tmp_path: Path) -> None:
    model = LogisticRegression().eval()
    assert not model.mask_channel and model.in_channels == 1
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        "linear.weight": (10, PIXELS),
        "linear.bias": (10,),
    }
    # An old checkpoint: hyper-parameters without the mask options, weights of the old shapes.
    generator = torch.Generator().manual_seed(0)
    old_state = {"linear.weight": torch.randn(10, PIXELS, generator=generator), "linear.bias": torch.randn(10)}
    meta = {"format": CHECKPOINT_FORMAT, "family": "logistic_regression", "kind": "discriminative"}
    meta["class_path"] = "models.logistic_regression.LogisticRegression"
    torch.save({"dgbench": meta, "hyper_parameters": {"l2": 1e-4}, "state_dict": old_state}, tmp_path / "old.ckpt")
    loaded = load_model(tmp_path / "old.ckpt")
    assert isinstance(loaded, LogisticRegression) and not loaded.mask_channel
    x, observed = images(20), random_observed(20)
    expected = F.linear(x.flatten(1), old_state["linear.weight"], old_state["linear.bias"])
    assert torch.equal(loaded(x), expected)
    # The mask is ignored: the model sees only the zero-filled image.
    masked = x * observed
    assert torch.equal(loaded.classify(masked, observed), loaded.classify(masked))
    assert torch.equal(loaded.classify(masked), F.log_softmax(loaded(masked), 1))


def test_unmasked_resnet_is_the_old_network() -> None:
    model = ResNetClassifier(**TINY_RESNET_ARGS).eval()
    assert model.net.stem.weight.shape == (4, 1, 3, 3) and not model.mask_channel
    # The one-channel network as ResNetClassifier built it before the option existed, same weights.
    old = ResNet(10, 4, 1, 2, 2, 0.0).to(memory_format=torch.channels_last).eval()
    old.load_state_dict(randomise(model).net.state_dict())
    x, observed = images(8), random_observed(8)
    assert torch.equal(model(x), old(x)) and torch.equal(model.features(x), old.features(x))
    assert torch.equal(model.classify(x * observed, observed), model.classify(x * observed))


def test_unmasked_training_draws_no_mask() -> None:
    # The old loss, bit for bit, and no extra draw from the global RNG: training runs are unchanged.
    model, x, y = randomise(ResNetClassifier(**TINY_RESNET_ARGS)), images(8), torch.arange(8)
    model.log = lambda *args, **kwargs: None  # training_step outside a Trainer
    torch.manual_seed(5)
    loss, after = model.training_step((x, y), 0), torch.rand(4)
    torch.manual_seed(5)
    old_loss, old_after = F.cross_entropy(model.net(x), y), torch.rand(4)
    assert torch.equal(loss, old_loss) and torch.equal(after, old_after)


# --- mask_channel=True: the mask reaches the network ------------------------------------------------------
@pytest.mark.parametrize("family", ["logistic_regression", "resnet"])
def test_the_mask_reaches_the_network(family: str) -> None:
    torch.manual_seed(0)  # the ResNet keeps its default initialisation
    if family == "logistic_regression":
        model = LogisticRegression(mask_channel=True)
        assert model.linear.weight.shape == (10, 2 * PIXELS)
    else:
        model = ResNetClassifier(**TINY_RESNET_ARGS, mask_channel=True)
        assert model.net.stem.weight.shape == (4, 2, 3, 3)
    model = (randomise(model) if family == "logistic_regression" else model).eval()
    # Two masks that differ only where the image is zero anyway: the zero-filled images are identical,
    # so any change in the logits comes from the mask channel.
    x = images(16)
    x[:, :, :, :14] = 0
    first = random_observed(16, seed=2)
    second = first.clone()
    second[:, :, :, :14] = ~first[:, :, :, :14]
    assert torch.equal(x * first, x * second)
    logits_first, logits_second = model(x * first, first), model(x * second, second)
    assert (logits_first - logits_second).abs().amax(1).min() > 1e-3  # every image's logits move
    torch.testing.assert_close(model.classify(x * first, first), F.log_softmax(logits_first, 1))
    # The network input is (zero-filled image, mask as float); no mask means all observed.
    inputs = model.network_input(x, first)
    assert inputs.shape == (16, 2, 28, 28)
    assert torch.equal(inputs[:, :1], x * first) and torch.equal(inputs[:, 1:], first.float())
    everything = torch.ones_like(x, dtype=torch.bool)
    assert torch.equal(model.classify(x), model.classify(x, everything))
    # Anomaly scores see every pixel observed.
    logits = model(x, everything)
    torch.testing.assert_close(model.score_anomalies(x)["energy"], -torch.logsumexp(logits, 1))


def test_masked_training_draws_the_vae_masks_from_the_shared_sampler() -> None:
    model = randomise(LogisticRegression(mask_channel=True, mask_prob=0.7, max_missing=0.4, l2=0.0))
    model.log = lambda *args, **kwargs: None
    x, y = images(32), torch.arange(32) % 10
    torch.manual_seed(11)
    loss = model.training_step((x, y), 0)
    torch.manual_seed(11)
    observed = random_training_mask(x, 0.7, 0.4)
    assert not observed.all()
    torch.testing.assert_close(loss, F.cross_entropy(model(x, observed), y))
    # The VAE draws from the same sampler with its own parameters, the same defaults.
    vae = ConditionalVAE(latent_dim=2, width=4)
    assert (vae.mask_prob, vae.max_missing) == (LogisticRegression().mask_prob, ResNetClassifier().max_missing)
    torch.manual_seed(12)
    from_vae = vae.random_mask(x)
    torch.manual_seed(12)
    assert torch.equal(from_vae, random_training_mask(x, vae.mask_prob, vae.max_missing))


def test_mask_parameters_outside_zero_one_are_refused() -> None:
    with pytest.raises(DGBenchError, match="mask_prob"):
        LogisticRegression(mask_channel=True, mask_prob=1.5)
    with pytest.raises(DGBenchError, match="max_missing"):
        ResNetClassifier(max_missing=-0.1)


# --- the sampler's distribution ------------------------------------------------------------------
@pytest.mark.parametrize(("mask_prob", "max_missing", "seed"), [(0.5, 0.9, 0), (0.2, 0.3, 1), (1.0, 0.6, 2)])
def test_sampler_follows_its_documented_distribution(mask_prob: float, max_missing: float, seed: int) -> None:
    n = 20_000
    torch.manual_seed(seed)
    observed = random_training_mask(torch.zeros(n, 1, 28, 28), mask_prob, max_missing)
    assert observed.shape == (n, 1, 28, 28) and observed.dtype == torch.bool
    missing = 1.0 - observed.flatten(1).float().mean(1)  # per image
    masked = missing > 0

    # An image is masked with probability mask_prob; half the masked ones are scattered, and those lose
    # nothing with probability E_r[(1 - r)^784] = (1 - (1 - m)^785) / (785 m), r ~ Uniform(0, m);
    # rectangles always lose a pixel. The share of images that lose a pixel is Binomial(n, p) / n.
    lose_nothing = (1 - (1 - max_missing) ** (PIXELS + 1)) / ((PIXELS + 1) * max_missing)
    p = mask_prob * (1 - 0.5 * lose_nothing)
    assert abs(masked.float().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9

    # No image loses more than max_missing of its pixels, but for the Binomial(784, r) fluctuation
    # of a scattered mask at the largest rate r = max_missing (5 standard deviations).
    slack = 5 * math.sqrt(max_missing * (1 - max_missing) / PIXELS)
    assert missing.max().item() <= max_missing + slack
    # ... and the rate is spread over (0, max_missing]: some images come close to the cap, and on
    # average a masked image loses at most half of it (E[r] = max_missing / 2; rectangles are rounded
    # down), within 5 standard errors; a masked image's fraction f has E[f^2] <= E[r^2] + E[r] / 784.
    assert missing.max().item() >= 0.9 * max_missing
    second_moment = max_missing**2 / 3 + max_missing / (2 * PIXELS)
    assert missing[masked].mean().item() <= max_missing / 2 + 5 * math.sqrt(second_moment / int(masked.sum()))


def test_sampler_with_mask_prob_zero_observes_everything() -> None:
    torch.manual_seed(0)
    assert random_training_mask(torch.zeros(500, 1, 28, 28), 0.0, 0.9).all()


# --- a tiny masked logistic regression trains, and its checkpoint round-trips ---------------------------
def test_tiny_masked_logistic_regression_trains_and_round_trips(tmp_path: Path) -> None:
    model = LogisticRegression(mask_channel=True).train()
    model.optimizer_factory = lambda params: torch.optim.AdamW(params, 0.01)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(accelerator="cpu", max_steps=40, limit_val_batches=0, enable_model_summary=False, **quiet)
    trainer.fit(model, datamodule=MNISTDataModule(train_size=1000, batch_size=100, val_size=100))
    trainer.save_checkpoint(tmp_path / "masked_lr.ckpt")
    reloaded, model = load_model(tmp_path / "masked_lr.ckpt"), model.eval()
    assert reloaded.mask_channel and reloaded.hparams["mask_channel"] is True
    assert (reloaded.mask_prob, reloaded.max_missing) == (model.mask_prob, model.max_missing)
    assert torch.equal(reloaded.linear.weight, model.linear.weight)

    test_images, labels = load_split("mnist", default_data_root(), train=False)
    x, y = to_float(test_images[:500]), labels[:500]
    observed = random_observed(500, seed=3)
    for args in ((x,), (x * observed, observed)):
        assert torch.equal(reloaded.classify(*args), model.classify(*args))
    # It learnt from 40 steps: well above chance (10 %) on whole digits and with half the pixels missing.
    assert (model.classify(x).argmax(1) == y).float().mean() > 0.6
    assert (model.classify(x * observed, observed).argmax(1) == y).float().mean() > 0.4


def test_masked_presets_train_through_train_py(tmp_path: Path) -> None:
    steps = ["trainer.max_epochs=-1", "trainer.max_steps=4", "trainer.val_check_interval=2", "data.train_size=200"]
    metrics = train(compose_config(["experiment=logistic_regression_masked", *TINY, *steps], tmp_path))
    assert metrics["num_parameters"] == 2 * PIXELS * 10 + 10 and metrics["global_step"] == 4
    assert load_model(tmp_path / "checkpoints" / "best.ckpt").mask_channel


def test_a_mask_trained_classifier_says_so_and_the_report_records_it(tmp_path: Path) -> None:
    from dgbench.evaluation.records import model_record

    plain, masked = LogisticRegression(), LogisticRegression(mask_channel=True)
    assert (plain.trained_on_missing_pixels, masked.trained_on_missing_pixels) == (False, True)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": masked.state_dict()}, path)
    assert model_record(masked, path, {})["trained_on_missing_pixels"] is True
