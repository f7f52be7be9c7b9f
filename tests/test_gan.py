"""GAN family: manual optimisation phases, EMA sampling, conditional samples, inversion.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from dgbench.data import MNISTDataModule, default_data_root
from dgbench.evaluation.suites.sample_quality import mean_pairwise_distance, within_class_diversity
from models.gan import ConditionalGAN
from tests.helpers import TINY_MODELS

TINY_GAN = TINY_MODELS["gan"]
TINY_NETS = dict(OmegaConf.from_dotlist([o for o in TINY_GAN if o.startswith("model.") and "=" in o]).model)
SHIPPED = OmegaConf.load(Path(__file__).parents[1] / "configs" / "model" / "gan.yaml")
TINY_NETS = {"g_norm": SHIPPED.g_norm, "mode_seeking": SHIPPED.mode_seeking, **TINY_NETS}  # the shipped recipe
NETWORKS = ("generator", "discriminator", "encoder")


def tiny_model(**overrides: object) -> ConditionalGAN:
    torch.manual_seed(0)
    adam = lambda params, lr: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))  # noqa: E731
    return ConditionalGAN(**{**TINY_NETS, "lr_g": 1e-3, "lr_d": 1e-3, "lr_e": 1e-3, **overrides}, optimizer=adam)


def tiny_trainer(tmp: Path, **kwargs: object) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return L.Trainer(default_root_dir=tmp, enable_model_summary=False, **{**options, **kwargs})


def tiny_data() -> MNISTDataModule:
    return MNISTDataModule(root=default_data_root(), batch_size=50, eval_batch_size=250, train_size=500, val_size=500)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> ConditionalGAN:
    """A tiny GAN after 40 batches."""
    model, trainer = tiny_model(), tiny_trainer(tmp_path_factory.mktemp("gan"), max_epochs=4, limit_val_batches=1)
    trainer.fit(model, datamodule=tiny_data())
    return model.eval()


def snapshot(tensors: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    return [None if t is None else t.detach().clone() for t in tensors]


def changed(before: list[torch.Tensor | None], after: list[torch.Tensor | None]) -> bool:
    return any((a is None) != (b is None) or (a is not None and not torch.equal(a, b)) for a, b in zip(before, after))


def test_default_labels_cycle_through_the_classes() -> None:
    model = tiny_model().eval()
    with torch.no_grad():  # perturb the zero-initialised class gains so labels matter at init
        for p in model.ema.averaged.parameters():
            p.add_(0.1 * torch.randn_like(p))
    images = model.sample(13, generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, model.sample(13, torch.arange(13) % 10, torch.Generator().manual_seed(1)))
    # Same noise, other labels: the label reaches the generator.
    assert not torch.allclose(
        images, model.sample(13, torch.zeros(13, dtype=torch.long), torch.Generator().manual_seed(1))
    )


def test_each_phase_updates_only_its_network(tmp_path: Path) -> None:
    """One batch = three optimiser steps; each must see gradients for, and change, one network only."""
    model = tiny_model()
    params = {name: list(getattr(model, name).parameters()) for name in NETWORKS}
    ema_before = snapshot(list(model.ema.parameters()))
    phases: list[tuple[set[str], set[str]]] = []  # (networks with new gradients, networks changed)
    state: dict[str, dict[str, list]] = {"grads": {n: [None] * len(p) for n, p in params.items()}}

    def pre_hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = {n: snapshot([q.grad for q in p]) for n, p in params.items()}
        state["new_grads"] = {n for n in NETWORKS if changed(state["grads"][n], grads[n])}
        state["grads"], state["weights"] = grads, {n: snapshot(p) for n, p in params.items()}

    def post_hook(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        moved = {n for n in NETWORKS if changed(state["weights"][n], snapshot(params[n]))}
        phases.append((state["new_grads"], moved))

    class Hooks(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            for optimizer in trainer.optimizers:
                optimizer.register_step_pre_hook(pre_hook)
                optimizer.register_step_post_hook(post_hook)

    tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0, callbacks=[Hooks()]).fit(model, datamodule=tiny_data())
    assert phases == [
        ({"discriminator"}, {"discriminator"}),
        ({"generator"}, {"generator"}),
        ({"encoder"}, {"encoder"}),
    ]
    assert changed(ema_before, snapshot(list(model.ema.parameters())))


def test_samples_come_from_the_ema_weights(trained: ConditionalGAN) -> None:
    model = trained
    raw, averaged = model.generator.parameters(), model.ema.averaged.parameters()
    assert any(not torch.allclose(a, b) for a, b in zip(raw, averaged))
    z = torch.randn(10, model.hparams.latent_dim, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(10)
    images = model.sample(10, labels, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(images, model.ema(z, labels))
        assert not torch.allclose(images, model.generator(z, labels), atol=1e-3)


def test_inversion_recovers_generated_images_better_than_random(trained: ConditionalGAN) -> None:
    model = trained
    generated = model.sample(50, generator=torch.Generator().manual_seed(4))
    # Random images with exactly the generated images' pixel values, shuffled: same intensity
    # statistics, none of the structure the generator can produce.
    shuffled = generated.flatten(1)[:, torch.randperm(784, generator=torch.Generator().manual_seed(5))].view_as(
        generated
    )
    encoder_scores = model.score_anomalies(torch.cat([generated, shuffled]))["inversion"]
    assert encoder_scores[:50].median() < encoder_scores[50:].median()
    # Latent optimisation (AnoGAN-style inversion) gets closer still, and again only on G's images.
    everything = torch.ones_like(generated, dtype=torch.bool)
    _, before = model.fit_latents(generated, everything, steps=0)
    _, after = model.fit_latents(generated, everything, steps=20)
    _, random_after = model.fit_latents(shuffled, everything, steps=20)
    assert after.mean() < before.mean()
    assert after.median() < random_after.median()


# --- within-class diversity: mode collapse inside a class ---------------------------------------
def real_digits(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    data = tiny_data()
    data.setup("fit")
    x, y = zip(*data.train_dataloader())
    return torch.cat(x)[:n], torch.cat(y)[:n]


def samples_by_class(model: ConditionalGAN, per_class: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(10).repeat_interleave(per_class)
    return model.sample(len(labels), labels, torch.Generator().manual_seed(6)), labels


def test_mean_pairwise_distance_matches_a_double_loop() -> None:
    x = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    pairs = [(x[i] - x[j]).flatten().norm().item() for i in range(7) for j in range(7) if i != j]
    assert mean_pairwise_distance(x) == pytest.approx(sum(pairs) / len(pairs), rel=1e-6)


def test_diversity_scores_one_digit_per_class_near_zero_and_real_digits_near_one() -> None:
    """A sampler that ignores z (one real digit per class) against one that draws real digits."""
    x, y = real_digits()
    reference, reference_labels, pool, pool_labels = x[:200], y[:200], x[200:], y[200:]
    collapsed = torch.stack([pool[pool_labels == c][0] for c in pool_labels])
    collapsed = collapsed + 0.01 * torch.randn(collapsed.shape, generator=torch.Generator().manual_seed(1))
    real = within_class_diversity(pool, pool_labels, reference, reference_labels)
    fake = within_class_diversity(collapsed, pool_labels, reference, reference_labels)
    assert 0.8 < real["diversity"] < 1.25 and real["diversity_min"] > 0.6
    assert fake["diversity"] < 0.1
    assert set(fake["diversity_per_class"]) == set(range(10))


def test_a_generator_that_ignores_z_fails_the_diversity_check(trained: ConditionalGAN) -> None:
    """The tiny trained GAN varies its samples with z; the same network with z's weights zeroed
    draws one image per class and must fail, pixel space, against real digits of each class."""
    x, y = real_digits()
    uses_z = within_class_diversity(*samples_by_class(trained), x, y)
    collapsed = ConditionalGAN(**trained.hparams)
    collapsed.load_state_dict(trained.state_dict())
    with torch.no_grad():  # fc reads cat([z, embed(y)]): the first latent_dim columns carry z
        collapsed.ema.averaged.fc.weight[:, : trained.hparams.latent_dim] = 0
    ignores_z = within_class_diversity(*samples_by_class(collapsed.eval()), x, y)
    # 40 tiny batches give blurry digits at ~0.3 of the data's spread; one image per class gives 0.
    assert ignores_z["diversity"] < 1e-4 < 0.15 < uses_z["diversity_min"]


def test_ema_generator_keeps_batchnorm_statistics_of_its_own_weights(trained: ConditionalGAN) -> None:
    """G_ema's running statistics describe G_ema's activations (not G's), and in eval mode an
    image does not depend on the rest of its batch."""
    ema, raw = trained.ema.averaged, trained.generator
    z = torch.randn(2000, trained.hparams.latent_dim, generator=torch.Generator().manual_seed(7))
    y = torch.arange(2000) % 10
    with torch.no_grad():
        h = ema.fc(torch.cat([z, ema.embed(y)], dim=1)).view(len(z), 2 * ema.width, -1)
        images = ema(z, y)
        assert torch.allclose(ema(z[:3], y[:3]), images[:3], atol=1e-6)
    own, raw_stats = ema.norms[0].norm.running_mean, raw.norms[0].norm.running_mean
    assert (own - h.mean((0, 2))).abs().mean() < 0.25 * h.std()
    assert not torch.allclose(own, raw_stats)
