"""ResNet classifier: the discriminative family. It learns p(y|x) and nothing else."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import LogitClassifier
from models.nets.resnet import ResNet


class ResNetClassifier(LogitClassifier):
    """Cross-entropy ResNet. Capabilities: classify, score_anomalies (max-softmax and energy)."""

    family = "resnet"

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

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer embedding; the evaluation's feature network uses it for FID/KID."""
        return self.net.features(x)
