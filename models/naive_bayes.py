"""Bernoulli naive Bayes: the simplest generative family, p(x|y) factorised over pixels.

Model: y ~ Categorical(pi), and given y each binary pixel b_i ~ Bernoulli(theta_{y,i}),
independently. Data follow the binarized-MNIST protocol of the VAE (dgbench/binarize.py): b ~
Bernoulli(x) for a gray image x. Fitting is closed form, the posterior mean under conjugate priors
Beta(alpha, alpha) on each theta and Dirichlet(alpha) on pi (alpha = 1: Laplace smoothing):

    theta_{y,i} = (sum_{n: y_n = y} x_{n,i} + alpha) / (N_y + 2 alpha),   pi_y = (N_y + alpha) / (N + 10 alpha)

The counts are of x, not of one binarization: E_b[count] = sum x, so this is the fit to infinitely
many dynamic binarizations. Every capability is exact, because every marginal is closed form:
log p(b_obs | y) = sum_{i observed} log Bernoulli(b_i; theta_{y,i}) (a missing pixel's factor sums to
one), and pixels are independent given y. Ng & Jordan (2001) pair it with logistic regression.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.attribution import decision
from models.exact_bayes import NUM_CLASSES, NUM_PIXELS, ExactBayesFamily


class BernoulliNaiveBayes(ExactBayesFamily):
    """Capabilities: classify (Bayes rule), sample, likelihood, score_anomalies, impute.

    Training is one pass of counting per epoch (no gradients): the counts are reset
    at every epoch start, so each epoch is a complete fit, and a second epoch, a resumed run or a
    longer preset give the same model.
    """

    family = "naive_bayes"
    fits_without_gradients = True  # counting: ``fit``

    def __init__(self, alpha: float = 0.1, eval_seed: int = 0) -> None:
        super().__init__(eval_seed)
        self.save_hyperparameters(logger=False)
        if alpha <= 0:
            raise DGBenchError(f"alpha={alpha} must be > 0: with alpha = 0 an unseen pixel value has probability 0")
        self.alpha = alpha
        self.automatic_optimization = False
        # Sufficient statistics, stored as (frozen) parameters so that num_parameters counts them.
        self.pixel_counts = nn.Parameter(torch.zeros(NUM_CLASSES, NUM_PIXELS), requires_grad=False)
        self.class_counts = nn.Parameter(torch.zeros(NUM_CLASSES), requires_grad=False)

    @property
    def likelihood_protocol(self) -> str:
        return (
            "binarized images (soft counts = dynamic binarization in training, one fixed seeded binarization "
            f"at test), Bernoulli naive Bayes, exact log p(x) = logsumexp_y log p(x|y) p(y), nats, alpha={self.alpha}"
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Nothing to optimise, but Lightning measures progress (global_step, on which checkpointing
        # keys) in optimiser steps: a zero-learning-rate SGD over the frozen counts is the step counter.
        return torch.optim.SGD(self.parameters(), lr=0.0)

    # --- the model -------------------------------------------------------------------------
    def log_params(self) -> tuple[Tensor, Tensor, Tensor]:
        """log pi (10,), log theta and log(1 - theta) (10, 784): the smoothed estimates above."""
        a = self.alpha
        theta = (self.pixel_counts + a) / (self.class_counts[:, None] + 2 * a)
        log_prior = torch.log((self.class_counts + a) / (self.class_counts.sum() + NUM_CLASSES * a))
        return log_prior, theta.log(), torch.log1p(-theta)

    def log_joint(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(x_obs, y) = log pi_y + sum_{i obs} [x_i log theta + (1 - x_i) log(1 - theta)]: (N, 10).

        Exact for binary x; for gray x it is E_b[log p(b_obs, y)] over b ~ Bernoulli(x), the score
        ``classify`` uses so as not to throw the gray levels away.
        """
        with torch.autocast(x.device.type, enabled=False):  # float32 sums even under bf16 autocast
            log_prior, log_on, log_off = self.log_params()
            on = x.flatten(1).float()
            off = 1 - on
            if observed is not None:
                keep = observed.flatten(1).float()  # a missing pixel's factor is dropped: it sums to 1
                on, off = on * keep, off * keep
            return on @ log_on.T + off @ log_off.T + log_prior

    # --- training: counting ---------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.pixel_counts.zero_()
        self.class_counts.zero_()

    @torch.no_grad()
    def count(self, x: Tensor, y: Tensor) -> None:
        """Add a batch to the sufficient statistics: images per class and expected counts of b = 1."""
        self.pixel_counts.index_add_(0, y, x.flatten(1).float())
        self.class_counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float32))

    def fit(self, images: Tensor, labels: Tensor) -> None:
        """The counts of one set from scratch (``count`` adds a batch to those already made)."""
        self.on_train_epoch_start()
        self.count(images, labels)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.count(*batch)
        self.optimizers().step()  # changes nothing (no gradients, lr 0); counts the batch as a step

    # --- capabilities beyond ExactBayesFamily's classify, log_likelihood, score_anomalies ------
    @torch.inference_mode()
    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """E[b_i | x_obs] = sum_y p(y | x_obs) theta_{y,i}: the class-conditional pixel means mixed
        by the posterior over classes given the observed pixels. Observed pixels are returned as given."""
        with torch.autocast(x.device.type, enabled=False):
            posterior = self.classify(x, observed).exp()  # (N, 10)
            theta = self.log_params()[1].exp()
            filled = (posterior @ theta).view_as(x)
        return torch.where(observed.bool(), x, filled.to(x.dtype))

    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Binary images b ~ prod_i Bernoulli(theta_{y,i}), uniforms drawn on the CPU with ``generator``.

        Binary rather than theta itself: theta_y is the same mean image for every sample of a class.
        """
        labels = torch.arange(n) % NUM_CLASSES if labels is None else labels
        if len(labels) != n:
            raise DGBenchError(f"sample(n={n}) got {len(labels)} labels: pass one label per image")
        uniforms = torch.rand(n, NUM_PIXELS, generator=generator).to(self.device)
        theta = self.log_params()[1].exp()[labels.to(self.device)]
        return (uniforms < theta).float().view(n, 1, 28, 28)

    explanation_method = (
        "exact: the per-pixel terms x_i log(θ_ŷ,i / θ_y',i) + (1 - x_i) log((1 - θ_ŷ,i) / (1 - θ_y',i)) of "
        "log p(x_obs|ŷ) - log p(x_obs|y') (y' the runner-up, observed pixels only); they sum to the log-odds "
        "log p(ŷ|x_obs)/p(y'|x_obs) less log(π_ŷ / π_y')"
    )
    decision_parameters = 2 * NUM_PIXELS + 2  # θ of both classes at every pixel, and their two priors

    @torch.inference_mode()
    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Exact per-pixel terms of the class-conditional log-likelihood difference (``explanation_method``)."""
        with torch.autocast(x.device.type, enabled=False):
            predicted, runner_up = decision(self.classify(x, observed))
            _, log_on, log_off = self.log_params()
            on = x.flatten(1).float()
            terms = on * (log_on[predicted] - log_on[runner_up]) + (1 - on) * (log_off[predicted] - log_off[runner_up])
            if observed is not None:
                terms = terms * observed.flatten(1).float()
            return terms.view(x.shape)
