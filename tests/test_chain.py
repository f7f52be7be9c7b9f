"""The shared chain mathematics (models/nets/chain.py) against brute-force enumeration of every state path."""

from __future__ import annotations

import itertools

import torch

from models.nets import chain


def path_scores(log_init: torch.Tensor, log_trans: torch.Tensor, log_emit: torch.Tensor) -> dict[tuple, torch.Tensor]:
    """s(h) for every path h in K^T, each summed term by term: the definition, no recursion."""
    steps, states = log_emit.shape[-2:]
    scores = {}
    for path in itertools.product(range(states), repeat=steps):
        s = log_init[..., path[0]] + log_emit[..., 0, path[0]]
        for t in range(1, steps):
            s = s + log_trans[..., path[t - 1], path[t]] + log_emit[..., t, path[t]]
        scores[path] = s
    return scores


def random_chain(*batch: int, steps: int = 4, states: int = 3, scale: float = 1.0, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return (
        scale * torch.randn(*batch, states, generator=g, dtype=torch.float64),
        scale * torch.randn(*batch, states, states, generator=g, dtype=torch.float64),
        scale * torch.randn(*batch, steps, states, generator=g, dtype=torch.float64),
    )


def test_log_partition_and_forward_equal_the_sum_over_all_paths() -> None:
    log_init, log_trans, log_emit = random_chain(2, 5)  # batch dims (2, 5), T = 4, K = 3: 81 paths each
    scores = torch.stack(list(path_scores(log_init, log_trans, log_emit).values()))
    expected = torch.logsumexp(scores, dim=0)
    torch.testing.assert_close(chain.log_partition(log_init, log_trans, log_emit), expected)
    torch.testing.assert_close(torch.logsumexp(chain.forward(log_init, log_trans, log_emit)[..., -1, :], -1), expected)


def test_parameters_broadcast_over_images() -> None:
    """Per-class parameters (C, ...) against emissions (N, C, T, K), as the HMM and the HCRF call it."""
    log_init, log_trans, _ = random_chain(3)
    log_emit = random_chain(4, 3, seed=1)[2]
    got = chain.log_partition(log_init, log_trans, log_emit)
    for n in range(4):
        scores = torch.stack(list(path_scores(log_init, log_trans, log_emit[n]).values()))
        torch.testing.assert_close(got[n], torch.logsumexp(scores, dim=0))


def test_state_posteriors_equal_brute_force_marginals() -> None:
    log_init, log_trans, log_emit = random_chain(2, steps=4, states=3)
    paths = path_scores(log_init, log_trans, log_emit)
    log_z = torch.logsumexp(torch.stack(list(paths.values())), dim=0)
    expected = torch.zeros(2, 4, 3, dtype=torch.float64)
    for path, s in paths.items():
        for t, k in enumerate(path):
            expected[:, t, k] += (s - log_z).exp()
    log_post, got_z = chain.state_posteriors(log_init, log_trans, log_emit)
    torch.testing.assert_close(got_z, log_z)
    torch.testing.assert_close(log_post.exp(), expected)


def test_backward_is_the_log_sum_over_suffixes() -> None:
    log_init, log_trans, log_emit = random_chain(steps=3, states=2)
    beta = chain.backward(log_trans, log_emit)
    # beta_1(i) = log sum_{h2,h3} exp(A(i,h2) + e_2(h2) + A(h2,h3) + e_3(h3)); beta_T = 0.
    for i in range(2):
        terms = [
            log_trans[i, j] + log_emit[1, j] + log_trans[j, k] + log_emit[2, k] for j in range(2) for k in range(2)
        ]
        torch.testing.assert_close(beta[0, i], torch.logsumexp(torch.stack(terms), 0))
    torch.testing.assert_close(beta[-1], torch.zeros(2, dtype=torch.float64))


def test_stable_for_scores_far_beyond_exp_range_in_float32() -> None:
    """Scores of hundreds of nats (a CRF's unnormalised potentials, a 784-pixel emission) in float32."""
    log_init, log_trans, log_emit = random_chain(3, steps=4, states=3, scale=300.0, seed=2)
    scores = torch.stack(list(path_scores(log_init, log_trans, log_emit).values()))
    expected = torch.logsumexp(scores, dim=0)
    got = chain.log_partition(log_init.float(), log_trans.float(), log_emit.float())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-3)


def test_gradient_of_log_partition_is_the_state_posterior() -> None:
    """d log Z / d e_t(k) = p(h_t = k): autograd through the forward algorithm is the E-step."""
    log_init, log_trans, log_emit = random_chain(steps=4, states=3, seed=3)
    log_emit.requires_grad_(True)
    chain.log_partition(log_init, log_trans, log_emit).backward()
    log_post, _ = chain.state_posteriors(log_init, log_trans, log_emit.detach())
    torch.testing.assert_close(log_emit.grad, log_post.exp())
