"""Logistic regression: the experiment through train.py, p(y|x) linear in the pixels, the MAP objective.

Shapes, capabilities and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgbench.checkpoint import load_model
from dgbench.runtime import compose_config
from models.logistic_regression import LogisticRegression
from tests.helpers import TINY
from train import train


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LogisticRegression, dict]:
    """The preset on 100 training images for 150 steps: a few seconds, and it must learn."""
    out = tmp_path_factory.mktemp("lr")
    steps = ["trainer.max_epochs=-1", "trainer.max_steps=150", "trainer.val_check_interval=50"]
    metrics = train(compose_config(["experiment=logistic_regression", *TINY, "data.train_size=100", *steps], out))
    return load_model(out / "checkpoints" / "best.ckpt"), metrics


def test_parameters_are_one_weight_per_pixel_and_class_plus_biases() -> None:
    assert LogisticRegression().num_parameters == 784 * 10 + 10


def test_learns_from_100_examples(trained: tuple[LogisticRegression, dict]) -> None:
    # Chance is 10%; the full preset reaches ~74% at 100 examples, a few steps already > 50%.
    _, metrics = trained
    assert metrics["test/acc"] > 0.5 and metrics["global_step"] == 150


def test_classify_and_scores_match_their_definitions(trained: tuple[LogisticRegression, dict]) -> None:
    model, x = trained[0], images(50)
    log_probs, logits = model.classify(x), x.flatten(1) @ model.linear.weight.T + model.linear.bias
    torch.testing.assert_close(log_probs, F.log_softmax(logits, 1))  # p(y|x) is linear in the pixels
    scores = model.score_anomalies(x)
    assert set(scores) == {"max_softmax", "energy"}
    torch.testing.assert_close(scores["max_softmax"], -log_probs.exp().amax(1))
    torch.testing.assert_close(scores["energy"], -torch.logsumexp(logits, 1))


def test_objective_is_cross_entropy_plus_l2_penalty() -> None:
    model, x, y = LogisticRegression(l2=0.1), images(8), torch.arange(8)
    with torch.no_grad():
        model.linear.weight.normal_(generator=torch.Generator().manual_seed(0))
    expected = F.cross_entropy(model(x), y) + 0.05 * model.linear.weight.square().sum()
    model.log = lambda *args, **kwargs: None  # training_step outside a Trainer
    torch.testing.assert_close(model.training_step((x, y), 0), expected)
