"""Kernel SVM: the Crammer-Singer multi-class hinge loss on random Fourier features of an RBF kernel.

The model is linear in a fixed feature map z(x) that approximates the Gaussian (RBF) kernel
k(x, x') = exp(-gamma ||x - x'||^2) (Rahimi & Recht 2007): by Bochner's theorem k is the expectation
of cos(w.(x - x')) over w ~ N(0, 2 gamma I), so with m frequencies drawn once (a seeded buffer)

    z(x) = m^(-1/2) [cos(W x), sin(W x)],     z(x).z(x') = 1/m sum_j cos(w_j.(x - x')) ~ k(x, x').

The class margins f(x) = A z(x) + c are fitted by the multi-class hinge loss of Crammer & Singer
(2001) with an L2 penalty in the objective (the SVM's 1/(2C) ||A||^2, here l2/2 ||A||^2):

    L(A, c) = 1/N sum_n max(0, 1 + max_{j != y_n} f_j(x_n) - f_{y_n}(x_n)) + l2/2 ||A||_F^2

which trains on all 55 000 training images by minibatch gradients instead of the exact kernel
machine's 55 000^2 Gram matrix. Margins are not probabilities: ``classify`` returns softmax(f / T)
with one temperature T fitted on the validation split after every validation pass (the checkpoint
keeps its own T as a buffer), the post-hoc calibration of Platt (1999) in the form of Guo et al. (2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.calibration import fit_temperature
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import LogitClassifier

NUM_CLASSES, NUM_PIXELS = 10, 28 * 28


def crammer_singer_loss(margins: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch of max(0, 1 + max_{j != y} f_j - f_y) (Crammer & Singer 2001, eq. 4)."""
    correct = margins.gather(1, y[:, None]).squeeze(1)
    rivals = margins.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return F.relu(1 + rivals - correct).mean()


class KernelSVM(LogitClassifier):
    """Capabilities: classify (temperature-scaled margins), score_anomalies (max margin, max-softmax, energy)."""

    family = "svm"
    # Declared before any OOD test set was scored: the SVM's own confidence, its largest class margin
    # max_j f_j(x), negated. With an RBF kernel the margin is a sum of kernel bumps around training
    # images, so it falls towards the biases off the data, where a linear model's margin would grow
    # with ||x||; the temperature softmax (max_softmax, energy) is a calibration of the same margins
    # fitted on validation digits and reported beside it. It is not a density: f_j is a signed sum of
    # kernels (other classes' support vectors enter negatively), unnormalised, fitted to separate
    # classes; and the random-feature estimate of each kernel carries O(m^-1/2) noise where the exact
    # kernel would vanish.
    primary_score = "max_margin"

    def __init__(
        self,
        num_frequencies: int = 4096,
        gamma: float = 0.02,
        l2: float = 1e-5,
        feature_seed: int = 0,
        mask_channel: bool = False,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, mask_channel=mask_channel, mask_prob=mask_prob, max_missing=max_missing)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if num_frequencies < 1 or gamma <= 0 or l2 < 0:
            raise DGBenchError(
                f"svm needs num_frequencies >= 1, gamma > 0 and l2 >= 0 (got {num_frequencies}, {gamma}, {l2})"
            )
        self.l2 = l2
        in_dim = self.in_channels * NUM_PIXELS
        generator = torch.Generator().manual_seed(feature_seed)
        # w ~ N(0, 2 gamma I): the spectral density of exp(-gamma ||d||^2). Fixed, so a buffer.
        self.register_buffer(
            "frequencies", torch.randn(in_dim, num_frequencies, generator=generator) * (2 * gamma) ** 0.5
        )
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("temperature_fitted", torch.zeros((), dtype=torch.bool))
        self.linear = nn.Linear(2 * num_frequencies, NUM_CLASSES)
        nn.init.zeros_(self.linear.weight)  # the objective is convex: start at f = 0
        nn.init.zeros_(self.linear.bias)
        self._val_margins: list[Tensor] = []
        self._val_labels: list[Tensor] = []

    @property
    def uncalibrated_reason(self) -> str | None:  # type: ignore[override]
        if bool(self.temperature_fitted):
            return None
        return "SVM margins at temperature 1: no validation pass fitted the temperature (data.val_size=0?)"

    # --- the model -------------------------------------------------------------------------
    def features(self, inputs: Tensor) -> Tensor:
        """Random Fourier features z(x) = m^(-1/2) [cos(Wx), sin(Wx)] (N, 2m), in float32."""
        with torch.autocast(inputs.device.type, enabled=False):
            projection = inputs.flatten(1).float() @ self.frequencies
            return torch.cat([projection.cos(), projection.sin()], dim=1) / self.frequencies.shape[1] ** 0.5

    def margins(self, inputs: Tensor) -> Tensor:
        """Class margins f(x) = A z(x) + c (N, 10) of the network input."""
        with torch.autocast(inputs.device.type, enabled=False):
            return self.linear(self.features(inputs))

    def logits(self, inputs: Tensor) -> Tensor:
        """The calibrated logits f(x) / T: what ``classify`` (log_softmax) and the base class read."""
        return self.margins(inputs) / self.temperature

    # --- training (the base class's step, on the raw margins, never f / T) ------------------
    def training_scores(self, inputs: Tensor) -> Tensor:
        return self.margins(inputs)

    def loss(self, margins: Tensor, y: Tensor) -> Tensor:
        return crammer_singer_loss(margins, y) + 0.5 * self.l2 * self.linear.weight.square().sum()

    def on_validation_epoch_start(self) -> None:
        self._val_margins, self._val_labels = [], []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        margins = self.margins(self.network_input(x))
        self._val_margins.append(margins.detach())
        self._val_labels.append(y)
        self.val_acc(margins, y)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        """Fit T on this pass's validation margins (every process sees all of them), before any checkpoint."""
        if not self._val_margins or self.trainer.sanity_checking:
            return
        margins = self.all_gather(torch.cat(self._val_margins)).reshape(-1, NUM_CLASSES)
        labels = self.all_gather(torch.cat(self._val_labels)).reshape(-1)
        self.calibrate(margins, labels)
        nll = F.cross_entropy(margins.float() / self.temperature, labels)
        self.log("val/loss", nll)  # nats per label at the fitted T (fitted on these labels)
        self.log("val/temperature", self.temperature)
        self._val_margins, self._val_labels = [], []

    @torch.no_grad()
    def calibrate(self, margins: Tensor, labels: Tensor) -> None:
        """Temperature scaling (Guo et al. 2017): T = argmin validation NLL of softmax(f / T)."""
        self.temperature.fill_(1 / fit_temperature(margins, labels))  # dgbench.calibration fits beta = 1/T
        self.temperature_fitted.fill_(True)

    # --- capabilities (classify is the base class's log_softmax of f / T) --------------------
    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        margins = self.margins(self.network_input(x)).float()  # every pixel observed
        logits = margins / self.temperature
        return {
            "max_margin": -margins.amax(dim=1),
            "max_softmax": -logits.softmax(dim=1).amax(dim=1),  # at the fitted temperature
            "energy": -torch.logsumexp(logits, dim=1),
        }
