"""Hidden-state conditional random field over image rows: the discriminative half of the second pair.

Quattoni et al. (2007): the HMM's chain (models/hmm.py) with its probabilities replaced by free
potentials and trained on p(y|x) alone. The image is the sequence of its 28 rows x_t; per class y a
chain of latent states h_t in {1..K} has the score

    s(y, h, x) = a_y(h_1) + sum_{t>1} A_y(h_{t-1}, h_t) + sum_t (w_{y,h_t} . x_t + c_{y,h_t})

(transition scores and emission scores linear in the row's pixels), and

    p(y | x) = sum_h exp s(y, h, x) / sum_y' sum_h exp s(y', h, x),

the states summed out by the forward algorithm (models/nets/chain.py): the class logit is
log Z_y(x) = log sum_h exp s(y, h, x). Training minimises the mean -log p(y|x) + l2/2 ||theta||^2 over
all potentials (MAP under a Gaussian prior, as Quattoni et al.). Not convex (the latent states), so
the emission weights start random. As logistic regression is to naive Bayes (Ng & Jordan 2001), so
this is to the HMM (Sutton & McCallum 2012, 2.2): the same graph, conditional rather than joint training.
With ``mask_channel`` a row's features are its zero-filled pixels and its 28 mask bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import LogitClassifier
from models.nets import chain

NUM_CLASSES, SIDE = 10, 28


class HiddenStateCRF(LogitClassifier):
    """Capabilities: classify, score_anomalies (max-softmax and energy). Nothing generative."""

    family = "hcrf"

    def __init__(
        self,
        states: int = 16,
        l2: float = 1e-4,
        init_scale: float = 0.1,
        mask_channel: bool = False,
        mask_prob: float = 0.5,
        max_missing: float = 0.9,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, mask_channel=mask_channel, mask_prob=mask_prob, max_missing=max_missing)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if states < 1:
            raise DGBenchError(f"states={states} must be >= 1 (hidden states per class)")
        self.l2 = l2
        features = self.in_channels * SIDE  # per row: its pixels (and its mask bits)
        self.init_scores = nn.Parameter(torch.zeros(NUM_CLASSES, states))
        self.trans_scores = nn.Parameter(torch.zeros(NUM_CLASSES, states, states))  # [y, from, to]
        # Random weights break the symmetry between states (identical states get identical gradients).
        self.emit_weight = nn.Parameter(init_scale * torch.randn(NUM_CLASSES, states, features))
        self.emit_bias = nn.Parameter(torch.zeros(NUM_CLASSES, states))

    def logits(self, inputs: Tensor) -> Tensor:
        """log Z_y(x) = log sum_h exp s(y, h, x) for every class (N, 10), float32; their softmax is p(y|x)."""
        with torch.autocast(inputs.device.type, enabled=False):
            rows = inputs.float().transpose(1, 2).flatten(2)  # (N, T, F): a chain over any number of rows
            emit = torch.einsum("ntf,ckf->nctk", rows, self.emit_weight) + self.emit_bias[:, None, :]
            return chain.log_partition(self.init_scores, self.trans_scores, emit)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        penalty = sum(p.square().sum() for p in self.parameters())
        return F.cross_entropy(logits, y) + 0.5 * self.l2 * penalty  # the MAP objective above
