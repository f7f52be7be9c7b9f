"""Temperature scaling (dgbench/calibration.py), the validation split a checkpoint records, and the
classification suite's temperature-scaled NLL/ECE fitted on it: checked against brute force."""

from __future__ import annotations

import math

import torch

from dgbench.calibration import apply_temperature, fit_temperature
from dgbench.checkpoint import load_model
from dgbench.data import MNISTDataModule, held_out_validation
from dgbench.evaluation.metrics import classification_metrics
from dgbench.runtime import compose_config
from tests.helpers import TINY


def brute_force_nll(scores: torch.Tensor, labels: torch.Tensor, beta: float) -> float:
    total = 0.0
    for s, y in zip(scores.tolist(), labels.tolist()):
        total += math.log(sum(math.exp(beta * v) for v in s)) - beta * s[y]
    return total / len(labels)


def test_fitted_temperature_minimises_the_validation_nll_over_a_grid() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (200,), generator=generator)
    labels[:120] = scores[:120].argmax(1)  # informative but overconfident scores
    beta = fit_temperature(scores, labels)
    grid = [0.01 * k for k in range(1, 301)]
    best = min(grid, key=lambda b: brute_force_nll(scores, labels, b))
    assert abs(beta - best) <= 0.011
    assert brute_force_nll(scores, labels, beta) <= brute_force_nll(scores, labels, best) + 1e-9


def test_temperature_is_recovered_from_data_drawn_at_that_temperature() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(20000, 10, generator=generator)
    labels = torch.multinomial(torch.softmax(2.5 * scores, 1), 1, generator=generator).squeeze(1)
    assert abs(fit_temperature(scores, labels) - 2.5) < 0.1
    # Scaling keeps the argmax (accuracy) and makes the probabilities those the data were drawn from.
    scaled = apply_temperature(scores, fit_temperature(scores, labels))
    assert torch.equal(scaled.argmax(1), scores.argmax(1))
    assert classification_metrics(scaled, labels)["ece"] < 0.02


def test_a_checkpoint_records_the_validation_split_it_never_trained_on(tmp_path) -> None:
    from train import train

    train(compose_config([*TINY, "model=logistic_regression", "data.val_size=300", "data.seed=3"], tmp_path))
    model = load_model(next(tmp_path.rglob("best.ckpt")))
    assert model.validation_split == {"dataset": "mnist", "val_size": 300, "seed": 3}
    images, labels = held_out_validation("mnist", 300, 3)
    datamodule = MNISTDataModule("mnist", val_size=300, seed=3, download=False)
    datamodule.setup()
    train_images = datamodule.splits["train"][0]
    assert len(images) == 300 and torch.equal(images, datamodule.splits["val"][0])
    # disjoint from what it trained on: no validation image occurs in the training split
    train_keys = {bytes(im.numpy()) for im in train_images}
    assert not any(bytes(im.numpy()) in train_keys for im in images)
