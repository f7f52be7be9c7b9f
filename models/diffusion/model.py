"""Class-conditional DDPM (Ho et al. 2020) with classifier-free guidance: the diffusion family.

Training is the textbook L_simple: noise an image to a random timestep and regress the noise.
Everything else is inference on the EMA network, through the schedule in
:mod:`models.diffusion.schedule`: DDIM / DDPM sampling with guidance, the variational bound, the
diffusion classifier, reconstruction-based anomaly scores and RePaint inpainting. Images arrive
in [0, 1] and are mapped to [-1, 1], the range the schedule's clipping assumes.

Every capability that is not given a generator draws its noise from a CPU generator with a fixed
seed, so scores are deterministic and the same (t, ε) are used for every image batch and class.
The cost of each capability, in network evaluations per image, is listed in configs/model/diffusion.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench import DGBenchError
from dgbench.attribution import decision, pick
from dgbench.family import FamilyModule, OptimizerFactory, SchedulerFactory
from dgbench.runtime import fast_bf16
from models.diffusion import classifier
from models.diffusion import sampling as inference
from models.diffusion.schedule import NoiseSchedule
from models.nets.ema import EMA
from models.nets.unet import UNet

NUM_CLASSES, PIXELS, EVAL_SEED = 10, 28 * 28, 0
CPU_ROWS = 128  # network rows per inference call on a CPU (see DiffusionModel._rows)


class DiffusionModel(FamilyModule):
    """Capabilities: classify, sample, score_anomalies, likelihood, impute."""

    family = "diffusion"
    kind = "generative"
    monitor = ("val/loss", "min")
    # The class-marginal bound on -log p(x) (results/protocol.md), the likelihood of the model the family
    # trains; the unconditional branch's bound (trained on the 10 % of steps without a label) and the
    # reconstruction score (Graham et al. 2023) are reported beside it.
    primary_score = "nll"
    # ~100-250 network passes per image and suite: a default evaluation stays within ~15 min on 2 CPU cores.
    first_look_budget = {
        "classification": 200,
        "calibration": 100,
        "ood": 100,
        "missing_features": 40,
        "sample_quality": 200,
        "cost": 50,
        "interpretability": 10,
    }
    uncalibrated_reason = (
        "the diffusion classifier's class scores are minus unweighted squared noise errors (Li et al. 2023): "
        "their softmax has an arbitrary temperature, so its raw NLL and ECE describe nothing (the evaluation "
        "reports them after a temperature is fitted on validation images)"
    )

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 64),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (2,),
        dropout: float = 0.1,
        num_timesteps: int = 1000,
        schedule: str = "cosine",
        label_dropout: float = 0.1,
        ema_decay: float = 0.999,
        sampler: str = "ddim",
        sample_steps: int = 50,
        eta: float = 0.0,
        guidance_scale: float = 1.0,
        likelihood_timesteps: int = 100,
        likelihood_spacing: str = "uniform",
        classify_pairs: int = 20,
        classify_first_pairs: int = 5,
        classify_keep: int = 2,
        recon_levels: Sequence[float] = (0.3, 0.5),
        recon_steps: int = 10,
        impute_steps: int = 50,
        impute_resample: int = 5,
        eval_batch_size: int | None = None,
        bf16_inference: bool = True,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        if sampler not in inference.SAMPLERS:
            raise DGBenchError(f"model.sampler={sampler!r}: choose one of {', '.join(inference.SAMPLERS)}")
        self.unet = UNet(channels, num_res_blocks, attention_levels, NUM_CLASSES, dropout)
        self.ema = EMA(self.unet, ema_decay)
        self.schedule = NoiseSchedule(num_timesteps, schedule)
        self.null_class = NUM_CLASSES
        # Inference options are plain attributes so evaluation can change them on a loaded model.
        self.sampler, self.sample_steps, self.eta, self.guidance_scale = sampler, sample_steps, eta, guidance_scale
        self.likelihood_timesteps, self.likelihood_spacing = likelihood_timesteps, likelihood_spacing
        self.classify_pairs = classify_pairs
        self.classify_first_pairs, self.classify_keep = classify_first_pairs, classify_keep
        self.recon_levels, self.recon_steps = list(recon_levels), recon_steps
        self.impute_steps, self.impute_resample, self.eval_batch_size = impute_steps, impute_resample, eval_batch_size
        self.bf16_inference = bf16_inference

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())  # the EMA copy is not counted twice

    # --- training: L_simple (Ho et al. eq. 14) ----------------------------------------------
    def _loss(self, x: Tensor, y: Tensor, t: Tensor, noise: Tensor, network: torch.nn.Module) -> Tensor:
        """E ||ε - ε_θ(√ᾱ_t x_0 + √(1 - ᾱ_t) ε, t, y)||², the unweighted ε-regression."""
        x_t = self.schedule.add_noise(x * 2 - 1, noise, t)
        return F.mse_loss(network(x_t, t, y).float(), noise.float())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        t = torch.randint(0, self.schedule.num_timesteps, (len(x),), device=x.device)
        # Label dropout trains the unconditional model ε_θ(x_t, t, ∅) in the same network, which
        # classifier-free guidance needs (Ho & Salimans 2022, Algorithm 1).
        drop = torch.rand(len(x), device=x.device) < self.hparams.label_dropout
        loss = self._loss(x, torch.where(drop, self.null_class, y), t, torch.randn_like(x), self.unet)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        # EMA warm-up (decay (1+n)/(10+n), as in TensorFlow's ExponentialMovingAverage): with a
        # fixed 0.999 the average of a short run would still remember the random initialisation.
        step = self.global_step
        self.ema.decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
        self.ema.update(self.unet)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # Fixed (t, ε) per batch index: epochs are compared on the same draws, so val/loss moves
        # only when the EMA network does, which makes it a usable checkpoint criterion.
        x, y = batch
        generator = torch.Generator().manual_seed(batch_idx)
        t = torch.randint(0, self.schedule.num_timesteps, (len(x),), generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        stage = "test" if self.trainer.testing else "val"
        self.log(f"{stage}/loss", self._loss(x, y, t, noise, self.ema.averaged), on_epoch=True, prog_bar=stage == "val")

    test_step = validation_step  # the same fixed-draw loss, logged as test/loss

    # --- shared inference helpers ------------------------------------------------------------
    def _eps(
        self, x_t: Tensor, t: int | Tensor, labels: Tensor | None, guidance_scale: float = 0.0, exact: bool = False
    ) -> Tensor:
        """ε from the EMA network, in calls of at most ``eval_batch_size`` rows; labels None = null class.

        In bf16 autocast where the device computes bf16 natively (``bf16_inference``; ~2x on a CPU with
        AVX512-BF16, results/README.md) except with ``exact``: the likelihood is always fp32."""
        t = torch.as_tensor(t, device=x_t.device).expand(len(x_t))
        if labels is None:
            labels, guidance_scale = torch.full_like(t, self.null_class), 0.0
        rows = self._rows(x_t.device)
        size = max(1, rows // 2) if guidance_scale else rows
        chunks = zip(x_t.split(size), t.split(size), labels.split(size), strict=True)
        bf16 = self.bf16_inference and not exact and fast_bf16(x_t.device)
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([self._guided_eps(*chunk, guidance_scale) for chunk in chunks])

    def _null_eps(self, x_t: Tensor, t: int | Tensor, exact: bool = False) -> Tensor:
        return self._eps(x_t, t, None, exact=exact)  # the unconditional model: reconstruction, inpainting

    def _guided_eps(self, x_t: Tensor, t: Tensor, labels: Tensor, w: float) -> Tensor:
        """ε̃ = (1 + w) ε(x_t, y) - w ε(x_t, ∅) (Ho & Salimans 2022, eq. 6), both halves in one batch."""
        net = self.ema.averaged
        if w == 0:
            return net(x_t, t, labels).float()
        null = torch.full_like(labels, self.null_class)
        cond, uncond = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null])).float().chunk(2)
        return cond + w * (cond - uncond)

    def _randn(self, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        # Drawn on the CPU, then moved: a seed gives the same images on every device.
        return torch.randn(tuple(shape), generator=generator).to(self.device)

    def _rows(self, device: torch.device) -> int:
        """Rows per network call at inference: ``eval_batch_size``, or where that is None, by device:
        128 on a CPU, where a call's activations then stay in cache (per image 2.4x faster than calls of
        1000 rows in fp32, 1.4x in bf16: results/inference_rows.md), 1000 on a GPU."""
        return self.eval_batch_size or (CPU_ROWS if device.type == "cpu" else 1000)

    def _per_images(self, fn: Callable[..., Tensor], rows_per_image: int, *tensors: Tensor) -> Tensor:
        """``fn`` on slices of images small enough that their ``rows_per_image`` rows each fit a batch."""
        size = max(1, self._rows(tensors[0].device) // rows_per_image)
        return torch.cat([fn(*(x[i : i + size] for x in tensors)) for i in range(0, len(tensors[0]), size)])

    # --- sample -----------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Guided DDIM (η = ``eta``), DDPM ancestral or DPM-Solver++(2M) sampling in ``sample_steps`` steps.

        ``labels=None`` draws the classes uniformly with ``generator`` (MNIST is nearly balanced,
        so this samples p(x) as Σ_y p(y) p(x|y) with the same guidance as conditional samples).
        """
        if labels is None:
            labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
        labels = labels.to(self.device)
        eps = partial(self._eps, labels=labels, guidance_scale=self.guidance_scale)
        randn = partial(self._randn, generator=generator)
        if self.sampler not in inference.SAMPLERS:  # an attribute, so it can be changed after __init__
            raise DGBenchError(f"sampler={self.sampler!r}: choose one of {', '.join(inference.SAMPLERS)}")
        x_T = randn((n, 1, 28, 28))
        x = inference.sample(self.schedule, eps, x_T, self.sample_steps, self.sampler, self.eta, randn)
        return ((x + 1) / 2).clamp(0, 1)

    # --- likelihood: the class-marginal variational bound ------------------------------------
    @property
    def likelihood_protocol(self) -> str:
        return (
            "class-marginal DDPM variational bound: log p(x) >= log sum_y p(y) exp(-L_vlb(x|y)), p(y) = 1/10, "
            "with L_vlb(x|y) (Ho et al. 2020 eq. 5) of the class-conditional EMA model, in nats per image: "
            "exact prior term L_T, exact discretized-Gaussian decoder L_0 over the 256 8-bit levels (eq. 13), "
            f"and sum_t L_t estimated from {self.likelihood_timesteps} timesteps, one uniform draw from each of "
            f"{self.likelihood_spacing} strata, the same "
            f"(t, ε) for every class and image; reverse variance fixed to the posterior β̃_t; "
            f"{self.hparams.schedule} schedule, T={self.schedule.num_timesteps}; x in [0,1] is rounded to the "
            "k/255 grid (the representation it was trained on) and mapped to [-1,1]. Each class's term is an "
            "unbiased estimate of a lower bound on log p(x|y); bits/dim = -value / (784 ln 2)."
        )

    def _negative_vlbs(self, x: Tensor, classes: Sequence[int | None], terms: bool = False) -> Tensor:
        """-L_vlb(x | y) in nats, (n, len(classes)), y = None for the unconditional (null-class) model;
        every class and image gets the same stratified (t, ε) draws, from a fixed seed. ``terms``: the
        weighted terms instead, (n, len(classes), 1 + likelihood_timesteps), without the prior term."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        x0 = (x.float() * 255).round() / 127.5 - 1  # the 8-bit grid, in [-1, 1]
        t, weights = self.schedule.stratified_timesteps(self.likelihood_timesteps, generator, self.likelihood_spacing)
        noise = self._randn((len(t), *x.shape[1:]), generator)
        t, weights = t.to(self.device), weights.to(self.device)

        def bound(y: int | None, images: Tensor) -> Tensor:
            labels = None if y is None else torch.full((len(images) * len(t),), y, device=images.device)
            eps = partial(self._eps, labels=labels, exact=True)  # a likelihood: fp32 on every device
            rows = inference.vlb_terms(self.schedule, eps, images, t=t, weights=weights, noise=noise)
            return rows if terms else rows.sum(1) + self.schedule.prior_term(images)

        return torch.stack([self._per_images(partial(bound, y), len(t), x0) for y in classes], dim=1)

    @torch.inference_mode()
    def log_likelihood(self, x: Tensor) -> Tensor:
        """log Σ_y p(y) exp(-L_vlb(x|y)): a lower bound on log p(x), since each term bounds p(x|y)."""
        class_bounds = -self._negative_vlbs(x, range(NUM_CLASSES)).float()
        return torch.logsumexp(class_bounds - math.log(NUM_CLASSES), dim=1)

    @torch.inference_mode()
    def log_likelihood_standard_error(self, x: Tensor) -> Tensor:
        """Per-image standard error (nats) of ``log_likelihood``'s Monte-Carlo estimate over its timesteps:
        by the delta method, the class-marginal bound moves with Σ_y π_y B_y (π = its softmax weights over
        classes), whose per-timestep terms share (t, ε) across classes; their spread between adjacent
        strata gives the error (:func:`models.diffusion.sampling.collapsed_strata_se`)."""
        terms = -self._negative_vlbs(x, range(NUM_CLASSES), terms=True)  # (n, 10, 1 + k)
        weights = torch.softmax(terms.sum(2), dim=1)  # the prior term is the same for every class
        return inference.collapsed_strata_se((weights.unsqueeze(2) * terms).sum(1)).float()

    # --- classify: the diffusion classifier ------------------------------------------------
    @torch.inference_mode()
    def classify(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """log p(y|x) = log softmax_y -E_{t,ε} ||ε - ε_θ(x_t, t, y)||² (Li et al. 2023, eq. 4), with
        ``classify_pairs`` paired (t, ε) and adaptive class elimination (:mod:`models.diffusion.classifier`:
        ``classify_first_pairs`` for every class, all of them for the ``classify_keep`` best). The error
        is summed over observed pixels only; the network still sees the zero-filled image at missing
        pixels, so this marginalises the likelihood term but not the network's input (an approximation).
        The softmax's temperature is arbitrary (``uncalibrated_reason``): the evaluation fits one on
        validation images.
        """
        return F.log_softmax(-self._class_errors(x, observed).sum(2), dim=1)

    def _class_errors(self, x: Tensor, observed: Tensor | None) -> Tensor:
        """:func:`models.diffusion.classifier.class_errors` (n, 10, pixels), in batches of images."""
        P, first, keep = self.classify_pairs, self.classify_first_pairs, self.classify_keep
        t, noise = self._pair_draws(P, x.shape[1:])
        mask = torch.ones_like(x, dtype=torch.bool) if observed is None else observed.bool()
        errors = partial(
            classifier.class_errors, self.schedule, self._eps, t=t, noise=noise, first_pairs=first, keep=keep
        )
        return self._per_images(errors, classifier.passes_per_image(P, first, keep), x, mask)

    def _pair_draws(self, pairs: int, image_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
        """The classifier's (t, ε) pairs, shared by every image and class: t evenly spaced, ε seeded."""
        t = classifier.pair_timesteps(pairs, self.schedule.num_timesteps).to(self.device)
        return t, self._randn((pairs, *image_shape), torch.Generator().manual_seed(EVAL_SEED))

    @torch.inference_mode()
    def class_pair_errors(self, x: Tensor, pairs: int | None = None) -> Tensor:
        """(n, pairs, 10): ||ε - ε_θ(x_t, t, y)||² summed over pixels, for every class y at each of ``pairs``
        (default ``classify_pairs``) (t, ε) pairs drawn as :meth:`classify` draws them (Li et al. 2023, eq. 4),
        without class elimination. Any elimination setting (P, P₁, K of Li et al.'s Algorithm 2) replays
        from this one tensor: how benchmarks/probes/diffusion_elimination.py chose ``classify_first_pairs``
        and ``classify_keep`` on validation images."""
        pairs = pairs or self.classify_pairs
        t, noise = self._pair_draws(pairs, x.shape[1:])
        every = torch.arange(NUM_CLASSES, device=self.device).expand(len(x), NUM_CLASSES)

        def summed(images: Tensor, mask: Tensor, classes: Tensor) -> Tensor:
            return classifier.pair_errors(self.schedule, self._eps, images, mask, t, noise, classes).sum(3)

        return self._per_images(summed, pairs * NUM_CLASSES, x, torch.ones_like(x, dtype=torch.bool), every)

    # --- score anomalies ---------------------------------------------------------------------
    def _reconstruction_error(self, x: Tensor) -> Tensor:
        """DDPM-OOD (Graham et al. 2023): noise to t, denoise with unconditional DDIM, per-pixel MSE.

        Averaged over the levels ``recon_levels`` (fractions of T), with one fixed ε per level;
        in-distribution images come back close to themselves, unfamiliar ones are pulled towards
        the training manifold.
        """
        generator = torch.Generator().manual_seed(EVAL_SEED)
        x0, errors = x.float() * 2 - 1, []
        for level in self.recon_levels:
            start = round(level * (self.schedule.num_timesteps - 1))
            x_t = self.schedule.add_noise(x0, self._randn((1, *x.shape[1:]), generator), start)
            x_t = inference.denoise_from(self.schedule, self._null_eps, x_t, start, self.recon_steps)
            errors.append(((x_t - x0) / 2).pow(2).flatten(1).mean(1))  # in [0, 1] pixel units
        return torch.stack(errors).mean(0)

    @torch.inference_mode()
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        return {
            "nll": -self.log_likelihood(x),
            "vlb_bpd": self._negative_vlbs(x, [None])[:, 0].float() / (PIXELS * math.log(2)),  # unconditional
            "reconstruction": self._reconstruction_error(x),
        }

    # --- impute: RePaint ---------------------------------------------------------------------
    @torch.inference_mode()
    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """RePaint inpainting (:func:`models.diffusion.sampling.repaint`) with the unconditional model,
        ``impute_steps`` respaced steps x ``impute_resample``; observed pixels are returned as given."""
        known, randn = observed.bool(), partial(self._randn, generator=torch.Generator().manual_seed(EVAL_SEED))
        steps, resample = self.impute_steps, self.impute_resample
        x0 = inference.repaint(self.schedule, self._null_eps, x.float() * 2 - 1, known, steps, resample, randn)
        return torch.where(known, x, ((x0 + 1) / 2).clamp(0, 1).to(x.dtype))

    # --- explain: the diffusion classifier's score difference, per pixel ----------------------
    explanation_method = (
        "exact: the per-pixel terms of the diffusion classifier's score difference, mean over its pairs of "
        "(ε - ε_θ(x_t, t, y'))_i² - (ε - ε_θ(x_t, t, ŷ))_i², each class over the (t, ε) pairs classify gave it "
        "(class elimination included), observed pixels only, y' the runner-up; they sum to its log-odds "
        "log p(ŷ|x)/p(y'|x) (Li et al. 2023, eq. 4)"
    )

    @property
    def decision_parameters(self) -> int:
        """Every parameter of the (EMA) network: each ε prediction reads all of it."""
        return self.num_parameters

    @torch.inference_mode()
    def explain(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """``classify``'s computation kept per pixel (same pairs, same elimination, same cost)."""
        per_pixel = self._class_errors(x, observed)
        predicted, runner_up = decision(-per_pixel.sum(2))
        return (pick(per_pixel, runner_up) - pick(per_pixel, predicted)).view(x.shape)
