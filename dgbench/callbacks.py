"""Callbacks that serve every family through the capability protocol."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchvision.utils import save_image

from models.capabilities import Sampler


class SampleGrid(L.Callback):
    """Save a fixed-noise class-conditional sample grid (one row per class) every few epochs.

    The generator is re-seeded each time, so grids from different epochs show the same noise and
    are directly comparable. Families that cannot sample are skipped.
    """

    def __init__(self, dirpath: str, per_class: int = 8, every_n_epochs: int = 1, seed: int = 0) -> None:
        self.dirpath, self.per_class, self.every_n_epochs, self.seed = Path(dirpath), per_class, every_n_epochs, seed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, Sampler) or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs and not trainer.fit_loop.done:
            return
        labels = torch.arange(10, device=pl_module.device).repeat_interleave(self.per_class)
        was_training = pl_module.training
        pl_module.eval()
        images = pl_module.sample(len(labels), labels=labels, generator=torch.Generator().manual_seed(self.seed))
        pl_module.train(was_training)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(images.float().cpu(), self.dirpath / f"epoch_{trainer.current_epoch:03d}.png", nrow=self.per_class)
