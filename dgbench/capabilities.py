"""The capability protocol: what a family can do, discovered by ``evaluate.py``.

A family's LightningModule implements only the methods it truly has; ``capabilities_of`` checks
them structurally (``typing.Protocol`` + ``isinstance``), so evaluation never names a family and a
new family needs no change to evaluate.py or the suites. Conventions shared by every capability:

* images are float tensors in [0, 1] of shape (N, 1, 28, 28); labels are int64 (N,);
* masks are bool (N, 1, 28, 28) with True = observed pixel;
* every method runs in inference mode on the module's device and returns tensors on that device.

=================  ======================================================================
capability         method
=================  ======================================================================
classify           ``classify(x, observed=None) -> (N, 10)`` class log-probabilities.
                   Discriminative families predict p(y|x) directly and may ignore
                   ``observed`` (they receive zero-filled images); generative families use
                   Bayes' rule and marginalise unobserved pixels.
sample             ``sample(n, labels=None, generator=None) -> (n, 1, 28, 28)`` in [0, 1];
                   reproducible for a given CPU ``torch.Generator``: noise is drawn on the
                   CPU with it and then moved, so a seed gives the same images on any device.
score_anomalies    ``score_anomalies(x) -> {name: (N,)}``; higher = more anomalous. A family
                   may offer several named scores, and declares one, ``primary_score``,
                   with its reason, before any OOD test set is scored: the head-to-head
                   table reports only that one.
log_likelihood     ``log_likelihood(x) -> (N,)`` log p(x), or a lower bound, in nats per
                   image; ``likelihood_protocol`` says which bound and data protocol.
impute             ``impute(x, observed) -> (N, 1, 28, 28)`` with observed pixels returned
                   bit-identical and missing ones filled.
explain            ``explain(x, observed=None) -> (N, 1, 28, 28)`` float32 per-pixel attributions
                   of the decision ``classify(x, observed)`` makes, ŷ = its argmax: positive =
                   the pixel speaks for ŷ. Unobserved pixels get exactly 0. The attributions
                   sum to the quantity ``explanation_method`` names (exactly, or within the
                   integration error of integrated gradients); ``decision_parameters`` is how
                   many model parameters that quantity reads (numbers to follow one decision).
=================  ======================================================================
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Classifier(Protocol):
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class AnomalyScorer(Protocol):
    primary_score: str

    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]: ...


@runtime_checkable
class LikelihoodModel(Protocol):
    likelihood_protocol: str

    def log_likelihood(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Imputer(Protocol):
    def impute(self, x: Tensor, observed: Tensor) -> Tensor: ...


@runtime_checkable
class Explainer(Protocol):
    explanation_method: str
    decision_parameters: int

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor: ...


CAPABILITIES: dict[str, type] = {
    "classify": Classifier,
    "sample": Sampler,
    "score_anomalies": AnomalyScorer,
    "log_likelihood": LikelihoodModel,
    "impute": Imputer,
    "explain": Explainer,
}


def capabilities_of(model: object) -> list[str]:
    """Names of the capabilities ``model`` implements, in protocol order."""
    return [name for name, protocol in CAPABILITIES.items() if isinstance(model, protocol)]
