"""The row HMM (models/hmm.py): normalisation, the forward algorithm, Bayes' rule, imputation and sampling,
each against brute force over every state path (and every image) of chains of a few rows.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py.
The model reads any number of 28-pixel rows, so chains of 3 rows can be enumerated exhaustively."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from models.hmm import RowHMM
from tests.helpers import TINY, TINY_MODELS
from train import train

K = 3


def random_hmm(states: int = K, seed: int = 0) -> RowHMM:
    torch.manual_seed(seed)
    model = RowHMM(states=states)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape))
    return model.eval()


def probabilities(model: RowHMM) -> tuple[torch.Tensor, ...]:
    """p(y), pi, A, theta in float64 from the logits: the parameterisation, read off directly."""
    return (
        model.prior_logits.double().softmax(0),
        model.init_logits.double().softmax(-1),
        model.trans_logits.double().softmax(-1),
        model.emit_logits.double().sigmoid(),
    )


def brute_joint(model: RowHMM, x: torch.Tensor, observed: torch.Tensor) -> dict[tuple[int, tuple], torch.Tensor]:
    """p(y, h, x_obs) for every class y and state path h of the rows of x (N, 1, T, 28): products, no recursion."""
    prior, init, trans, theta = probabilities(model)
    b, keep = x[:, 0].double(), observed[:, 0].double()
    steps, joint = b.shape[1], {}
    for y in range(10):
        for path in itertools.product(range(model.hparams.states), repeat=steps):
            p = prior[y] * init[y, path[0]] * torch.ones(len(x), dtype=torch.float64)
            for t, k in enumerate(path):
                if t:
                    p = p * trans[y, path[t - 1], k]
                bernoulli = theta[y, k] ** b[:, t] * (1 - theta[y, k]) ** (1 - b[:, t])
                p = p * torch.where(keep[:, t].bool(), bernoulli, torch.ones_like(bernoulli)).prod(-1)
            joint[y, path] = p
    return joint


def three_rows(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 3, 28, generator=g) < 0.3).float()
    observed = torch.rand(n, 1, 3, 28, generator=g) < 0.7
    return x, observed


def test_likelihood_sums_to_one_over_every_binary_image() -> None:
    """Images of 3 rows x 2 pixels (the other 26 pixels of each row missing): all 64 of them."""
    model = random_hmm()
    patterns = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    x = torch.zeros(64, 1, 3, 28)
    x[:, 0, :, :2] = patterns.view(64, 3, 2)
    observed = torch.zeros(64, 1, 3, 28, dtype=torch.bool)
    observed[:, 0, :, :2] = True
    total = model.log_px_given_y(x, observed).double().exp().sum(0)
    torch.testing.assert_close(total, torch.ones(10, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.log_joint(x, observed).exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_forward_and_bayes_rule_equal_the_sum_over_all_state_paths_with_missing_pixels() -> None:
    model = random_hmm()
    x, observed = three_rows(5)
    joint = brute_joint(model, x, observed)
    log_joint = torch.stack([sum(joint[y, h] for (c, h) in joint if c == y) for y in range(10)], 1).log()
    torch.testing.assert_close(model.log_joint(x, observed).double(), log_joint, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.classify(x, observed).double(), log_joint.log_softmax(1), rtol=1e-5, atol=1e-4)


def test_impute_is_the_brute_force_posterior_mean_and_keeps_observed_pixels() -> None:
    model = random_hmm()
    x, observed = three_rows(4, seed=1)
    joint = brute_joint(model, x, observed)
    theta = probabilities(model)[3]
    mean, total = torch.zeros(4, 3, 28, dtype=torch.float64), sum(joint.values())
    for (y, path), p in joint.items():  # E[b_ti | x_obs] = sum_{y,h} p(y, h | x_obs) theta_{y,h_t,i}
        mean += (p / total)[:, None, None] * theta[y, list(path)]
    filled = model.impute(x, observed)
    assert torch.equal(filled[observed], x[observed])
    torch.testing.assert_close(filled[~observed].double(), mean[~observed[:, 0]], rtol=1e-5, atol=1e-5)


def test_a_left_to_right_chain_of_28_states_is_naive_bayes() -> None:
    """One state per row, deterministic left-to-right transitions: log p(x|y) = sum_i Bernoulli terms."""
    model = RowHMM(states=28).eval()
    theta = torch.rand(10, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    with torch.no_grad():
        model.init_logits.fill_(-200.0)[:, 0] = 0.0
        model.trans_logits.fill_(-200.0)
        model.trans_logits[:, torch.arange(27), torch.arange(1, 28)] = 0.0
        model.trans_logits[:, 27, 27] = 0.0
        model.emit_logits.copy_(torch.logit(theta))
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    b = x.view(3, 1, 784).double()
    t = theta.view(1, 10, 784).double()
    expected = (b * t.log() + (1 - b) * (1 - t).log()).sum(-1)
    torch.testing.assert_close(model.log_px_given_y(x).double(), expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        model.log_likelihood(x).double(), (expected - math.log(10)).logsumexp(1), rtol=1e-5, atol=1e-3
    )


def test_samples_follow_the_model_marginals() -> None:
    """Frequencies of the 8 patterns of pixel 0 in rows 0-2 over 20 000 samples of class 3 against the
    exact marginal p(b_obs | y) with every other pixel of the 28 rows missing."""
    model = random_hmm(states=2, seed=2)
    n = 20000
    images = model.sample(n, torch.full((n,), 3), torch.Generator().manual_seed(0))
    codes = (images[:, 0, :3, 0] * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
    frequencies = torch.bincount(codes, minlength=8).double() / n
    x = torch.zeros(8, 1, 28, 28)
    x[:, 0, :3, 0] = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    observed = torch.zeros(8, 1, 28, 28, dtype=torch.bool)
    observed[:, 0, :3, 0] = True
    expected = model.log_px_given_y(x, observed)[:, 3].double().exp()
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5, rtol=0)
    assert (frequencies - expected).abs().max() < 4 * math.sqrt(0.25 / n)  # 4 standard deviations


def test_trains_through_train_py(make_config: Callable[..., DictConfig]) -> None:
    metrics = train(make_config(*TINY, *TINY_MODELS["hmm"]))  # 20 steps, 4 states
    assert metrics["test/acc"] > 0.3  # chance 0.1; ~0.38 measured
    assert metrics["test/nll"] < 250  # the initial model's ~300 nats (emission probabilities ~0.12); ~188 measured
    assert metrics["test/bpd"] == pytest.approx(metrics["test/nll"] / (784 * math.log(2)))
