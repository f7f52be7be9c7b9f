"""What every p(y|x) family shares: logits, cross-entropy, accuracy, and the two capabilities it has.

A discriminative family maps an image to class logits f(x) and models p(y|x) = softmax(f(x)) and
nothing else: no p(x), so it cannot sample, marginalise missing pixels or give a likelihood.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory


class LogitClassifier(FamilyModule):
    """Base of the discriminative families. Capabilities: classify, score_anomalies.

    Subclasses build their network in ``__init__`` and define ``forward(x) -> logits``; ``loss``
    is the cross-entropy -log p(y|x), which a subclass may extend (a penalty, label smoothing).
    """

    kind = "discriminative"
    monitor = ("val/acc", "max")

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 10,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
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
        return F.log_softmax(self(x).float(), dim=1)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        logits = self(x).float()
        return {
            # Maximum softmax probability baseline (Hendrycks & Gimpel 2017), negated.
            "max_softmax": -logits.softmax(dim=1).amax(dim=1),
            # Free energy E(x) = -logsumexp_y f_y(x) (Liu et al. 2020); high energy = unfamiliar.
            "energy": -torch.logsumexp(logits, dim=1),
        }
