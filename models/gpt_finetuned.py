"""GPT pretrained on images without labels, then steered with labels: ImageGPT's two ways to use it.

Stage 1 (steps 0 .. ``pretrain_steps`` - 1) trains the GPT family's transformer (models/gpt.py) by
next-token prediction on every training image with the "no class" start token, labels ignored:

    L_GEN(b) = -(1/T) sum_t log p(s_t | s_<t)          (ImageGPT, Chen et al. 2020, eq. 1, per token)

over the 196 2x2-patch tokens of a dynamic binarization. Stage 2 (the remaining steps) reads the
labelled images only, through the features f_l(b) = LayerNorm(mean_t h_l,t(b)), the average over positions
of block l's output (their Sec. 3.3), normalised without parameters, and p(y|b) = softmax(W f_l(b) + c):

* linear probe (``probe_layer`` = l, 1..depth): the transformer frozen, only W and c trained, by the
  cross-entropy L_CLS alone (their linear-probe protocol; they find the middle layers best);
* fine-tune (``probe_layer`` = null): the last block's features, every weight trained by
  L_CLS + ``aux_weight`` * L_GEN on the same labelled images (their Sec. 3.4: the generative loss kept).

Both stages run in one Lightning run with one optimiser, the stage read off ``global_step`` (so a resumed
run continues in the right stage), as models/vae_finetuned.py does. Images are binarized as the GPT family
binarizes them: dynamically in training, one fixed seeded binarization at test.

Capabilities: those of a discriminative classifier (classify, max-softmax anomaly scores), and the exact
log p(b) of the transformer it keeps (the no-class chain rule): a hybrid that still has a likelihood.
It does not explain: integrated gradients need a continuous input and the tokens are discrete.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgbench import DGBenchError
from dgbench.binarize import dynamic_binarization, fixed_binarization
from dgbench.family import OptimizerFactory, SchedulerFactory
from models.discriminative import PretrainedClassifier
from models.gpt import NO_CLASS, next_token_log_probs
from models.nets.gpt import PATCH, SYMBOLS, DecoderTransformer, tokenize


def unconditional_pass(net: DecoderTransformer, binary: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Per-token log p(s_t | s_<t) (N, T) after the no-class start token, and every block's output: one
    teacher-forced pass of binary images (N, 1, H, W)."""
    tokens, states = tokenize(binary), []
    start = torch.full((len(tokens), 1), NO_CLASS, device=tokens.device)
    log_p = next_token_log_probs(net, start, tokens, states).gather(-1, tokens[..., None])[..., 0]
    return log_p, states


def pooled(state: Tensor) -> Tensor:
    """f_l: one block's output (N, T, width) averaged over positions, layer-normalised without parameters,
    float32 (N, width)."""
    mean = state.float().mean(1)
    return F.layer_norm(mean, mean.shape[-1:])


class FinetunedGPT(PretrainedClassifier):
    """Capabilities: classify, score_anomalies (max-softmax declared), log_likelihood (exact, unconditional)."""

    family = "gpt_finetuned"
    pretrain_metric = "train/nll_per_token"
    learns = "p(y|x), from a transformer pretrained on p(x) by next-token prediction without labels"
    explain = None  # no attribution through discrete tokens is claimed (see the module docstring)

    def __init__(
        self,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        pretrain_steps: int = 720,
        probe_layer: int | None = None,
        aux_weight: float = 1.0,
        image_size: int = 28,
        eval_seed: int = 0,
        num_classes: int = 10,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if pretrain_steps < 0 or aux_weight < 0 or image_size % PATCH:
            raise DGBenchError(
                f"model.pretrain_steps={pretrain_steps} and model.aux_weight={aux_weight} must be >= 0 "
                f"and model.image_size={image_size} even"
            )
        if probe_layer is not None and not 1 <= probe_layer <= depth:
            raise DGBenchError(f"model.probe_layer={probe_layer}: choose a block 1..{depth}, or null to fine-tune")
        self.pretrain_steps, self.probe_layer, self.aux_weight = pretrain_steps, probe_layer, aux_weight
        self.eval_seed, self.length = eval_seed, (image_size // PATCH) ** 2
        self.net = DecoderTransformer(NO_CLASS + 1, SYMBOLS, self.length, width, depth, heads)
        self.head = nn.Linear(width, num_classes)

    @property
    def likelihood_protocol(self) -> str:
        return (
            "binarized images (one fixed seeded binarization at test), 2x2 binary patches as 16-symbol tokens "
            "in raster order (lossless), exact log p(x) by the chain rule after the no-class start token, nats"
        )

    # --- the model -------------------------------------------------------------------------
    def _pass(self, binary: Tensor) -> tuple[Tensor, list[Tensor]]:
        return unconditional_pass(self.net, binary)

    def features(self, states: list[Tensor], layer: int | None = None) -> Tensor:
        """f_l of block ``layer`` (default: the probe layer, else the last), :func:`pooled`."""
        return pooled(states[(layer or self.probe_layer or len(states)) - 1])

    def logits(self, inputs: Tensor) -> Tensor:
        _, states = self._pass(fixed_binarization(inputs, self.eval_seed))
        return self.head(self.features(states))

    # --- training ---------------------------------------------------------------------------
    def pretrain_loss(self, x: Tensor) -> Tensor:
        return -self._pass(dynamic_binarization(x))[0].mean()  # L_GEN, nats per token

    def steer_loss(self, x: Tensor, y: Tensor) -> Tensor:
        binary = dynamic_binarization(x)
        if self.probe_layer is not None:  # linear probe: the transformer is frozen
            with torch.no_grad():
                _, states = self._pass(binary)
            return self.loss(self.head(self.features(states)), y)
        log_p, states = self._pass(binary)  # fine-tune: L_CLS + aux_weight * L_GEN
        return self.loss(self.head(self.features(states)), y) - self.aux_weight * log_p.mean()

    # --- capabilities -------------------------------------------------------------------------
    @torch.inference_mode()
    def log_likelihood(self, x: Tensor) -> Tensor:
        """Exact log p(x) in nats under the no-class start token, per ``likelihood_protocol``."""
        binary = fixed_binarization(x, self.eval_seed)
        return torch.cat([self._pass(b)[0].sum(1) for b in binary.split(128)])

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        """max-softmax (declared) and energy of the classifier, and -log p(x) of the transformer it keeps."""
        return {**super().score_anomalies(x), "nll": -self.log_likelihood(x)}
