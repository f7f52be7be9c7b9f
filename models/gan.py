"""Class-conditional GAN with an f-AnoGAN encoder: the implicit generative family.

Recipe, chosen for stability without tuning: a spectrally normalised projection discriminator
(Miyato et al. 2018; Miyato & Koyama 2018) trained with the hinge loss (Lim & Ye 2017), one D
step per G step with Adam(beta1 = 0.5, beta2 = 0.999), a setting SN-GAN found stable, and D
learning twice as fast as G (TTUR, Heusel et al. 2017). Spectral norm bounds D's Lipschitz
constant, so no gradient penalty is needed, and projection conditioning makes D judge the
*pairing* of image and class, which is what drives class-faithful samples. Samples come from an
exponential moving average of the generator's weights (Yazici et al. 2019).

Mode collapse. With conditional instance norm and the plain hinge G loss, gan_cpu drew one digit
per class (recall 0.04, pixel spread within a class 0.33 of the data's). Measured on that
generator, z is not lost in the normalisation after the latent projection (z's share of the 7x7
maps' variation across samples of one class is 0.30 before it and 0.30 after) but in the first
up-convolution, which maps it to 0.017: G learns to discard z, which nothing in the hinge loss
penalises. Two changes address it: conditional BatchNorm in G (Miyato & Koyama 2018's choice;
G_ema keeps running statistics of its own, see ``_update_ema``) and the mode-seeking term of
Mao et al. 2019 (``mode_seeking``), which penalises two latents of one class mapping to one image.

Classification is N/A: a GAN defines p(x|y) only implicitly, through a sampler, and gives no
likelihood with which to apply Bayes' rule. Reading a class off the discriminator would be a
discriminative head inside a generative model, so this family does not claim ``classify``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dgbench import DGBenchError
from dgbench.family import FamilyModule, OptimizerFactory
from models.nets.ema import EMA
from models.nets.gan import Discriminator, Encoder, Generator

NUM_CLASSES = 10
CHUNK = 500  # images per forward pass in the capability methods (bounds memory, not results)


class ConditionalGAN(FamilyModule):
    """Capabilities: sample (EMA generator), score_anomalies (discriminator, inversion), impute.

    One training batch runs three phases with Lightning 2 manual optimisation, each toggling the
    ``requires_grad`` of the other networks off: D (hinge loss), G (every ``n_critic`` batches,
    followed by the EMA update) and E (every ``encoder_every`` batches), the encoder that inverts
    the EMA generator. Lightning's ``global_step`` counts every optimiser step, so it grows by up
    to 3 per batch.
    """

    family = "gan"
    kind = "generative"
    # A GAN has no validation loss. The f-AnoGAN residual of held-out digits measures whether
    # generator + encoder can reproduce real data: it rises if G drops modes or degrades.
    monitor = ("val/inversion_error", "min")
    # Declared before any OOD test set was scored: a GAN has no likelihood, and f-AnoGAN's inversion
    # residual (Schlegl et al. 2019) is the published GAN anomaly score; the discriminator is reported beside it.
    primary_score = "inversion"

    def __init__(
        self,
        latent_dim: int = 64,
        g_width: int = 32,
        d_width: int = 32,
        e_width: int = 32,
        lr_g: float = 2e-4,
        lr_d: float = 4e-4,
        lr_e: float = 5e-4,
        n_critic: int = 1,
        encoder_every: int = 1,
        ema_decay: float = 0.999,
        g_norm: str = "instance",
        mode_seeking: float = 0.0,
        feature_weight: float = 1.0,
        impute_steps: int = 100,
        impute_lr: float = 0.05,
        impute_classes: int = 2,
        impute_lambda: float = 0.003,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer, None)
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.automatic_optimization = False
        self.generator = Generator(latent_dim, g_width, NUM_CLASSES, g_norm)
        self.discriminator = Discriminator(d_width, NUM_CLASSES)
        self.encoder = Encoder(latent_dim, e_width)
        self.ema = EMA(self.generator, ema_decay)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        if self.optimizer_factory is None:
            raise DGBenchError("ConditionalGAN has no optimizer: set model.optimizer in the config")
        hp = self.hparams
        nets = ((self.generator, hp.lr_g), (self.discriminator, hp.lr_d), (self.encoder, hp.lr_e))
        return [self.optimizer_factory(params=net.parameters(), lr=lr) for net, lr in nets]

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.hparams.latent_dim, device=self.device)

    def _update(self, optimizer: Any, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()

    def inversion_residual(self, x: Tensor, y: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-image f-AnoGAN residuals of x ~ G_ema(E(x), y) (Schlegl et al. 2019).

        Returns the pixel residual ||x - G(E(x))||^2 / n and the discriminator-feature residual
        ||f(x) - f(G(E(x)))||^2 / n_f; their sum (feature term weighted by kappa =
        ``feature_weight``) is both the izi_f training loss and the anomaly score A(x). ``y`` and
        ``z`` may hold k rows per image (class-major, row c * N + i), giving (k * N,) residuals.
        """
        x_hat = self.ema(self.encoder(x) if z is None else z, y).float().flatten(1)
        k = len(x_hat) // len(x)
        f_x = self.discriminator.features(x).float().flatten(1).repeat(k, 1)  # once per image
        f_hat = self.discriminator.features(x_hat.view(-1, *x.shape[1:])).float().flatten(1)
        pixel = (x_hat - x.float().flatten(1).repeat(k, 1)).pow(2).mean(1)
        return pixel, (f_x - f_hat).pow(2).mean(1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        opt_g, opt_d, opt_e = self.optimizers()
        z = self._noise(len(x))  # fakes share the real batch's labels, so D sees matched classes

        # Discriminator, hinge loss: E[max(0, 1 - D(x, y))] + E[max(0, 1 + D(G(z, y), y))].
        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generator(z, y)
            real_score, fake_score = self.discriminator(torch.cat([x, fake]), torch.cat([y, y])).float().chunk(2)
            d_loss = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
            self._update(opt_d, d_loss)

        # Generator, hinge loss: -E[D(G(z, y), y)]; then the EMA, whose decay warms up as
        # min(decay, (1 + t) / (10 + t)), t = global_step, so the initial weights fade quickly
        # (gan_cpu ends near 0.998: its EMA averages over roughly the last 200 batches).
        if (batch_idx + 1) % self.hparams.n_critic == 0:
            with self.toggled_optimizer(opt_g):
                if self.hparams.mode_seeking > 0:
                    g_loss = self._mode_seeking_loss(z, y)
                else:
                    g_loss = -self.discriminator(self.generator(z, y), y).float().mean()
                self._update(opt_g, g_loss)
            step = self.trainer.global_step
            self.ema.decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
            self._update_ema(z, y)
            self.log("train/g_loss", g_loss)

        # Encoder, trained alongside rather than after the GAN (f-AnoGAN trains it afterwards with
        # G and D frozen; here they are frozen for this loss only, and E tracks G_ema as it
        # settles, so one run yields all three networks): izi_f on real digits, plus the latent
        # cycle ||E(G_ema(z, y)) - z||^2 (f-AnoGAN's ziz) on the generator's own samples. It costs
        # more than D and G together, so ``encoder_every`` > 1 trains it on fewer batches.
        if (batch_idx + 1) % self.hparams.encoder_every == 0:
            with self.toggled_optimizer(opt_e):
                pixel, feature = self.inversion_residual(x, y)
                with torch.no_grad():
                    generated = self.ema(z, y)
                latent = F.mse_loss(self.encoder(generated).float(), z)
                e_loss = (pixel + self.hparams.feature_weight * feature).mean() + latent
                self._update(opt_e, e_loss)
            self.log("train/e_loss", e_loss)

        self.log("train/d_loss", d_loss, prog_bar=True)
        self.log_dict({"train/d_real": real_score.mean(), "train/d_fake": fake_score.mean()})

    def _mode_seeking_loss(self, z: Tensor, y: Tensor) -> Tensor:
        """Hinge G loss on two latents per label plus the mode-seeking term (Mao et al. 2019, eq. 3).

        L_ms = 1 / (mean|G(z1, y) - G(z2, y)| / mean|z1 - z2| + eps), images on DCGAN's [-1, 1]
        scale as in the paper, weighted by ``mode_seeking``: it grows as two latents of one class
        map to the same image, which is exactly the collapse a class-conditional G falls into.
        """
        z2 = self._noise(len(z))
        fake = self.generator(torch.cat([z, z2]), torch.cat([y, y]))
        adversarial = -self.discriminator(fake, torch.cat([y, y])).float().mean()
        first, second = (2 * fake.float()).chunk(2)
        ratio = (first - second).abs().mean() / (z - z2).abs().mean()
        return adversarial + self.hparams.mode_seeking / (ratio + 1e-5)

    @torch.no_grad()
    def _update_ema(self, z: Tensor, y: Tensor) -> None:
        """Average G's weights into G_ema, then give G_ema BatchNorm statistics of its own.

        ``EMA.update`` copies G's running statistics, but those describe G's activations, not the
        averaged weights' (which lag G by ~1 / (1 - decay) steps): G_ema keeps its own statistics
        instead, refreshed by one train-mode forward pass of this batch's (z, y) (BatchNorm
        momentum 0.1, so they average the last ~10 batches). Sampling then runs G_ema in eval
        mode, every image independent of the others in its batch.
        """
        averaged = self.ema.averaged
        own = [b.clone() for b in averaged.buffers()]
        self.ema.update(self.generator)
        for buffer, mine in zip(averaged.buffers(), own):
            buffer.copy_(mine)
        if own:
            averaged.train()
            averaged(z, y)
            averaged.eval()

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        pixel, feature = self.inversion_residual(x, y)
        self.log(f"{stage}/inversion_error", (pixel + self.hparams.feature_weight * feature).mean(), prog_bar=True)
        self.log(f"{stage}/inversion_mse", pixel.mean())
        # Share of held-out real digits D accepts (score > 0, the hinge's decision boundary).
        self.log(f"{stage}/d_real_acc", (self.discriminator(x, y) > 0).float().mean())

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # --- capabilities -----------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Images from the EMA generator; labels default to the balanced cycle 0, 1, ..., 9, 0, ..."""
        z = torch.randn(n, self.hparams.latent_dim, generator=generator).to(self.device)
        labels = (torch.arange(n) % NUM_CLASSES if labels is None else labels).to(self.device)
        return torch.cat([self.ema(zc, yc).float() for zc, yc in zip(z.split(CHUNK), labels.split(CHUNK))])

    @torch.no_grad()  # not inference_mode: D's spectral-norm buffers must stay usable by autograd
    def score_anomalies(self, x: Tensor) -> dict[str, Tensor]:
        """Two scores, higher = more anomalous; the label is unknown, so both take the best class.

        ``discriminator``: -max_y D(x, y), how unreal D finds x under its most plausible class.
        ``inversion``: the f-AnoGAN score A(x), minimised over the class given to G_ema.
        """
        kappa, scores = self.hparams.feature_weight, {"discriminator": [], "inversion": []}
        classes = torch.arange(NUM_CLASSES, device=self.device)
        for chunk in x.split(CHUNK):
            n = len(chunk)
            scores["discriminator"].append(-self.discriminator.all_classes(chunk).float().amax(dim=1))
            z = self.encoder(chunk).repeat(NUM_CLASSES, 1)  # class-major: row c * n + i
            pixel, feature = self.inversion_residual(chunk, classes.repeat_interleave(n), z)
            scores["inversion"].append((pixel + kappa * feature).view(NUM_CLASSES, n).amin(dim=0))
        return {name: torch.cat(values) for name, values in scores.items()}

    def impute(self, x: Tensor, observed: Tensor) -> Tensor:
        """Semantic inpainting by latent optimisation (Yeh et al. 2017); observed pixels unchanged."""
        filled = torch.cat([self.fit_latents(xc, mc)[0] for xc, mc in zip(x.split(CHUNK), observed.split(CHUNK))])
        return torch.where(observed, x, filled.to(x.dtype))

    def fit_latents(self, x: Tensor, observed: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """The G_ema image that best matches the observed pixels, and its contextual loss (N,).

        Yeh et al. 2017, eq. 5: z* = argmin_z L_contextual(z) + lambda L_perceptual(z), with the
        contextual loss the L1 distance on observed pixels (uniform weights rather than the paper's
        hole-proximity weights) and, for a hinge discriminator, L_perceptual = -D(G(z), y). A
        Gaussian prior term ||z||^2 / 2d plays the role of the paper's clipping of z. The class is
        unknown: z starts at E(zero-filled x) for each of the ``impute_classes`` classes that fit
        best from there, and the best fit of all candidates wins.
        """
        hp = self.hparams
        steps = hp.impute_steps if steps is None else steps
        # Gradients w.r.t. z are needed even if the caller runs under inference_mode/no_grad.
        with torch.inference_mode(False), torch.enable_grad():
            x, mask = x.clone().float(), observed.clone().float()
            n, k = len(x), min(hp.impute_classes, NUM_CLASSES)

            def contextual(images: Tensor, repeats: int) -> Tensor:
                m = mask.repeat(repeats, 1, 1, 1)
                error = ((images.float() - x.repeat(repeats, 1, 1, 1)).abs() * m).flatten(1).sum(1)
                return error / m.flatten(1).sum(1).clamp_min(1)

            with torch.no_grad():
                z0 = self.encoder(x * mask)
                every_class = torch.arange(NUM_CLASSES, device=x.device).repeat_interleave(n)
                fit = contextual(self.ema(z0.repeat(NUM_CLASSES, 1), every_class), NUM_CLASSES)
                labels = fit.view(NUM_CLASSES, n).topk(k, dim=0, largest=False).indices.flatten()  # class-major
            z = z0.repeat(k, 1).requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=hp.impute_lr)
            for _ in range(steps):
                images = self.ema(z, labels)
                perceptual = -self.discriminator(images, labels).float()
                prior = 0.5 * z.float().pow(2).mean(dim=1)
                loss = contextual(images, k) + hp.impute_lambda * (perceptual + prior)
                # autograd.grad, not backward: nothing accumulates in the networks' .grad fields.
                (z.grad,) = torch.autograd.grad(loss.sum(), [z])
                optimizer.step()
            with torch.no_grad():
                images = self.ema(z, labels).float()
                loss = contextual(images, k).view(k, n)
                best = loss.argmin(dim=0)
                pick = torch.arange(n, device=x.device)
                return images.view(k, n, *images.shape[1:])[best, pick], loss[best, pick]
