"""Metrics for the evaluation suites, each with its reference. Inputs are CPU tensors."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_roc,
    multiclass_calibration_error,
)


def classification_metrics(log_probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, mean NLL (nats) and 15-bin expected calibration error (Guo et al. 2017)."""
    log_probs = log_probs.float()
    return {
        "accuracy": (log_probs.argmax(1) == labels).float().mean().item(),
        "nll": torch.nn.functional.nll_loss(log_probs, labels).item(),
        "ece": multiclass_calibration_error(log_probs.exp(), labels, num_classes=10, n_bins=15).item(),
    }


def _ranks(scores: Tensor) -> Tensor:
    """Scores mapped to their dense rank in [0, 1], ties kept.

    torchmetrics reads binary predictions outside [0, 1] as logits and squashes them with a
    sigmoid, which turns large scores (a negative log-likelihood in nats is in the hundreds) into
    ties at 1.0 and every AUROC into 0.5. AUROC, AUPR and the ROC depend only on the order of the
    scores, so their ranks give exactly the same metrics without that trap.
    """
    _, inverse = torch.unique(scores.float(), return_inverse=True)
    return inverse.float() / max(int(inverse.max()), 1)


def ood_metrics(in_scores: Tensor, out_scores: Tensor) -> dict[str, float]:
    """Detection of out-of-distribution inputs from anomaly scores (higher = more anomalous).

    AUROC and AUPR treat OOD as the positive class. FPR@95 is the fraction of OOD inputs accepted
    when the threshold accepts 95% of in-distribution inputs (Liang et al. 2018, "ODIN").
    """
    ranks = _ranks(torch.cat([in_scores, out_scores]))
    is_ood = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(out_scores))]).long()
    # ROC with in-distribution as positive and -score as its detector, to read FPR at TPR = 0.95.
    fpr, tpr, _ = binary_roc(1 - ranks, 1 - is_ood)
    return {
        "auroc": binary_auroc(ranks, is_ood).item(),
        "aupr": binary_average_precision(ranks, is_ood).item(),
        "fpr95": fpr[torch.searchsorted(tpr, torch.tensor(0.95))].item(),
    }


def roc_curve(in_scores: Tensor, out_scores: Tensor) -> tuple[Tensor, Tensor]:
    """(false positive rate, true positive rate) with OOD as the positive class, for plotting."""
    is_ood = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(out_scores))]).long()
    fpr, tpr, _ = binary_roc(_ranks(torch.cat([in_scores, out_scores])), is_ood)
    return fpr, tpr


def knn_precision_recall(real_features: Tensor, fake_features: Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    k-th nearest neighbour. Precision = share of fakes inside the real manifold (fidelity);
    recall = share of reals inside the fake manifold (coverage).
    """

    def radii(x: Tensor) -> Tensor:
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # k+1: the point itself is at 0

    def inside(points: Tensor, centres: Tensor, centre_radii: Tensor) -> float:
        return (torch.cdist(points, centres) <= centre_radii[None]).any(dim=1).float().mean().item()

    real_features, fake_features = real_features.float(), fake_features.float()
    return {
        "precision": inside(fake_features, real_features, radii(real_features)),
        "recall": inside(real_features, fake_features, radii(fake_features)),
    }
