"""What every family shares: optimiser and schedule wiring, and checkpoints that describe themselves."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch

from dgbench import DGBenchError

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
CHECKPOINT_FORMAT = 1
LEARNS = {"discriminative": "p(y|x)", "generative": "p(x|y), p(x)"}  # what a kind models, unless a family says


def public_class_path(cls: type) -> str:
    """The shortest dotted path that imports ``cls``: a family in a sub-package is recorded by the name
    its package exports (``models.diffusion.DiffusionModel``, not ``models.diffusion.model...``), so
    checkpoints keep loading when the files inside the package move."""
    module = cls.__module__
    while "." in module:
        parent = module.rpartition(".")[0]
        if getattr(sys.modules.get(parent), cls.__qualname__, None) is not cls:
            break
        module = parent
    return f"{module}.{cls.__qualname__}"


class FamilyModule(L.LightningModule):
    """Base class of every model family.

    Subclasses set ``family`` (short name), ``kind`` (``discriminative``, ``generative`` or ``hybrid``) and
    ``monitor`` (the validation metric and mode that picks the best checkpoint), call
    ``self.save_hyperparameters(ignore=["optimizer", "scheduler"])`` in ``__init__``, and implement
    the capability methods of :mod:`dgbench.capabilities` that they truly have.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``): the optimiser gets
    ``params``, the scheduler ``optimizer`` and ``total_steps``. They stay out of the checkpoint's
    hyper-parameters so that checkpoints hold only tensors and plain containers and load with
    ``torch.load(weights_only=True)``.
    """

    family: ClassVar[str]
    kind: ClassVar[str]  # discriminative, generative, or hybrid (both objectives, e.g. semi-supervised)

    @property
    def learns(self) -> str:
        """What the family models, for the head-to-head's first row; hybrids say it themselves."""
        return LEARNS.get(self.kind, self.kind)

    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")
    # Why ``classify``'s class probabilities are not probabilities (e.g. a softmax at an arbitrary
    # temperature), or None where they are: the evaluation then reports NLL and ECE as N/A with it.
    uncalibrated_reason: ClassVar[str | None] = None
    # The largest budgets (images per suite) a default evaluation gives this family: what keeps one
    # evaluate.py run of it within ~15 min on a 2-core CPU (evaluate.py, budget_policy=first_look).
    first_look_budget: ClassVar[dict[str, int]] = {}
    # A family fitted in closed form (counting, growing trees) rather than by gradient steps sets this
    # and implements ``fit``: code that needs a fitted model (the tests) calls it instead of optimising.
    fits_without_gradients: ClassVar[bool] = False
    # Set by ``dgbench.checkpoint.load_model`` from the checkpoint: the held-out split it was trained
    # beside ({"dataset", "val_size", "seed"}), or None (no validation split, or an older checkpoint).
    validation_split: dict[str, Any] | None = None

    def __init__(self, optimizer: OptimizerFactory | None = None, scheduler: SchedulerFactory | None = None) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def fit(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit from scratch, in closed form, on images (N, 1, 28, 28) in [0, 1] and labels (N,): only a
        family with ``fits_without_gradients`` has this; the others learn by gradient steps (train.py)."""
        raise NotImplementedError(f"{type(self).__name__} learns by gradient steps: train it with train.py")

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise DGBenchError(f"{type(self).__name__} has no optimizer: set model.optimizer in the config")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        try:
            scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps)
        except ZeroDivisionError:  # torch's OneCycleLR when pct_start * total_steps == 1 (a 1-step warm-up)
            raise DGBenchError(
                f"the learning-rate schedule cannot span {total_steps} steps (its warm-up would be one step): "
                "train for more steps or change model.scheduler.pct_start"
            ) from None
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Enough to rebuild the module without the config that trained it: class + hyper-parameters.
        checkpoint["dgbench"] = {
            "format": CHECKPOINT_FORMAT,
            "family": self.family,
            "kind": self.kind,
            "class_path": public_class_path(type(self)),
            "validation": self._validation_record(),
        }

    def _validation_record(self) -> dict[str, Any] | None:
        """Which images this model never trained on and may be calibrated on: the data module's
        held-out split (``dgbench.data.held_out_validation`` rebuilds it), or None without one."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if not getattr(datamodule, "val_size", 0):
            return None
        return {"dataset": datamodule.name, "val_size": int(datamodule.val_size), "seed": int(datamodule.seed)}

    @property
    def trained_on_missing_pixels(self) -> bool:
        """Whether training showed the model images with pixels missing (random masks), so that a
        missing-feature comparison can set like against like; a family that does says so."""
        return False

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
