"""GAN family: manual optimisation phases, EMA sampling, conditional samples, inversion.

Shapes, capabilities, seeded sampling and checkpoints: tests/test_family_contract.py."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY_MODELS
from omegaconf import OmegaConf

from dgbench.data import MNISTDataModule, default_data_root
from models.gan import ConditionalGAN

TINY_GAN = TINY_MODELS["gan"]
TINY_NETS = dict(OmegaConf.from_dotlist([o for o in TINY_GAN if o.startswith("model.") and "=" in o]).model)
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
