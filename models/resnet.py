"""ResNet classifier: the discriminative family. It learns p(y|x) and nothing else.

With ``mask_channel`` (models/discriminative.py) the stem reads two channels, the zero-filled image
and the mask.
"""

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
        mask_channel: bool = False,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, mask_channel=mask_channel, mask_prob=mask_prob, max_missing=max_missing)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        # channels_last is what oneDNN (CPU) and cuDNN (bf16 GPU) convolutions are fastest in;
        # a one-channel input already is channels_last (the same tensor); image + mask is converted once.
        net = ResNet(10, width, depth, num_stages, stem_stride, dropout, in_channels=self.in_channels)
        self.net = net.to(memory_format=torch.channels_last)
        self.label_smoothing = label_smoothing

    def logits(self, inputs: Tensor) -> Tensor:
        return self.net(inputs.contiguous(memory_format=torch.channels_last))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def features(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Penultimate-layer embedding of images (N, 1, 28, 28); the evaluation's feature network uses
        it for FID/KID."""
        return self.net.features(self.network_input(x, observed).contiguous(memory_format=torch.channels_last))
