"""The feature network behind FID/KID, precision/recall and class-conditional sample accuracy.

A small ResNet classifier trained once with a fixed recipe and shipped in the repo, so sample
quality numbers are comparable across runs and machines. Reproduce it with:

    python train.py experiment=feature_net
    python -m dgbench.checkpoint export runs/feature_net/resnet/<time>/checkpoints/best.ckpt dgbench/assets/feature_net.ckpt
"""

from __future__ import annotations

from pathlib import Path

import torch

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.family import FamilyModule

DEFAULT_FEATURE_NET = Path(__file__).parents[1] / "assets" / "feature_net.ckpt"


def load_feature_net(path: str | Path | None = None, device: str | torch.device = "cpu") -> FamilyModule:
    model = load_model(path or DEFAULT_FEATURE_NET, device)
    if not (hasattr(model, "features") and hasattr(model, "classify")):
        raise DGBenchError(f"feature network {path} has no features()/classify(): use a ResNet classifier checkpoint")
    return model
