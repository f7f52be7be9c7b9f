"""The diffusion family as a sub-package: the ε-network's LightningModule (``model``), the
parameter-free noise schedule beside it (``schedule``) and the reverse-process loops written
against an ε-function (``sampling``), as diffusers keeps its schedulers apart from its networks."""

from models.diffusion.model import DiffusionModel

__all__ = ["DiffusionModel"]
