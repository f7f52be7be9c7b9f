"""What every p(y|x) family shares: logits, cross-entropy, accuracy, and the two capabilities it has.

A discriminative family maps an image to class logits f(x) and models p(y|x) = softmax(f(x)) and
nothing else: no p(x), so it cannot sample, marginalise missing pixels or give a likelihood.

With ``mask_channel`` the network reads two channels, the zero-filled image and the mask, and
trains on random masks drawn exactly as the VAE's (:func:`dgbench.masks.random_training_mask`, same
``mask_prob`` and ``max_missing``): p(y | x_obs, mask) learnt from the same augmentation, so that a
missing-features comparison with the VAE measures the family rather than the training data. Still
no marginalisation: what it does with a missing pixel is whatever the masked training taught it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dgbench.attribution import autograd_copy, integrated_gradients, pick
from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory
from dgbench.masks import check_mask_parameters, random_training_mask


class LogitClassifier(FamilyModule):
    """Base of the discriminative families. Capabilities: classify, score_anomalies.

    Subclasses build their network in ``__init__`` for ``self.in_channels`` input channels and
    define ``logits(inputs) -> (N, 10)`` on what :meth:`network_input` makes of an image; ``loss`` is
    the cross-entropy -log p(y|x), which a subclass may extend (a penalty, label smoothing). Calling
    the module, ``model(x, observed=None)``, maps images (N, 1, 28, 28) to logits whatever the option.

    ``mask_channel=False`` (the default) is the plain classifier: the network input is the image
    itself and no mask is ever drawn. With True, ``observed`` (all-True when None) is stacked on the
    zero-filled image as a second channel, training draws masks with ``mask_prob`` and ``max_missing``
    (the VAE's defaults), and validation, test and anomaly scores use the all-observed mask.
    """

    kind = "discriminative"
    monitor = ("val/acc", "max")
    # Declared before any OOD test set was scored: a classifier's confidence in its own decision,
    # the maximum softmax probability (Hendrycks & Gimpel 2017), the baseline every OOD paper reports;
    # the free energy is reported beside it.
    primary_score = "max_softmax"

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 10,
        mask_channel: bool = False,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
    ) -> None:
        super().__init__(optimizer, scheduler)
        check_mask_parameters(mask_prob, max_missing)
        self.mask_channel, self.mask_prob, self.max_missing = bool(mask_channel), mask_prob, max_missing
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def trained_on_missing_pixels(self) -> bool:
        return self.mask_channel  # trained on the VAE's random masks, the mask as a second channel

    @property
    def in_channels(self) -> int:
        """Channels of the network input: the image, plus the mask with ``mask_channel``."""
        return 2 if self.mask_channel else 1

    def network_input(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """What the network reads: ``x`` itself (``observed`` ignored), or with ``mask_channel`` the
        zero-filled image and the mask as floats, (N, 2, 28, 28); no mask means every pixel observed."""
        if not self.mask_channel:
            return x
        if observed is None:
            return torch.cat([x, torch.ones_like(x)], dim=1)
        return torch.cat([x * observed, observed.to(x.dtype)], dim=1)

    def logits(self, inputs: Tensor) -> Tensor:
        """Class logits (N, 10) from the network input (N, ``in_channels``, 28, 28)."""
        raise NotImplementedError

    def forward(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Class logits f(x) of images (N, 1, 28, 28); ``observed`` reaches the network only with ``mask_channel``."""
        return self.logits(self.network_input(x, observed))

    def training_scores(self, inputs: Tensor) -> Tensor:
        """What ``loss`` is computed on: the logits, unless a subclass trains on something else
        (the SVM: its raw margins, before the temperature)."""
        return self.logits(inputs)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        observed = random_training_mask(x, self.mask_prob, self.max_missing) if self.mask_channel else None
        loss = self.loss(self.training_scores(self.network_input(x, observed)), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        accuracy(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True)  # nats per label
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    # --- capabilities -----------------------------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y|x). A discriminative model cannot marginalise: it sees the zero-filled image, and
        with ``mask_channel`` the mask too (all-observed when ``observed`` is None)."""
        return F.log_softmax(self(x, observed).float(), dim=1)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        logits = self(x).float()  # every pixel observed
        return {
            # Maximum softmax probability baseline (Hendrycks & Gimpel 2017), negated.
            "max_softmax": -logits.softmax(dim=1).amax(dim=1),
            # Free energy E(x) = -logsumexp_y f_y(x) (Liu et al. 2020); high energy = unfamiliar.
            "energy": -torch.logsumexp(logits, dim=1),
        }

    explanation_method = (
        "integrated gradients (Sundararajan et al. 2017), 32 midpoint steps, of log p(ŷ|x) along the straight path "
        "from the all-missing input (zero image; with mask_channel also a zero mask) to the network input, summed "
        "over its channels: sums to log p(ŷ|x) - log p(ŷ|nothing observed) up to the quadrature error"
    )

    @property
    def decision_parameters(self) -> int:
        """Every parameter: each hidden unit feeds both logits, so one decision reads the whole network."""
        return self.num_parameters

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Integrated gradients of log p(ŷ|x), ŷ = the argmax of ``classify(x, observed)`` (see
        ``explanation_method``) for the zero-filled image (what a discriminative family receives): unobserved
        pixels are 0 in every input channel, so they get 0."""
        x = x if observed is None else x * observed
        predicted = autograd_copy(self.classify(x, observed).argmax(1))

        def log_p(inputs: Tensor) -> Tensor:
            return pick(F.log_softmax(self.logits(inputs).float(), dim=1), predicted)

        return integrated_gradients(log_p, self.network_input(x, observed)).sum(1, keepdim=True)


class PretrainedClassifier(LogitClassifier):
    """Base of the hybrids pretrained without labels, then steered with them, in one run counted in steps.

    Steps 0 .. ``pretrain_steps`` - 1 minimise ``pretrain_loss`` on every image of the batch, labels
    ignored; the remaining steps minimise ``steer_loss`` on its labelled images only (label -1 =
    unlabelled, dgbench/data.py's ``label_size``). The stage is read off ``global_step``, so a resumed
    run continues in the right stage. Subclasses set ``pretrain_steps`` and define both losses.
    """

    kind = "hybrid"
    pretrain_steps: int
    pretrain_metric = "train/pretrain_loss"  # what the first stage's loss is logged as

    def pretrain_loss(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def steer_loss(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        if self.global_step < self.pretrain_steps:  # stage 1: every image, no label
            loss = self.pretrain_loss(x)
            self.log(self.pretrain_metric, loss, prog_bar=True)
            return loss
        known = y >= 0  # stage 2: the labelled images only
        if not known.any():
            return None  # Lightning skips the step (use data.labelled_batch_size to put labels in every batch)
        loss = self.steer_loss(x[known], y[known])
        self.log("train/loss", loss, prog_bar=True)
        return loss
