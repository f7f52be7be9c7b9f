"""GPT over pixel patches: the decoder-only transformer of language models, trained by next-token prediction.

Model (ImageGPT, Chen et al. 2020, on binarized pixels; network: models/nets/gpt.py, GPT-2 of
Radford et al. 2019): a binary image b is 196 tokens s_1..s_T, its 2x2 patches in raster order (16
symbols, lossless), read after a start token c that names the class y, or "no class":

    log p(b | c) = sum_t log softmax(f(c, s_<t))[s_t],   c in {class 0..9, no class},  p(y) uniform

exact and normalised by the chain rule. Trained with the class replaced by "no class" with probability
``class_dropout``, one network gives p(b|y) and an unconditional p(b). Data follow the binarized-MNIST
protocol of the VAE and the PixelCNN (dgbench/binarize.py): dynamic binarization in training, one fixed
seeded binarization at test, so its nats compare with theirs (the patch tokenisation loses nothing).

Capabilities: likelihood and Bayes-rule classification are exact, 10 passes (one per class); sampling and
imputation are sequential, one token per step with a key-value cache (196 steps of one token each).
Missing pixels are exact to marginalise when the tokens holding them are a suffix (see ``log_px_given_y``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from dgbench import DGBenchError
from dgbench.attribution import decision, pick
from dgbench.binarize import dynamic_binarization, fixed_binarization
from dgbench.complexity import context_code_length
from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory
from models.nets.gpt import (
    PATCH,
    SYMBOLS,
    DecoderTransformer,
    agreeing,
    detokenize,
    from_patches,
    symbol_bits,
    to_patches,
    tokenize,
)

NUM_CLASSES = 10
NO_CLASS = SYMBOLS + NUM_CLASSES  # start tokens: SYMBOLS + y for class y, then this one for p(x)
CHUNK = 128  # images per forward pass at inference


def next_token_log_probs(
    net: DecoderTransformer, start: Tensor, tokens: Tensor, states: list[Tensor] | None = None
) -> Tensor:
    """log p(s_t = . | c, s_<t) for every position, (N, T, 16) float32: one teacher-forced pass over the
    start tokens (N, 1) and tokens[:, :-1]; ``states`` receives every block's output (DecoderTransformer)."""
    logits, _ = net(torch.cat([start, tokens[:, :-1]], 1), states=states)
    return logits.float().log_softmax(-1)


class GPT(FamilyModule):
    """Capabilities: classify (Bayes rule), sample, likelihood, score_anomalies, impute, explain."""

    family = "gpt"
    kind = "generative"
    monitor = ("val/loss", "min")
    # Declared before any OOD test set was scored: the quantity the family models, -log p(x) (class
    # marginal). The unconditional start token's -log p(x) and the complexity-corrected score (Serrà et
    # al. 2020) are reported beside it, never instead.
    primary_score = "nll"

    def __init__(
        self,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        class_dropout: float = 0.1,
        image_size: int = 28,
        eval_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if image_size % PATCH or width % heads or not 0 <= class_dropout <= 1:
            raise DGBenchError(
                f"image_size={image_size} must be even, width={width} a multiple of heads={heads}, "
                f"and class_dropout={class_dropout} in [0, 1]"
            )
        self.image_size, self.eval_seed, self.class_dropout = image_size, eval_seed, class_dropout
        self.length = (image_size // PATCH) ** 2
        self.net = DecoderTransformer(NO_CLASS + 1, SYMBOLS, self.length, width, depth, heads)
        self.log_prior = -math.log(NUM_CLASSES)  # log p(y), uniform
        self.test_acc = MulticlassAccuracy(NUM_CLASSES, average="micro")

    @property
    def likelihood_protocol(self) -> str:
        return (
            "binarized images (dynamic binarization in training, one fixed seeded binarization at test), "
            "2x2 binary patches as 16-symbol tokens in raster order (lossless), exact log p(x|y) by the chain rule, "
            f"log p(x) = logsumexp_y log p(x|y) + log 1/{NUM_CLASSES}, nats"
        )

    # --- the model -------------------------------------------------------------------------
    def start(self, labels: Tensor) -> Tensor:
        """Start tokens (N, 1): the class, or ``NO_CLASS`` where the label is -1."""
        return torch.where(labels < 0, NO_CLASS, SYMBOLS + labels)[:, None]

    def token_log_probs(self, tokens: Tensor, labels: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(token t's observed pixels | s_<t, c) per token (N, T), float32 (teacher forcing, one pass).

        Token t's factor sums p(s | s_<t, c) over the symbols s that agree with its observed pixels: exact
        marginalisation of its own missing pixels; a token with none observed contributes exactly 0.
        """
        log_p = next_token_log_probs(self.net, self.start(labels), tokens)  # (N, T, 16)
        if observed is None:
            return log_p.gather(-1, tokens[..., None])[..., 0]
        known = to_patches(observed)  # (N, T, 4)
        return log_p.masked_fill(~agreeing(tokens, known), -math.inf).logsumexp(-1) * known.any(-1)

    def inputs(self, x: Tensor, observed: Tensor | None) -> Tensor:
        """Tokens of the fixed binarization, unobserved pixels read as 0 (their value is never used)."""
        binary = fixed_binarization(x, self.eval_seed)
        return tokenize(binary if observed is None else binary * observed)

    def per_class_terms(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Per-token terms log p(token t | s_<t, y) for every class, (N, 10, T) nats: one pass per class."""
        tokens, out = self.inputs(x, observed), []
        masks = [None] * math.ceil(len(x) / CHUNK) if observed is None else observed.bool().split(CHUNK)
        for s, m in zip(tokens.split(CHUNK), masks, strict=True):
            labels = [torch.full((len(s),), y, device=s.device) for y in range(NUM_CLASSES)]
            out.append(torch.stack([self.token_log_probs(s, y, m) for y in labels], 1))
        return torch.cat(out)

    def log_px_given_y(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(b_obs | y) for every class, (N, 10) nats, on the fixed binarization.

        Exact with every pixel observed, and when the tokens holding missing pixels form a raster-order suffix
        whose only partly observed token is its first (its missing pixels are summed out exactly). Otherwise an
        approximation: a missing pixel in an earlier token is read as 0 (background) by the tokens after it.
        """
        return self.per_class_terms(x, observed).sum(2)

    def negative_log_likelihood(self, binary: Tensor, labels: Tensor) -> Tensor:
        """-log p(b | c) per image: the sum of the tokens' cross-entropies (nats)."""
        return -self.token_log_probs(tokenize(binary), labels).sum(1)

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        dropped = torch.rand(len(y), device=y.device) < self.class_dropout
        loss = self.negative_log_likelihood(dynamic_binarization(x), torch.where(dropped, -1, y)).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss = self.negative_log_likelihood(fixed_binarization(x, self.eval_seed), y).mean()
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)  # -log p(b | y) in nats, true label

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        log_joint = self.log_px_given_y(x) + self.log_prior
        self.test_acc(log_joint, y)
        nll = -torch.logsumexp(log_joint, dim=1).mean()
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/nll", nll, on_epoch=True)  # nats, exact
        self.log("test/bpd", nll / (x[0].numel() * math.log(2)), on_epoch=True)

    # --- sequential generation ----------------------------------------------------------------
    def generate(
        self, labels: Tensor, tokens: Tensor, observed: Tensor, uniforms: Tensor, cached: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Draw, in raster order, every token with a missing pixel from p(s_t | s_<t, c) restricted to the
        symbols that agree with its observed pixels (observed pixels clamped).

        ``tokens`` (N, T) hold the observed pixels (missing ones 0), ``observed`` (N, T, 4) which pixels are
        known, ``uniforms`` (N or 1, T) decide the draws (inverse CDF). Returns the tokens and, per pixel
        (N, T, 4), the probability that it is 1 given the token's past and observed pixels. With ``cached``
        each step feeds one token through the key-value cache; without, the whole prefix is recomputed.
        """
        tokens, todo = tokens.clone(), ~observed.all(-1)
        probabilities = torch.zeros(observed.shape, device=tokens.device)
        every_symbol = symbol_bits(torch.arange(SYMBOLS, device=tokens.device)).float()  # (16, 4)
        uniforms, cache, start = uniforms.expand(len(tokens), -1), None, self.start(labels)
        for t in range(self.length):
            if cached:
                logits, cache = self.net(start if t == 0 else tokens[:, t - 1 : t], cache)
            else:
                logits, _ = self.net(torch.cat([start, tokens[:, :t]], 1))
            p = logits[:, -1].float().softmax(-1) * agreeing(tokens[:, t], observed[:, t])  # (N, 16)
            cdf = p.cumsum(-1)  # a threshold in (0, total]: never a symbol of probability 0
            drawn = (cdf < (1 - uniforms[:, t, None]) * cdf[:, -1:]).sum(-1).clamp(max=SYMBOLS - 1)
            tokens[:, t] = torch.where(todo[:, t], drawn, tokens[:, t])
            probabilities[:, t] = (p @ every_symbol) / cdf[:, -1:]
        return tokens, probabilities

    # --- capabilities -------------------------------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y | b_obs) by Bayes' rule (uniform p(y)) on the fixed binarization; see ``log_px_given_y``."""
        return torch.log_softmax(self.log_px_given_y(x, None if observed is None else observed.bool()), dim=1)

    @torch.inference_mode()
    def log_likelihood(self, x: Tensor) -> Tensor:
        """Exact log p(x) in nats, per ``likelihood_protocol``."""
        return torch.logsumexp(self.log_px_given_y(x) + self.log_prior, dim=1)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        binary = fixed_binarization(x, self.eval_seed)
        nll = -self.log_likelihood(x)
        no_class = [torch.full((len(b),), -1, device=b.device) for b in binary.split(CHUNK)]
        unconditional = torch.cat([self.negative_log_likelihood(b, c) for b, c in zip(binary.split(CHUNK), no_class)])
        complexity = context_code_length(binary) * math.log(2)  # bits -> nats (dgbench/complexity.py)
        return {"nll": nll, "nll_unconditional": unconditional, "complexity_corrected": nll - complexity}

    @torch.inference_mode()
    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """Fill missing pixels by ancestral sampling over tokens, observed pixels clamped.

        y ~ p(y | b_obs) (``classify``), then in raster order each token with a missing pixel is drawn from
        p(s_t | s_<t, y) restricted to the symbols that agree with its own observed pixels; its past holds the
        observed and already drawn pixels. A missing pixel gets the probability that it is 1 under that
        restricted distribution (a gray level, lower variance than the draw). For missing tokens that are a
        raster-order suffix this is exact ancestral sampling from p(b_missing | b_obs); for scattered holes a
        token ignores the observed pixels of the tokens after it (an approximation). Seeded draws (``eval_seed``),
        the same uniforms for every image, so results do not depend on batching. 196 one-token steps.
        """
        observed = observed.bool()
        uniforms = torch.rand(1, self.length + 1, generator=torch.Generator().manual_seed(self.eval_seed))
        uniforms = uniforms.to(x.device)
        posterior = self.classify(x, observed).exp().cumsum(1)
        labels = (posterior < uniforms[:, -1:] * posterior[:, -1:]).sum(1).clamp(max=NUM_CLASSES - 1)
        _, probabilities = self.generate(labels, self.inputs(x, observed), to_patches(observed), uniforms[:, :-1])
        return torch.where(observed, x, from_patches(probabilities, self.image_size).to(x.dtype))

    @torch.inference_mode()
    def sample(
        self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None, cached: bool = True
    ) -> Tensor:
        """Binary images drawn token by token (196 steps); uniforms drawn on the CPU with ``generator``.
        ``cached=False`` recomputes the prefix at each step (the same images, for measuring the cache)."""
        labels = torch.arange(n) % NUM_CLASSES if labels is None else labels
        if len(labels) != n:
            raise DGBenchError(f"sample(n={n}) got {len(labels)} labels: pass one label per image")
        uniforms = torch.rand(n, self.length, generator=generator).to(self.device)
        tokens = torch.zeros(n, self.length, dtype=torch.long, device=self.device)
        nothing = torch.zeros(n, self.length, PATCH * PATCH, dtype=torch.bool, device=self.device)
        tokens, _ = self.generate(labels.to(self.device), tokens, nothing, uniforms, cached)
        return detokenize(tokens, self.image_size)

    explanation_method = (
        "exact: the per-token terms log p(s_t|s_<t, ŷ) - log p(s_t|s_<t, y') of the chain rule over 2x2 patch "
        "tokens (observed pixels only, each token's term spread evenly over its observed pixels), on the fixed "
        "binarization that classify scores, y' the runner-up; they sum to the log-odds log p(ŷ|b_obs)/p(y'|b_obs)"
    )

    @property
    def decision_parameters(self) -> int:
        """Every parameter: each conditional reads the whole network."""
        return self.num_parameters

    @torch.inference_mode()
    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """Per-token log-probability differences (``explanation_method``); 10 passes, as classify."""
        observed = torch.ones_like(x, dtype=torch.bool) if observed is None else observed.bool()
        terms = self.per_class_terms(x, observed)  # (N, 10, T)
        predicted, runner_up = decision(terms.sum(2))
        difference = pick(terms, predicted) - pick(terms, runner_up)  # (N, T)
        bits = to_patches(observed).float()  # (N, T, 4)
        share = bits / bits.sum(-1, keepdim=True).clamp(min=1)
        return from_patches(difference[..., None] * share, self.image_size).float()
