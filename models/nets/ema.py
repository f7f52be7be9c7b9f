"""Exponential moving average of a network's weights (Polyak averaging), shared by the families.

Sampling from averaged weights is standard for GANs (Karras et al. 2018; Yazici et al. 2019) and
DDPMs (Ho et al. 2020 use decay 0.9999). The average is an ordinary submodule, so it is saved in
the checkpoint's ``state_dict`` and reloads weights-only like everything else.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    def __init__(self, network: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = decay
        self.averaged = copy.deepcopy(network).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """``averaged <- decay * averaged + (1 - decay) * network``; buffers (BatchNorm stats) are copied."""
        averaged = [p for p in self.averaged.parameters()]
        current = [p.detach() for p in network.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
        for mine, theirs in zip(self.averaged.buffers(), network.buffers()):
            mine.copy_(theirs)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.averaged(*args, **kwargs)

    def train(self, mode: bool = True) -> EMA:
        # The average is never trained; keep it in eval mode whatever the parent does.
        super().train(False)
        return self
