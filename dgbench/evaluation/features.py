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
from dgbench.checkpoint import load_model, resolve_checkpoint
from dgbench.family import FamilyModule

DEFAULT_FEATURE_NET = Path(__file__).parents[1] / "assets" / "feature_net.ckpt"


def feature_net_path(path: str | Path | None = None) -> Path:
    """The checkpoint file of the feature network: ``path`` (a file or run directory), else the shipped one."""
    return resolve_checkpoint(path or DEFAULT_FEATURE_NET)


def load_feature_net(path: str | Path | None = None, device: str | torch.device = "cpu") -> FamilyModule:
    model = load_model(feature_net_path(path), device)
    if not (hasattr(model, "features") and hasattr(model, "classify")):
        raise DGBenchError(f"feature network {path} has no features()/classify(): use a ResNet classifier checkpoint")
    return model
