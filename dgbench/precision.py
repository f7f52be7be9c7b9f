"""bf16 autocast for training steps only: the CPU speed-up, without bf16 likelihoods.

Lightning's ``precision="bf16-mixed"`` autocasts validation and test steps too, so the test pass
would compute log-likelihoods and Bayes-rule accuracies in bf16 (8 bits of mantissa: a sum of 784
per-pixel log-probabilities loses whole nats). This plugin autocasts the training step only and
leaves every validation, test and predict step in fp32.

Used by the ``trainer=cpu_bf16`` config (the CPU presets of the generative families); the speed-up
is measured per family in results/train_speed.md (``benchmarks/probes/train_speed.py``). On a processor
without native bf16 arithmetic (no AVX512-BF16 or AMX: oneDNN would emulate it, slower than fp32)
it trains in fp32 and says so once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from dgbench.runtime import fast_bf16

log = logging.getLogger(__name__)


class TrainingAutocast(MixedPrecision):
    """``torch.autocast(device, bfloat16)`` around each training step; fp32 everywhere else."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(precision="bf16-mixed", device=device)
        self.enabled = fast_bf16(torch.device(device))
        if not self.enabled:
            log.warning("trainer=cpu_bf16: this %s has no native bf16 arithmetic; training in fp32", device)

    @property
    def label(self) -> str:
        """What a run record says (train.py's metrics.json ``precision``)."""
        return "bf16-mixed in training steps, fp32 evaluation" if self.enabled else "32-true (no native bf16)"

    def autocast_context_manager(self) -> torch.autocast:
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.enabled, cache_enabled=False)

    @contextlib.contextmanager
    def val_step_context(self) -> Generator[None, None, None]:
        yield  # fp32: validation metrics select checkpoints

    @contextlib.contextmanager
    def test_step_context(self) -> Generator[None, None, None]:
        yield  # fp32: test likelihoods and accuracies

    @contextlib.contextmanager
    def predict_step_context(self) -> Generator[None, None, None]:
        yield
