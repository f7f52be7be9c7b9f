"""M2: the semi-supervised deep generative model of Kingma, Rezende, Mohamed & Welling 2014 (NeurIPS).

Model: y ~ Uniform(10), z ~ N(0, I), each binary pixel b_i ~ Bernoulli(sigmoid(decoder(y, z))_i).
Inference networks: a classifier q(y | x) and a Gaussian q(z | x, y). Labelled images (x, y) train
the bound of their eq. 6,

    -L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))  <=  log p(x, y),

unlabelled images the bound of their eq. 7, with y summed out under the classifier,

    -U(x) = sum_y q(y | x) (-L(x, y)) + H(q(y | x))  <=  log p(x),

and, since -U does not train q(y|x) from labels, the classifier also gets an explicit log-loss
weighted by alpha (their eq. 9):  J^alpha = sum_l L(x, y) + sum_u U(x) + alpha * E_l[-log q(y | x)].
Here the two bounds are averaged per image over the batch and alpha multiplies the labelled images'
mean cross-entropy (Kingma et al. use alpha = 0.1 N on sums over the data set).

Pixels as in models/vae.py: the bound is linear in b ~ Bernoulli(x), so training uses the gray image
as a soft target (all binarizations at once); test likelihoods are of dgbench/binarize.py's fixed
binarization. Networks are small MLPs (two hidden layers each), so that it trains on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from dgbench import DGBenchError
from dgbench.attribution import autograd_copy, integrated_gradients, pick
from dgbench.binarize import fixed_binarization
from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory

LOG_2PI = math.log(2 * math.pi)
PIXELS = 28 * 28


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
                         nn.Linear(hidden, outputs))  # fmt: skip


class M2(FamilyModule):
    """Capabilities: classify (q(y|x)), sample (p(x|y,z)), score_anomalies, log_likelihood."""

    family = "m2"
    kind = "hybrid"  # a generative model p(x, y) whose classifier q(y|x) is trained discriminatively too
    learns = "p(x|y,z) p(y) p(z), and q(y|x) also trained on the labels"
    monitor = ("val/acc", "max")
    # Declared before any OOD test set was scored: the model's own bound on -log p(x), -U(x) negated
    # (the quantity it is trained to make small on the data); q(y|x)'s max-softmax is reported beside it.
    primary_score = "neg_elbo"

    def __init__(
        self,
        latent_dim: int = 32,
        hidden: int = 500,
        num_classes: int = 10,
        alpha: float = 50.0,
        likelihood_k: int = 20,
        eval_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if likelihood_k < 1 or alpha < 0:
            raise DGBenchError(f"model.likelihood_k={likelihood_k} must be >= 1 and model.alpha={alpha} >= 0")
        self.latent_dim, self.num_classes, self.alpha = latent_dim, num_classes, alpha
        self.likelihood_k, self.eval_seed = likelihood_k, eval_seed
        self.classifier = mlp(PIXELS, hidden, num_classes)  # q(y | x)
        # q(z | x, y): the label enters the first layer additively, so one pass over x serves every class.
        self.encoder_x, self.encoder_y = nn.Linear(PIXELS, hidden), nn.Linear(num_classes, hidden, bias=False)
        self.encoder = nn.Sequential(nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
                                     nn.Linear(hidden, 2 * latent_dim))  # fmt: skip
        self.decoder = mlp(latent_dim + num_classes, hidden, PIXELS)  # p(x | y, z)
        self.log_prior = -math.log(num_classes)  # log p(y), uniform
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def likelihood_protocol(self) -> str:
        return (
            f"binarized images (gray images as soft targets in training, one fixed seeded binarization at "
            f"test), Bernoulli decoder, IWAE bound k={self.likelihood_k} on each log p(x|y) with proposal "
            f"q(z|x,y), log p(x) = logsumexp_y log p(x|y) + log 1/{self.num_classes}, nats"
        )

    # --- the networks ---------------------------------------------------------------------------
    def class_logits(self, x: Tensor) -> Tensor:
        """Logits of q(y | x), (N, classes)."""
        return self.classifier(x.flatten(1).float())

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x, y) for every y: means and log-variances, each (N, classes, latent_dim)."""
        h = self.encoder_x(x.flatten(1).float())[:, None] + self.encoder_y.weight.T[None]  # W_x x + W_y onehot(y)
        mean, log_var = self.encoder(h).chunk(2, dim=2)
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z: Tensor, labels: Tensor) -> Tensor:
        """Bernoulli logits (..., 784) of p(b | y, z) for z (..., D) and labels (...)."""
        return self.decoder(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=-1))

    # --- the two bounds of Kingma et al. 2014 ------------------------------------------------------
    def labelled_bound(self, x: Tensor, target: Tensor, labels: Tensor, eps: Tensor) -> Tensor:
        """-L(x, y) per image (N,), eq. 6, with z = mean + std * eps (eps (N, D)); nats. ``target`` is
        the Bernoulli target: a binary image, or the gray image for the average over binarizations."""
        mean, log_var = self.posterior(x)
        pick = torch.arange(len(x), device=x.device)
        mean, log_var = mean[pick, labels], log_var[pick, labels]
        z = mean + (0.5 * log_var).exp() * eps  # reparameterisation trick
        log_px = -F.binary_cross_entropy_with_logits(
            self.decode(z, labels), target.flatten(1).float(), reduction="none"
        )
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(1)  # closed form for Gaussians
        return log_px.sum(1) + self.log_prior - kl

    def class_bounds(self, x: Tensor, target: Tensor, eps: Tensor) -> Tensor:
        """-L(x, y) for every class at once, (N, classes); eps (N, classes, D) is class y's noise."""
        mean, log_var = self.posterior(x)
        z = mean + (0.5 * log_var).exp() * eps
        labels = torch.arange(self.num_classes, device=x.device).expand(len(x), -1)
        logits = self.decode(z, labels)  # (N, classes, 784)
        target = target.flatten(1).float()[:, None].expand_as(logits)
        log_px = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(2)
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(2)
        return log_px + self.log_prior - kl

    def unlabelled_bound(self, x: Tensor, target: Tensor, eps: Tensor) -> Tensor:
        """-U(x) = sum_y q(y|x) (-L(x, y)) + H(q(y|x)) per image (N,), eq. 7; eps (N, classes, D)."""
        log_q = F.log_softmax(self.class_logits(x), dim=1)
        q = log_q.exp()
        return (q * self.class_bounds(x, target, eps)).sum(1) - (q * log_q).sum(1)

    def objective(self, x: Tensor, labels: Tensor, eps: Tensor | None = None) -> dict[str, Tensor]:
        """J^alpha per image (eq. 9) on a batch where label -1 marks an unlabelled image.

        Labelled image i uses the noise eps[i, y_i], unlabelled ones eps[i] for every class; eps
        (N, classes, D) defaults to fresh N(0, I) draws. Returns the loss and its parts.
        """
        eps = torch.randn(len(x), self.num_classes, self.latent_dim, device=x.device) if eps is None else eps
        known = labels >= 0
        xl, yl, xu = x[known], labels[known], x[~known]
        bound_l = self.labelled_bound(xl, xl, yl, eps[known, yl]) if len(xl) else x.new_zeros(0)
        bound_u = self.unlabelled_bound(xu, xu, eps[~known]) if len(xu) else x.new_zeros(0)
        cross_entropy = F.cross_entropy(self.class_logits(xl), yl) if len(xl) else x.new_zeros(())
        neg_bound = -(bound_l.sum() + bound_u.sum()) / len(x)
        return {"loss": neg_bound + self.alpha * cross_entropy, "neg_bound": neg_bound, "cross_entropy": cross_entropy}

    # --- training -----------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        parts = self.objective(x, y)
        self.log("train/loss", parts["loss"], prog_bar=True)
        self.log("train/neg_bound", parts["neg_bound"])
        self.log("train/cross_entropy", parts["cross_entropy"])
        self.log("train/labelled", (y >= 0).float().mean())
        return parts["loss"]

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self.class_logits(x)
        accuracy(logits, y)
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True)  # nats per label, q(y|x)
        self.log(f"{stage}/neg_elbo", self.score_anomalies(x)["neg_elbo"].mean(), on_epoch=True)  # -U(b), nats

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    # --- capabilities ---------------------------------------------------------------------------------
    def eval_noise(self, k: int = 1) -> Tensor:
        """Seeded noise (k, classes, D), drawn on the CPU and shared by every image: batch-independent."""
        generator = torch.Generator().manual_seed(self.eval_seed)
        return torch.randn(k, self.num_classes, self.latent_dim, generator=generator).to(self.device)

    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log q(y | x). q is a network, not Bayes' rule: it cannot marginalise, so missing pixels
        are read as given (zero-filled by the caller), as a discriminative family reads them."""
        return F.log_softmax(self.class_logits(x).float(), dim=1)

    explanation_method = (
        "integrated gradients (Sundararajan et al. 2017), 32 midpoint steps, of log q(ŷ|x) along the straight path "
        "from the zero image to the (zero-filled) input: sums to log q(ŷ|x) - log q(ŷ|0) up to the quadrature error"
    )

    @property
    def decision_parameters(self) -> int:
        """The classifier q(y|x): every one of its weights feeds both logits."""
        return sum(p.numel() for p in self.classifier.parameters())

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Integrated gradients of the classifier q(ŷ|x) (``explanation_method``); 0 where unobserved."""
        x = autograd_copy((x if observed is None else x * observed).float())
        predicted = autograd_copy(self.classify(x).argmax(1))
        return integrated_gradients(lambda z: pick(F.log_softmax(self.class_logits(z).float(), 1), predicted), x)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        b = fixed_binarization(x, self.eval_seed)
        eps = self.eval_noise()[0].expand(len(x), -1, -1)
        return {
            "neg_elbo": -self.unlabelled_bound(x, b, eps),  # -(-U(b)): M2's bound on -log p(b), nats
            "max_softmax": -F.softmax(self.class_logits(x).float(), dim=1).amax(1),
        }

    @torch.inference_mode()
    def log_likelihood(self, x: Tensor) -> Tensor:
        """Lower bound on log p(b), per ``likelihood_protocol`` (Burda et al. 2016, eq. 8, for each y)."""
        b = fixed_binarization(x, self.eval_seed).flatten(1).float()
        mean, log_var = self.posterior(x)  # (N, C, D)
        std = (0.5 * log_var).exp()
        labels = torch.arange(self.num_classes, device=x.device).expand(len(x), -1)
        log_w = []
        for eps in self.eval_noise(self.likelihood_k):  # (C, D), the same for every image
            z = mean + std * eps
            logits = self.decode(z, labels)
            log_px = -F.binary_cross_entropy_with_logits(logits, b[:, None].expand_as(logits), reduction="none")
            log_pz = -0.5 * (z.square() + LOG_2PI).sum(2)
            log_qz = -0.5 * (eps.square() + LOG_2PI).sum(1) - std.log().sum(2)
            log_w.append(log_px.sum(2) + log_pz - log_qz)
        log_px_given_y = torch.logsumexp(torch.stack(log_w, 2), dim=2) - math.log(self.likelihood_k)
        return torch.logsumexp(log_px_given_y + self.log_prior, dim=1)

    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Bernoulli means of p(b | y, z) for z ~ N(0, I) drawn on the CPU with ``generator``."""
        labels = torch.arange(n) % self.num_classes if labels is None else labels
        if len(labels) != n:
            raise DGBenchError(f"sample(n={n}) got {len(labels)} labels: pass one label per image")
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decode(z, labels.to(self.device))).view(n, 1, 28, 28)
