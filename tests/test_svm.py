"""Kernel SVM: the random features against the exact kernel, the hinge loss against a loop, the
temperature against a grid search, and the temperature of a trained checkpoint against its validation split.

Shapes, capabilities and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from dgbench import DGBenchError
from dgbench.calibration import fit_temperature
from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
from models.svm import KernelSVM, crammer_singer_loss
from tests.helpers import TINY, TINY_MODELS
from train import train


def test_random_features_approximate_the_exact_rbf_kernel() -> None:
    images, _ = load_split("mnist", default_data_root(), train=False)
    x = to_float(images[:12]).flatten(1)
    gamma, m = 0.02, 8192
    z = KernelSVM(num_frequencies=m, gamma=gamma, feature_seed=3).features(x)
    exact = torch.exp(-gamma * torch.cdist(x.double(), x.double()).square())
    # Each entry is a mean of m terms cos(w.(x - x')) of variance <= 1/2: standard error <= 0.008.
    assert (z.double() @ z.double().T - exact).abs().max() < 0.04
    assert exact.min() < 0.5  # the pairs span the kernel's range, not only its diagonal
    torch.testing.assert_close((z * z).sum(1), torch.ones(12))  # k(x, x) = 1 exactly: cos^2 + sin^2


def test_the_random_features_are_a_seeded_buffer() -> None:
    a, b, c = (
        KernelSVM(num_frequencies=16, feature_seed=0),
        KernelSVM(num_frequencies=16, feature_seed=0),
        KernelSVM(num_frequencies=16, feature_seed=1),
    )
    assert "frequencies" in dict(a.named_buffers()) and "frequencies" not in dict(a.named_parameters())
    assert torch.equal(a.frequencies, b.frequencies) and not torch.equal(a.frequencies, c.frequencies)


def test_crammer_singer_loss_equals_a_loop() -> None:
    margins = torch.randn(7, 10, generator=torch.Generator().manual_seed(0)) * 2
    labels = torch.tensor([0, 3, 9, 9, 1, 5, 2])
    expected = 0.0
    for n in range(7):
        y = int(labels[n])
        best_rival = max(float(margins[n, j]) for j in range(10) if j != y)
        expected += max(0.0, 1 + best_rival - float(margins[n, y])) / 7
    assert float(crammer_singer_loss(margins, labels)) == pytest.approx(expected, rel=1e-6)
    separated = F.one_hot(labels, 10).float() * 1.5  # every margin beats the rivals by 1.5 > 1
    assert float(crammer_singer_loss(separated, labels)) == 0.0


def test_bad_hyperparameters_are_one_line_errors() -> None:
    with pytest.raises(DGBenchError, match="gamma > 0"):
        KernelSVM(gamma=0)


def test_training_fits_the_checkpoints_temperature_on_its_validation_split(
    make_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = make_config(*TINY, *TINY_MODELS["svm"])
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.6  # 1 000 images, two epochs
    model = load_model(tmp_path / "checkpoints" / "best.ckpt")
    assert model.uncalibrated_reason is None and KernelSVM(num_frequencies=4).uncalibrated_reason is not None
    data = instantiate(cfg.data)
    data.setup("fit")
    images, labels = data.splits["val"]
    seen = cfg.trainer.limit_val_batches * cfg.data.eval_batch_size  # what validation saw
    x = to_float(images[:seen])
    margins = model.margins(model.network_input(x)).detach()
    # the temperature minimising their NLL (dgbench.calibration, checked against a grid in test_calibration.py)
    assert float(model.temperature) == pytest.approx(1 / fit_temperature(margins, labels[:seen]), rel=1e-5)
    torch.testing.assert_close(model.classify(x), F.log_softmax(margins / model.temperature, dim=1))
    scores = model.score_anomalies(x[:5])
    assert model.primary_score in scores
    torch.testing.assert_close(scores["max_margin"], -margins[:5].amax(1))
