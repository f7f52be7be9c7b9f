"""Class-conditional VAE: the latent-variable generative family.

Model (Kingma & Welling 2014, conditioned on the label as in Sohn et al. 2015): y ~ Uniform(10),
z ~ N(0, I), and each binary pixel b_i ~ Bernoulli(sigmoid(decoder(z, y))_i). The data are
dynamically binarized images, b ~ Bernoulli(x) for a gray image x, so log p(b) is a proper
log-likelihood in nats, the protocol of Burda et al. 2016. The encoder q(z | x, y) reads the gray
image; the ELBO is linear in b, so its average over all binarizations of x is the ELBO with x as
a soft target: training on freshly binarized data every step, with the sampling integrated out.

One estimator serves every capability, the importance-weighted bound (Burda et al. 2016, eq. 8)
for every class at once, on the observed pixels only:

    log p(b_obs | y) >= E[ log 1/k sum_j p(b_obs | z_j, y) p(z_j) / q(z_j | x_obs, y) ],  z_j ~ q

Bernoulli pixels are independent given (z, y), so marginalising a missing pixel drops its factor.
k = 1 is the ELBO. The encoder sees the masked image plus the mask, and a per-class head proposes
one Gaussian per class, so one encoder pass serves all ten classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dgbench import DGBenchError
from dgbench.attribution import autograd_copy, integrated_gradients, pick
from dgbench.binarize import fixed_binarization
from dgbench.complexity import context_code_length
from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory
from dgbench.masks import random_training_mask
from models.nets.conv import ConvDecoder, ConvEncoder

LOG_2PI = math.log(2 * math.pi)
DECODE_ROWS = 1024  # images decoded per chunk at inference: bounds memory whatever k and the batch are, and
# keeps a chunk in cache (per image 1.5x faster on a CPU than 8192: results/inference_rows.md)


class ConditionalVAE(FamilyModule):
    """Capabilities: classify (Bayes rule), sample, likelihood, score_anomalies, impute."""

    family = "vae"
    kind = "generative"
    monitor = ("val/loss", "min")
    # Declared before any OOD test set was scored: the quantity the family models, -log p(x). The
    # complexity-corrected score (a known repair for a known failure) is reported beside it, never instead.
    primary_score = "nll"

    def __init__(
        self,
        latent_dim: int = 16,
        width: int = 32,
        num_classes: int = 10,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
        classify_k: int = 8,
        likelihood_k: int = 100,
        eval_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if min(classify_k, likelihood_k) < 1:
            raise DGBenchError(
                f"classify_k={classify_k} and likelihood_k={likelihood_k} must be >= 1 (k=1 is the ELBO)"
            )
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.mask_prob, self.max_missing = mask_prob, max_missing
        self.classify_k, self.likelihood_k, self.eval_seed = classify_k, likelihood_k, eval_seed
        # Two input channels: the masked image and the mask, so that "missing" differs from "black".
        # channels_last: the layout oneDNN (CPU) and cuDNN (bf16 GPU) convolutions are fastest in.
        self.encoder = ConvEncoder(2, num_classes * 2 * latent_dim, width).to(memory_format=torch.channels_last)
        self.decoder = ConvDecoder(latent_dim + num_classes, 1, width).to(memory_format=torch.channels_last)
        self.log_prior = -math.log(num_classes)  # log p(y), uniform
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def likelihood_protocol(self) -> str:
        return (
            f"binarized images (dynamic binarization in training, one fixed seeded binarization at test), "
            f"Bernoulli decoder, IWAE bound k={self.likelihood_k} on each log p(x|y), "
            f"log p(x) = logsumexp_y log p(x|y) + log 1/{self.num_classes}, nats"
        )

    # --- the model -------------------------------------------------------------------------
    def binarize(self, x: Tensor) -> Tensor:
        """The evaluation's fixed binarization (dgbench/binarize.py): batch-independent scores."""
        return fixed_binarization(x, self.eval_seed)

    def posterior(self, x: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x_obs, y) for every y: means and log-variances, each (N, classes, latent_dim)."""
        h = self.encoder(torch.cat([x * observed, observed.to(x.dtype)], dim=1)).float()
        mean, log_var = h.view(len(h), self.num_classes, 2, self.latent_dim).unbind(2)
        return mean, log_var.clamp(-12.0, 8.0)  # keeps exp() finite in bf16 early in training

    def decode(self, z: Tensor, labels: Tensor) -> Tensor:
        """Bernoulli logits (N, 1, 28, 28) of p(b | z, y), in float32 for the likelihood."""
        return self.decoder(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)).float()

    def random_mask(self, x: Tensor) -> Tensor:
        """Training masks (True = observed), :func:`dgbench.masks.random_training_mask`: with probability
        ``mask_prob`` an image loses a random fraction (up to ``max_missing``) of its pixels, scattered
        or as one rectangle, so that q(z | x_obs) learns to infer from whatever is left."""
        return random_training_mask(x, self.mask_prob, self.max_missing)

    def negative_elbo(self, x: Tensor, labels: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        """-E_b[ELBO(b)] over the binarizations b ~ Bernoulli(x), per image, and its KL term.

        ELBO = E_q[log p(b | z, y)] - KL(q(z | x_obs, y) || N(0, I))   (Kingma & Welling 2014, eq. 10)
        is linear in b, so the average over b is the ELBO with x as the Bernoulli target. The
        encoder may see only x_obs: the bound holds for any q, and this trains q(z | x_obs) to
        propose latents that explain the whole image.
        """
        mean, log_var = self.posterior(x, observed)
        pick = torch.arange(len(labels), device=labels.device)
        mean, log_var = mean[pick, labels], log_var[pick, labels]
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)  # reparameterisation trick
        reconstruction = F.binary_cross_entropy_with_logits(self.decode(z, labels), x.float(), reduction="none")
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)  # closed form for Gaussians
        return reconstruction.flatten(1).sum(1) + kl, kl

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        # No KL warm-up (Sønderby et al. 2016): while the KL weight is near 0 the latent is free to
        # encode the class before the decoder learns to read the label; in our trials the decoder
        # then stayed partly label-blind (samples ignored y) and Bayes-rule accuracy suffered.
        loss, kl = self.negative_elbo(x, y, self.random_mask(x))
        self.log("train/loss", loss.mean(), prog_bar=True)
        self.log("train/kl", kl.mean())
        return loss.mean()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss, kl = self.negative_elbo(x, y, torch.ones_like(x, dtype=torch.bool))
        self.log("val/loss", loss.mean(), on_epoch=True, prog_bar=True)  # -ELBO(b | y) in nats, averaged over b
        self.log("val/kl", kl.mean(), on_epoch=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        soft, binary = self.bounds(x, None, self.classify_k, softs=(True, False))  # one decoder pass for both
        self.test_acc(soft + self.log_prior, y)  # classify's Bayes rule, k = classify_k
        self.log("test/acc", self.test_acc, on_epoch=True)
        log_joint = binary + self.log_prior
        self.log("test/nll", -torch.logsumexp(log_joint, 1).mean(), on_epoch=True)  # nats, IWAE k = classify_k

    # --- the importance-weighted estimator ----------------------------------------------------
    def importance_weights(
        self, x: Tensor, observed: Tensor | None, k: int, soft: bool = False
    ) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """Yield (image slice, log w (n, classes, kc), logits (n, classes, kc, 1, 28, 28)) chunk by chunk.

        log w_j = log p(b_obs | z_j, y) + log p(z_j) - log q(z_j | x_obs, y) for every class y, where
        b = binarize(x), or b = x with ``soft`` (then log w_j is averaged over all binarizations).
        The noise eps_j comes from a seeded CPU generator and is shared by all images and classes
        (common random numbers): results are reproducible and do not depend on batching.
        """
        for part, log_ws, logits in self._weights(x, observed, k, (soft,)):
            yield part, log_ws[0], logits

    def _weights(
        self, x: Tensor, observed: Tensor | None, k: int, softs: tuple[bool, ...]
    ) -> Iterator[tuple[slice, list[Tensor], Tensor]]:
        """``importance_weights`` for several targets (one per entry of ``softs``) from the same decoder passes."""
        observed = torch.ones_like(x, dtype=torch.bool) if observed is None else observed.bool()
        targets = [x.float() if soft else self.binarize(x).float() for soft in softs]
        eps_all = torch.randn(k, self.latent_dim, generator=torch.Generator().manual_seed(self.eval_seed)).to(x.device)
        classes, labels = self.num_classes, torch.arange(self.num_classes, device=x.device).view(1, -1, 1)
        for start in range(0, len(x), max(1, DECODE_ROWS // classes)):
            part = slice(start, start + max(1, DECODE_ROWS // classes))
            m = observed[part, None, None]  # broadcast over (class, sample)
            mean, log_var = self.posterior(x[part], observed[part])
            mean, std = mean.unsqueeze(2), (0.5 * log_var).exp().unsqueeze(2)
            n, kc = len(mean), max(1, DECODE_ROWS // (len(mean) * classes))
            for j in range(0, k, kc):
                eps = eps_all[j : j + kc]  # (kc, D)
                z = mean + std * eps  # (n, classes, kc, D)
                logits = self.decode(z.flatten(0, 2), labels.expand(n, classes, len(eps)).flatten())
                logits = logits.view(n, classes, len(eps), 1, 28, 28)
                log_pz = -0.5 * (z.square() + LOG_2PI).sum(3)
                log_qz = -0.5 * (eps.square() + LOG_2PI).sum(1) - std.log().sum(3)
                log_ws = []
                for target in targets:
                    b = target[part, None, None].expand_as(logits)
                    log_px = -F.binary_cross_entropy_with_logits(logits, b, reduction="none")
                    log_ws.append((log_px * m).flatten(3).sum(3) + log_pz - log_qz)  # observed pixels only
                yield part, log_ws, logits

    def log_px_given_y(self, x: Tensor, observed: Tensor | None, k: int, soft: bool = False) -> Tensor:
        """IWAE bound on log p(b_obs | y) for every class: (N, classes), nats."""
        return self.bounds(x, observed, k, (soft,))[0]

    def bounds(self, x: Tensor, observed: Tensor | None, k: int, softs: tuple[bool, ...]) -> list[Tensor]:
        """``log_px_given_y`` for each ``soft`` in ``softs``, from one set of decoder passes."""
        with torch.autocast(x.device.type, enabled=False):  # likelihoods in float32 even inside bf16 autocast
            parts: dict[int, list[Tensor]] = {}
            for part, log_ws, _ in self._weights(x, observed, k, softs):
                parts.setdefault(part.start, []).append(torch.stack(log_ws))
            log_w = torch.cat([torch.cat(chunks, dim=3) for chunks in parts.values()], dim=1)  # (softs, N, classes, k)
        return list(torch.logsumexp(log_w, dim=3) - math.log(k))  # Burda et al. 2016, eq. 8

    # --- capabilities -------------------------------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y | x_obs) by Bayes' rule from log p(x_obs | y) + log p(y).

        Each class score is the bound averaged over all binarizations b ~ Bernoulli(x) (``soft``:
        log w_j is linear in b, so b is replaced by x) rather than taken on one seeded binarization,
        which would discard the gray levels and add noise to every decision (+1.5 points of
        accuracy in our trials).
        """
        return torch.log_softmax(self.log_px_given_y(x, observed, self.classify_k, soft=True) + self.log_prior, 1)

    @torch.inference_mode()
    def log_likelihood(self, x: Tensor) -> Tensor:
        """Lower bound on log p(x) in nats, per ``likelihood_protocol``."""
        return torch.logsumexp(self.log_px_given_y(x, None, self.likelihood_k) + self.log_prior, dim=1)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        nll = -torch.logsumexp(self.log_px_given_y(x, None, self.classify_k) + self.log_prior, dim=1)
        # A likelihood mostly measures how simple an image is, so a model trained on Fashion-MNIST
        # rates the simpler MNIST digits *more* likely (Nalisnick et al. 2019). Serrà et al. 2020
        # subtract a generic compressor's code length: S = -log p(x) - L(x), a likelihood ratio
        # against a universal model. Chosen over Ren et al.'s 2019 ratio: no background model to train.
        complexity = context_code_length(self.binarize(x)) * math.log(2)  # bits -> nats
        return {"nll": nll, "complexity_corrected": nll - complexity}

    @torch.inference_mode()
    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """E[b_missing | x_obs] by self-normalised importance sampling over (y, z), the single
        imputation of MIWAE (Mattei & Frellsen 2019, eq. 12). As b ~ Bernoulli(x), the probability
        of a missing pixel being on estimates its gray level. Observed pixels are returned as given."""
        filled = torch.empty_like(x, dtype=torch.float32)
        log_total: dict[int, Tensor] = {}
        with torch.autocast(x.device.type, enabled=False):
            for part, log_w, logits in self.importance_weights(x, observed, self.classify_k, soft=True):
                log_w = log_w.flatten(1)[..., None, None, None]  # over (y, z_j); uniform p(y) cancels
                chunk_total = torch.logsumexp(log_w, dim=1)
                chunk_mean = (torch.softmax(log_w, 1) * torch.sigmoid(logits).flatten(1, 2)).sum(1)
                if part.start not in log_total:
                    log_total[part.start], filled[part] = chunk_total, chunk_mean
                    continue
                total = torch.logaddexp(log_total[part.start], chunk_total)  # merge two weighted means
                old_share, new_share = (log_total[part.start] - total).exp(), (chunk_total - total).exp()
                filled[part] = filled[part] * old_share + chunk_mean * new_share
                log_total[part.start] = total
        return torch.where(observed.bool(), x, filled.to(x.dtype))

    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Bernoulli means p(b | z, y) for z ~ N(0, I) drawn on the CPU with ``generator``."""
        labels = torch.arange(n) % self.num_classes if labels is None else labels
        if len(labels) != n:
            raise DGBenchError(f"sample(n={n}) got {len(labels)} labels: pass one label per image")
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decode(z, labels.to(self.device)))

    explanation_method = (
        "integrated gradients (Sundararajan et al. 2017), 32 midpoint steps, of log p(ŷ|x_obs) as classify computes "
        "it (Bayes' rule on IWAE bounds, k = classify_k, common random numbers) along the straight path from the "
        "black image, the mask held fixed: sums to log p(ŷ|x_obs) - log p(ŷ|black x_obs) up to the quadrature error"
    )

    @property
    def decision_parameters(self) -> int:
        """Every parameter: the encoder proposes z and the decoder scores each class from it."""
        return self.num_parameters

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Integrated gradients of log p(ŷ|x_obs) (``explanation_method``); unobserved pixels get 0, because
        neither the encoder (x * mask) nor the bound (observed factors only) reads them."""
        predicted = autograd_copy(self.classify(x, observed).argmax(1))
        mask = autograd_copy(torch.ones_like(x, dtype=torch.bool) if observed is None else observed.bool())

        def log_p(point: Tensor) -> Tensor:
            scores = self.log_px_given_y(point, mask, self.classify_k, soft=True) + self.log_prior
            return pick(torch.log_softmax(scores, dim=1), predicted)

        return integrated_gradients(log_p, x * mask)
