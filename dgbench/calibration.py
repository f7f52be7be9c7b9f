"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", §4.2).

One scalar β = 1/T rescales a classifier's class scores s (its log-probabilities, or any scores
whose differences are log-odds up to scale) into p_β(y|x) = softmax(β s)_y. β is fitted on held-out
labelled data by minimising the negative log-likelihood

    NLL(β) = 1/N Σ_n [ logsumexp_y β s_ny − β s_n,y_n ],

which is convex in β with derivative E_{p_β}[s] − s_y averaged over the data: the root is found by
bisection on log β. The argmax, so the accuracy, never changes; only the confidence does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_BETA_RANGE = (-10.0, 10.0)  # β in [4.5e-5, 2.2e4]: far beyond any useful temperature


def fit_temperature(scores: Tensor, labels: Tensor, iterations: int = 80) -> float:
    """β = 1/T minimising NLL(β) on (``scores`` (N, C), ``labels`` (N,)); clipped to the range above
    (β grows without bound when the scores separate the classes perfectly)."""
    scores, labels = scores.double().cpu(), labels.cpu()
    # Classes a classifier rules out entirely (-inf) contribute nothing at any β > 0.
    scores = torch.where(torch.isfinite(scores), scores, scores.new_tensor(-1e30))
    true = scores.gather(1, labels.view(-1, 1)).squeeze(1)

    def slope(log_beta: float) -> float:  # dNLL/dβ: E_p[s] - s_y, averaged
        p = torch.softmax(scores * math.exp(log_beta), 1)
        return float(((p * scores.clamp_min(-1e6)).sum(1) - true.clamp_min(-1e6)).mean())

    lo, hi = LOG_BETA_RANGE
    if slope(lo) >= 0:
        return math.exp(lo)
    if slope(hi) <= 0:
        return math.exp(hi)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return math.exp((lo + hi) / 2)


def apply_temperature(scores: Tensor, beta: float) -> Tensor:
    """log softmax(β s): the temperature-scaled class log-probabilities."""
    return torch.log_softmax(scores.float() * beta, dim=1)
