"""Multinomial logistic regression: the simplest discriminative family, p(y|x) linear in the pixels.

p(y | x) = softmax(W x + c)_y over the 784 raw pixel intensities. Training minimises the
L2-regularised cross-entropy, the negative log-posterior of W under a Gaussian prior (MAP):

    L(W, c) = -1/N sum_n log softmax(W x_n + c)_{y_n} + l2/2 ||W||_F^2

The penalty is part of the objective rather than the optimiser's weight decay, so the model is the
same whichever optimiser fits it; it is what keeps a 7850-parameter model sane on 100 examples
(Ng & Jordan 2001 compare it with naive Bayes, its generative twin, across training-set sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from models.base import FamilyModule, OptimizerFactory, SchedulerFactory

NUM_CLASSES, NUM_PIXELS = 10, 28 * 28


class LogisticRegression(FamilyModule):
    """Capabilities: classify, score_anomalies (max-softmax and energy). Nothing generative."""

    family = "logistic_regression"
    kind = "discriminative"
    monitor = ("val/acc", "max")

    def __init__(
        self,
        l2: float = 1e-4,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.l2 = l2
        self.linear = nn.Linear(NUM_PIXELS, NUM_CLASSES)
        nn.init.zeros_(self.linear.weight)  # the objective is convex: start at the uniform p(y|x)
        nn.init.zeros_(self.linear.bias)
        self.val_acc = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(NUM_CLASSES, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        """Logits W x + c, in float32 (a linear model gains nothing from bf16)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.linear(x.flatten(1).float())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        cross_entropy = F.cross_entropy(self(x), y)
        loss = cross_entropy + 0.5 * self.l2 * self.linear.weight.square().sum()  # MAP objective above
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/cross_entropy", cross_entropy)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        accuracy(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True)  # nats per label
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    # --- capabilities -----------------------------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y|x). A discriminative model cannot marginalise: it sees the zero-filled image."""
        return F.log_softmax(self(x), dim=1)

    @torch.inference_mode()
    def anomaly_scores(self, x: Tensor) -> dict[str, Tensor]:
        logits = self(x)
        return {
            # Maximum softmax probability baseline (Hendrycks & Gimpel 2017), negated.
            "max_softmax": -logits.softmax(dim=1).amax(dim=1),
            # Free energy E(x) = -logsumexp_y f_y(x) (Liu et al. 2020); high energy = unfamiliar.
            "energy": -torch.logsumexp(logits, dim=1),
        }
