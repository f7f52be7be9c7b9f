"""A classifier fine-tuned from a VAE trained without labels: generative pretraining, then p(y|x).

Stage 1 (steps 0 .. ``pretrain_steps`` - 1) trains an unconditional VAE (Kingma & Welling 2014) on
every training image, labels ignored: z ~ N(0, I), b_i ~ Bernoulli(sigmoid(decoder(z))_i), with
the negative ELBO

    -ELBO(x) = -E_q(z|x)[log p(x | z)] + KL(q(z | x) || N(0, I))        (their eq. 10)

on the gray image as a soft target (the average over binarizations b ~ Bernoulli(x), as in
models/vae.py). Stage 2 (the remaining steps) discards the decoder and trains p(y | x) =
softmax(head(mu(x))) on the encoder's mean mu(x), fine-tuning the encoder too, with the
cross-entropy of the labelled images only (label -1 = unlabelled, dgbench/data.py's ``label_size``).
The recipe is the semi-supervised baseline of Kingma et al. 2014 (their M1 + a classifier), with
fine-tuning as in Dai & Le 2015 / Erhan et al. 2010 ("why does unsupervised pre-training help").

Both stages run in one Lightning run with one optimiser; the stage is read off ``global_step``, so
a resumed run continues in the right stage. Once trained it is a discriminative classifier with
models/discriminative.py's capabilities: classify, max-softmax anomaly scores, explanations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import PretrainedClassifier
from models.nets.conv import ConvDecoder, ConvEncoder


class FinetunedVAEClassifier(PretrainedClassifier):
    """Capabilities: those of LogitClassifier (classify, score_anomalies with max-softmax declared, explain)."""

    family = "vae_finetuned"
    pretrain_metric = "train/neg_elbo"
    learns = "p(y|x), from an encoder pretrained on p(x) without labels"

    def __init__(
        self,
        latent_dim: int = 16,
        width: int = 32,
        head_hidden: int = 128,
        pretrain_steps: int = 1000,
        num_classes: int = 10,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if pretrain_steps < 0:
            raise DGBenchError(f"model.pretrain_steps={pretrain_steps} must be >= 0 (0 = no pretraining)")
        self.latent_dim, self.pretrain_steps = latent_dim, pretrain_steps
        self.encoder = ConvEncoder(1, 2 * latent_dim, width)  # q(z | x): mean and log-variance
        self.decoder = ConvDecoder(latent_dim, 1, width)  # p(b | z), used in stage 1 only
        self.head = nn.Sequential(nn.Linear(latent_dim, head_hidden), nn.SiLU(), nn.Linear(head_hidden, num_classes))

    @property
    def decision_parameters(self) -> int:
        """The encoder's and the head's parameters: a decision never reads the stage-1 decoder."""
        return sum(p.numel() for module in (self.encoder, self.head) for p in module.parameters())

    def logits(self, inputs: Tensor) -> Tensor:
        return self.head(self.encoder(inputs)[:, : self.latent_dim].float())  # the posterior mean mu(x)

    def negative_elbo(self, x: Tensor) -> Tensor:
        """-ELBO per image (N,), nats, averaged over the binarizations of x."""
        mean, log_var = self.encoder(x).float().chunk(2, dim=1)
        log_var = log_var.clamp(-12.0, 8.0)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)  # reparameterisation trick
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(z).float(), x.float(), reduction="none")
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)
        return reconstruction.flatten(1).sum(1) + kl

    def pretrain_loss(self, x: Tensor) -> Tensor:
        return self.negative_elbo(x).mean()

    def steer_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self(x), y)
