"""Multinomial logistic regression: the simplest discriminative family, p(y|x) linear in the pixels.

p(y | x) = softmax(W x + c)_y over the 784 raw pixel intensities. Training minimises the
L2-regularised cross-entropy, the negative log-posterior of W under a Gaussian prior (MAP):

    L(W, c) = -1/N sum_n log softmax(W x_n + c)_{y_n} + l2/2 ||W||_F^2

The penalty is part of the objective rather than the optimiser's weight decay, so the model is the
same whichever optimiser fits it; it is what keeps a 7850-parameter model sane on 100 examples
(Ng & Jordan 2001 compare it with naive Bayes, its generative twin, across training-set sizes).

With ``mask_channel`` (models/discriminative.py) x is the zero-filled image and the mask, 2 x 784
inputs, so W has a weight per pixel for "observed" as well as for its value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench.attribution import decision
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import LogitClassifier

NUM_CLASSES, NUM_PIXELS = 10, 28 * 28


class LogisticRegression(LogitClassifier):
    """Capabilities: classify, score_anomalies (max-softmax and energy). Nothing generative."""

    family = "logistic_regression"

    def __init__(
        self,
        l2: float = 1e-4,
        mask_channel: bool = False,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, mask_channel=mask_channel, mask_prob=mask_prob, max_missing=max_missing)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.l2 = l2
        self.linear = nn.Linear(self.in_channels * NUM_PIXELS, NUM_CLASSES)
        nn.init.zeros_(self.linear.weight)  # the objective is convex: start at the uniform p(y|x)
        nn.init.zeros_(self.linear.bias)

    def logits(self, inputs: Tensor) -> Tensor:
        """Logits W x + c, in float32 (a linear model gains nothing from bf16)."""
        with torch.autocast(inputs.device.type, enabled=False):
            return self.linear(inputs.flatten(1).float())

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y) + 0.5 * self.l2 * self.linear.weight.square().sum()  # MAP objective above

    explanation_method = (
        "exact: the per-pixel terms a_i = sum_c (w_ŷ,c,i - w_y',c,i) u_c,i of the logit difference to the runner-up "
        "y', over the input channels c (u = the image; with mask_channel also the mask); sum_i a_i = "
        "f_ŷ(x) - f_y'(x) - (c_ŷ - c_y') = log p(ŷ|x)/p(y'|x) less the bias difference"
    )

    @property
    def decision_parameters(self) -> int:
        """The two weight rows and two biases the logit difference f_ŷ - f_y' reads."""
        return 2 * (self.linear.in_features + 1)

    @torch.inference_mode()
    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Exact per-pixel terms of the logit difference (``explanation_method``) for the zero-filled image
        (what a discriminative family receives), so 0 where unobserved."""
        x = x if observed is None else x * observed
        with torch.autocast(x.device.type, enabled=False):
            inputs = self.network_input(x, observed).flatten(1).float()
            predicted, runner_up = decision(self.classify(x, observed))
            weight = self.linear.weight
            terms = (weight[predicted] - weight[runner_up]) * inputs
            return terms.view(len(x), self.in_channels, -1).sum(1).view(x.shape)
