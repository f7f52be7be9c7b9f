"""Chain mathematics shared by the HMM and the hidden-state CRF: the forward-backward algorithm in log space.

A chain of T positions with K latent states h_t has a score

    s(h) = a(h_1) + sum_{t>1} A(h_{t-1}, h_t) + sum_t e_t(h_t)

(log initial, log transition and log emission terms of an HMM, or the unnormalised potentials of a
CRF). The forward recursion (Rabiner 1989) computes log Z = log sum_h exp s(h) over all K^T paths in
O(T K^2):

    alpha_1(j) = a(j) + e_1(j),   alpha_t(j) = logsumexp_i [alpha_{t-1}(i) + A(i, j)] + e_t(j),
    log Z = logsumexp_j alpha_T(j)

and the backward one beta_T = 0, beta_t(i) = logsumexp_j [A(i, j) + e_{t+1}(j) + beta_{t+1}(j)], so that
the state posteriors are log p(h_t = k) = alpha_t(k) + beta_t(k) - log Z (Sutton & McCallum 2012, 4.1).

Each logsumexp over i is computed as a matrix product of exponentials shifted by their maxima (the
max of alpha_{t-1} and of each column of A), the log-space trick in a form that runs as one batched
matmul (~10x faster on a CPU than an explicit K x K logsumexp). Where that product could have lost a
term to underflow (scores hundreds of nats apart, a CRF's free potentials) the column falls back to
the explicit logsumexp, so the result is exact to rounding whatever the scale. Every argument
broadcasts over leading dimensions (e.g. images x classes).
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_matmul(log_v: Tensor, log_m: Tensor) -> Tensor:
    """logsumexp_i (log_v[..., i] + log_m[..., i, j]) for every j: (..., K) x (..., K, K) -> (..., K)."""
    v_max = log_v.amax(-1, keepdim=True).detach()  # (..., 1); shifts carry no gradient: they cancel
    m_max = log_m.amax(-2, keepdim=True).detach()  # (..., 1, K): per column
    product = torch.matmul((log_v - v_max).exp().unsqueeze(-2), (log_m - m_max).exp()).squeeze(-2)
    info = torch.finfo(product.dtype)
    out = product.clamp_min(info.tiny).log() + v_max + m_max.squeeze(-2)
    # Terms below float's smallest normal number are lost in the product; a column whose sum is within
    # 1/eps of that may have lost more than rounding, so it is computed again as an explicit logsumexp.
    inexact = product < info.tiny / info.eps
    if inexact.any():  # rare (two shifts far from the same path): pay the K x K logsumexp only then
        out = torch.where(inexact, torch.logsumexp(log_v.unsqueeze(-1) + log_m, dim=-2), out)
    return out


def forward(log_init: Tensor, log_trans: Tensor, log_emit: Tensor) -> Tensor:
    """Log forward variables alpha (..., T, K) from a (..., K), A (..., K, K) [from, to] and e (..., T, K)."""
    alpha = log_init + log_emit[..., 0, :]
    alphas = [alpha]
    for t in range(1, log_emit.shape[-2]):
        alpha = log_matmul(alpha, log_trans) + log_emit[..., t, :]
        alphas.append(alpha)
    return torch.stack(alphas, dim=-2)


def backward(log_trans: Tensor, log_emit: Tensor) -> Tensor:
    """Log backward variables beta (..., T, K): beta_t(i) = log sum over the suffixes after t given h_t = i."""
    beta = torch.zeros_like(log_emit[..., -1, :])
    betas = [beta]
    transposed = log_trans.transpose(-1, -2)
    for t in range(log_emit.shape[-2] - 1, 0, -1):
        beta = log_matmul(log_emit[..., t, :] + beta, transposed)
        betas.append(beta)
    return torch.stack(betas[::-1], dim=-2)


def log_partition(log_init: Tensor, log_trans: Tensor, log_emit: Tensor) -> Tensor:
    """log Z = log sum_h exp s(h) (...,): log p(x) for an HMM, the log normaliser of a chain CRF's class."""
    alpha = log_init + log_emit[..., 0, :]
    for t in range(1, log_emit.shape[-2]):  # forward() without keeping every alpha
        alpha = log_matmul(alpha, log_trans) + log_emit[..., t, :]
    return torch.logsumexp(alpha, dim=-1)


def state_posteriors(log_init: Tensor, log_trans: Tensor, log_emit: Tensor) -> tuple[Tensor, Tensor]:
    """(log p(h_t = k | evidence) (..., T, K), log Z (...,)) by forward-backward."""
    alpha = forward(log_init, log_trans, log_emit)
    log_z = torch.logsumexp(alpha[..., -1, :], dim=-1)
    return alpha + backward(log_trans, log_emit) - log_z[..., None, None], log_z
