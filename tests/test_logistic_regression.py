"""Logistic regression: train.py end to end, its two capabilities, the MAP objective, checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, compose_config
from omegaconf import DictConfig

from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model
from dgbench.data import MNISTDataModule
from models.logistic_regression import LogisticRegression
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


def test_fast_dev_run_through_train_py(make_config: Callable[..., DictConfig]) -> None:
    metrics = train(make_config("model=logistic_regression", *TINY, "debug=fast_dev_run"))
    assert (metrics["family"], metrics["kind"], metrics["global_step"]) == ("logistic_regression", "discriminative", 1)
    assert 0 <= metrics["test/acc"] <= 1 and metrics["num_parameters"] == 784 * 10 + 10


def test_learns_from_100_examples(trained: tuple[LogisticRegression, dict]) -> None:
    # Chance is 10%; the full preset reaches ~74% at 100 examples, a few steps already > 50%.
    _, metrics = trained
    assert metrics["test/acc"] > 0.5 and metrics["global_step"] == 150


def test_capabilities_are_exactly_classify_and_score_anomalies() -> None:
    assert capabilities_of(LogisticRegression()) == ["classify", "score_anomalies"]


def test_classify_and_scores_match_their_definitions(trained: tuple[LogisticRegression, dict]) -> None:
    model, x = trained[0], images(50)
    log_probs, logits = model.classify(x), x.flatten(1) @ model.linear.weight.T + model.linear.bias
    assert log_probs.shape == (50, 10) and log_probs.dtype == torch.float32
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


def test_weights_only_reload_gives_identical_outputs(tmp_path: Path) -> None:
    model = LogisticRegression().train()
    model.optimizer_factory = lambda params: torch.optim.AdamW(params, 0.01)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, enable_model_summary=False, **quiet)
    trainer.fit(model, datamodule=MNISTDataModule(train_size=300, batch_size=100, val_size=100))
    trainer.save_checkpoint(tmp_path / "lr.ckpt")
    reloaded, model, x = load_model(tmp_path / "lr.ckpt"), model.eval(), images(20, seed=1)
    assert reloaded.l2 == model.l2 and not torch.equal(model.linear.weight, torch.zeros_like(model.linear.weight))
    assert torch.equal(reloaded.classify(x), model.classify(x))
    assert torch.equal(reloaded.score_anomalies(x)["energy"], model.score_anomalies(x)["energy"])


def test_experiment_config_composes(make_config: Callable[..., DictConfig]) -> None:
    cfg = make_config("experiment=logistic_regression")
    assert cfg.model._target_ == "models.logistic_regression.LogisticRegression" and cfg.trainer.max_steps > 0
