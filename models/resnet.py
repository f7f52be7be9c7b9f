"""ResNet classifier: the discriminative family. It learns p(y|x) and nothing else."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from models.base import FamilyModule, OptimizerFactory, SchedulerFactory
from models.nets import ResNet


class ResNetClassifier(FamilyModule):
    """Cross-entropy ResNet. Capabilities: classify, score_anomalies (max-softmax and energy)."""

    family = "resnet"
    kind = "discriminative"
    monitor = ("val/acc", "max")

    def __init__(
        self,
        width: int = 32,
        depth: int = 2,
        num_stages: int = 3,
        stem_stride: int = 1,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        # channels_last is what oneDNN (CPU) and cuDNN (bf16 GPU) convolutions are fastest in;
        # with one input channel the input tensor needs no conversion.
        self.net = ResNet(10, width, depth, num_stages, stem_stride, dropout).to(memory_format=torch.channels_last)
        self.label_smoothing = label_smoothing
        self.val_acc, self.test_acc = MulticlassAccuracy(10, average="micro"), MulticlassAccuracy(10, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        accuracy(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer embedding; the evaluation's feature network uses it for FID/KID."""
        return self.net.features(x)

    # --- capabilities -----------------------------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y|x). A discriminative model cannot marginalise: it sees the zero-filled image."""
        return F.log_softmax(self(x).float(), dim=1)

    @torch.inference_mode()
    def anomaly_scores(self, x: Tensor) -> dict[str, Tensor]:
        logits = self(x).float()
        return {
            # Maximum softmax probability baseline (Hendrycks & Gimpel 2017), negated.
            "max_softmax": -logits.softmax(dim=1).amax(dim=1),
            # Free energy E(x) = -logsumexp_y f_y(x) (Liu et al. 2020); high energy = unfamiliar.
            "energy": -torch.logsumexp(logits, dim=1),
        }
