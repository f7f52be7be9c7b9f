"""A test-only family whose inference is slow on purpose, so an evaluation can be killed mid-suite.

Per-class independent Bernoulli pixels (naive Bayes without the counting), importable by a fresh
``evaluate.py`` process as ``tests.slow_family.SlowPixelBayes``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench.family import FamilyModule


class SlowPixelBayes(FamilyModule):
    family = "slow_pixel_bayes"
    kind = "generative"
    primary_score = "nll"

    def __init__(self, delay_s: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        generator = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.randn(10, 784, generator=generator))

    def _log_px_given_y(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        time.sleep(self.hparams.delay_s)
        x = x.flatten(1)[:, None].expand(-1, 10, -1)
        per_pixel = -F.binary_cross_entropy_with_logits(self.logits[None].expand_as(x), x, reduction="none")
        if observed is not None:
            per_pixel = per_pixel * observed.flatten(1)[:, None]
        return per_pixel.sum(2)

    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        return self._log_px_given_y(x, observed).log_softmax(1)

    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        return {"nll": -self._log_px_given_y(x).logsumexp(1)}


def save_checkpoint(path: Path, delay_s: float = 0.0, seed: int = 0, nudge: float = 0.0) -> Path:
    """A dgbench checkpoint of the slow family, written as train.py would (``nudge`` changes one weight)."""
    model = SlowPixelBayes(delay_s, seed)
    with torch.no_grad():
        model.logits[0, 0] += nudge
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
