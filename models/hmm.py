"""Class-conditional hidden Markov model over image rows: the generative half of the second pair.

The image is read as a sequence of its 28 rows r_1..r_28. Given the class y a chain of hidden states
h_t in {1..K} starts from pi_y, moves by the transition matrix A_y, and each state emits its row as 28
independent Bernoulli pixels (Rabiner 1989; the generative twin of the hidden-state CRF,
models/hcrf.py, as naive Bayes is of logistic regression: Ng & Jordan 2001, Sutton & McCallum 2012):

    p(b, y) = p(y) sum_h pi_y(h_1) prod_{t>1} A_y(h_{t-1}, h_t) prod_t prod_i theta_{y,h_t,i}^b_ti (1 - theta_{y,h_t,i})^(1 - b_ti)

log p(b | y) is exact by the forward algorithm in log space (models/nets/chain.py), and so is every
capability: a missing pixel's Bernoulli factor sums to one and is dropped from its row's emission,
so p(b_obs | y) is the same recursion. With K >= 28 the model contains naive Bayes (a left-to-right
chain, one state per row); with fewer states the rows share templates and the chain carries where
the pen is. Data follow the binarized-MNIST protocol (dgbench/binarize.py) so nats compare with
naive Bayes, the VAE and the PixelCNN.

Fit: gradient descent on the exact -log p(b, y) of dynamic binarizations, all distributions as
softmax/sigmoid logits, rather than EM: the forward algorithm differentiated by autograd is the
forward-backward E-step (d log Z / d e_t(k) = p(h_t = k | b)), minibatches and fresh binarizations need
no special-casing, the run is counted in optimiser steps like the other families, and the same chain
code trains the HCRF; EM's one advantage, no learning rate, is lost on minibatches anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.attribution import autograd_copy, integrated_gradients, pick
from dgbench.binarize import dynamic_binarization
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.exact_bayes import ExactBayesFamily
from models.nets import chain

NUM_CLASSES, SIDE = 10, 28


class RowHMM(ExactBayesFamily):
    """Capabilities: classify (Bayes rule), sample, likelihood, score_anomalies, impute, all exact."""

    family = "hmm"

    def __init__(
        self,
        states: int = 32,
        init_scale: float = 1.0,
        eval_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(eval_seed, optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if states < 1:
            raise DGBenchError(f"states={states} must be >= 1 (hidden states per class)")
        self.prior_logits = nn.Parameter(torch.zeros(NUM_CLASSES))
        self.init_logits = nn.Parameter(torch.zeros(NUM_CLASSES, states))
        self.trans_logits = nn.Parameter(torch.zeros(NUM_CLASSES, states, states))  # [y, from, to]
        # Random emission logits break the symmetry between states (identical states stay identical).
        self.emit_logits = nn.Parameter(init_scale * torch.randn(NUM_CLASSES, states, SIDE) - 2.0)

    @property
    def likelihood_protocol(self) -> str:
        return (
            "binarized images (dynamic binarization in training, one fixed seeded binarization at test), "
            f"class-conditional HMM over the 28 rows ({self.hparams.states} states, Bernoulli pixels per row), "
            "exact log p(x|y) by the forward algorithm, log p(x) = logsumexp_y log p(x|y) + log p(y), nats"
        )

    # --- the model -------------------------------------------------------------------------
    def log_params(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """log p(y) (10,), log pi (10, K), log A (10, K, K), log theta and log(1 - theta) (10, K, 28)."""
        return (
            self.prior_logits.float().log_softmax(0),
            self.init_logits.float().log_softmax(-1),
            self.trans_logits.float().log_softmax(-1),
            F.logsigmoid(self.emit_logits.float()),
            F.logsigmoid(-self.emit_logits.float()),
        )

    def emissions(self, x: Tensor, observed: Tensor | None, log_on: Tensor, log_off: Tensor) -> Tensor:
        """Row emission scores sum_{i obs} [x_ti log theta_ki + (1 - x_ti) log(1 - theta_ki)]: (N, C, 28, K).

        ``log_on``/``log_off`` are (C, K, 28). Exact log p(b_t,obs | h_t = k) for binary x; for gray x
        it is its expectation over b ~ Bernoulli(x) (naive Bayes' and the VAE's soft evidence).
        """
        on = x.reshape(len(x), -1, SIDE).float()  # (N, rows, pixels): any number of rows of 28 pixels
        off = 1 - on
        if observed is not None:  # a missing pixel's factor sums to one over its two values: dropped
            keep = observed.reshape(len(x), -1, SIDE).float()
            on, off = on * keep, off * keep
        scores = torch.einsum("ntp,ckp->nctk", on, log_on) + torch.einsum("ntp,ckp->nctk", off, log_off)
        return scores

    def log_px_given_y(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(x_obs | y) for every class (N, 10), exact by the forward algorithm, float32."""
        with torch.autocast(x.device.type, enabled=False):
            _, log_init, log_trans, log_on, log_off = self.log_params()
            return chain.log_partition(log_init, log_trans, self.emissions(x, observed, log_on, log_off))

    def log_joint(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(x_obs, y) (N, 10)."""
        return self.log_px_given_y(x, observed) + self.log_params()[0]

    def negative_log_joint(self, binary: Tensor, labels: Tensor) -> Tensor:
        """-log p(b, y) per image, the forward algorithm run for the true class only (the training loss)."""
        with torch.autocast(binary.device.type, enabled=False):
            log_prior, log_init, log_trans, log_on, log_off = self.log_params()
            on = binary.reshape(len(binary), -1, SIDE).float()
            emit = on @ log_on[labels].transpose(1, 2) + (1 - on) @ log_off[labels].transpose(1, 2)  # (N, T, K)
            return -(chain.log_partition(log_init[labels], log_trans[labels], emit) + log_prior[labels])

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.negative_log_joint(dynamic_binarization(x), y).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    # --- capabilities beyond ExactBayesFamily's classify, log_likelihood, score_anomalies ------
    explanation_method = (
        "integrated gradients (Sundararajan et al. 2017), 32 midpoint steps, of log p(ŷ|x_obs) over each pixel's "
        "evidence weight, from nothing observed (the prior p(ŷ)) to the observed image; the weights scale the "
        "pixels' Bernoulli terms inside the exact forward algorithm, so the attributions sum to "
        "log p(ŷ|x_obs) - log p(ŷ) up to the quadrature error"
    )

    @property
    def decision_parameters(self) -> int:
        """Every parameter belongs to one class (prior, initial, transition and emission logits): a decision
        between ŷ and the runner-up reads two classes' worth."""
        return 2 * self.num_parameters // NUM_CLASSES

    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Per-pixel shares of the evidence for the predicted class (``explanation_method``); 0 where unobserved."""
        x = autograd_copy(x.float())
        weights = torch.ones_like(x) if observed is None else autograd_copy(observed.float())
        predicted = autograd_copy(self.classify(x, observed).argmax(1))
        return integrated_gradients(lambda w: pick(torch.log_softmax(self.log_joint(x, w), 1), predicted), weights)

    @torch.inference_mode()
    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """E[b_ti | x_obs] = sum_y p(y | x_obs) sum_k p(h_t = k | x_obs, y) theta_{y,k,i}: forward-backward
        state posteriors per row and class, missing pixels marginalised, mixed over classes by Bayes' rule.
        The posterior mean probability, as naive Bayes fills; observed pixels are returned as given."""
        with torch.autocast(x.device.type, enabled=False):
            log_prior, log_init, log_trans, log_on, log_off = self.log_params()
            emit = self.emissions(x, observed, log_on, log_off)
            log_states, log_px_y = chain.state_posteriors(log_init, log_trans, emit)  # (N, C, T, K), (N, C)
            log_class = torch.log_softmax(log_px_y + log_prior, dim=1)
            weights = (log_states + log_class[..., None, None]).exp()  # p(y, h_t = k | x_obs)
            filled = torch.einsum("nctk,ckp->ntp", weights, log_on.exp()).reshape(x.shape)
        return torch.where(observed.bool(), x, filled.clamp(0, 1).to(x.dtype))

    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling: h_1 ~ pi_y, h_t ~ A_y(h_{t-1}, .), row t ~ Bernoulli(theta_{y,h_t}); binary images.

        Uniforms are drawn on the CPU with ``generator`` (one per state, one per pixel), then moved.
        """
        labels = torch.arange(n) % NUM_CLASSES if labels is None else labels
        if len(labels) != n:
            raise DGBenchError(f"sample(n={n}) got {len(labels)} labels: pass one label per image")
        state_u = torch.rand(n, SIDE, 1, generator=generator).to(self.device)
        pixel_u = torch.rand(n, SIDE, SIDE, generator=generator).to(self.device)
        _, log_init, log_trans, log_on, _ = self.log_params()
        labels = labels.to(self.device)
        cdf = log_init[labels].exp().cumsum(-1)  # (n, K)
        trans_cdf = log_trans[labels].exp().cumsum(-1)  # (n, K, K)
        rows, rng = [], torch.arange(n, device=self.device)
        for t in range(SIDE):
            # inverse CDF; the clamp guards u above a last cumsum rounded below 1
            state = (cdf < state_u[:, t] * cdf[:, -1:]).sum(-1).clamp(max=cdf.shape[-1] - 1)
            rows.append(log_on[labels, state].exp())  # (n, 28) pixel probabilities of the state
            cdf = trans_cdf[rng, state]
        theta = torch.stack(rows, dim=1)
        return (pixel_u < theta).float().view(n, 1, SIDE, SIDE)
