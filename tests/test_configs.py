"""Every config composes, resolves and instantiates: every option of every group, every experiment.

Options are discovered by globbing ``configs/<group>/*.yaml``, so a new family or recipe is covered
the moment its file exists. Nothing is trained: building data, model, callbacks, loggers and
(where this machine can) the trainer is what a typo or a stale key breaks.
"""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dgbench.family import FamilyModule
from dgbench.runtime import compose_config
from tests.helpers import CONFIGS
from train import build_callbacks

OPTIONS = sorted((path.parent.name, path.stem) for path in CONFIGS.glob("*/*.yaml"))
GROUPS_IN_TRAIN_DEFAULTS = {
    "data",
    "model",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "hydra",
    "experiment",
    "debug",
    "hparams_search",
}


def test_discovery_finds_the_foundation_configs() -> None:
    # Guards the glob itself: a moved configs/ folder must not turn the suite into zero tests.
    assert {("model", "resnet"), ("experiment", "resnet_fast"), ("trainer", "ddp"), ("data", "fashion_mnist")} <= set(
        OPTIONS
    )
    assert {group for group, _ in OPTIONS} <= GROUPS_IN_TRAIN_DEFAULTS


def can_build_trainer(trainer_cfg: dict) -> bool:
    """DDP would start processes; a GPU trainer needs a GPU. Everything else is built for real."""
    if trainer_cfg.get("strategy") not in (None, "auto"):
        return False
    return trainer_cfg.get("accelerator") not in ("gpu", "cuda") or torch.cuda.is_available()


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_config_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    cfg = compose_config([f"{group}={option}", "trainer.enable_progress_bar=false"], tmp_path)

    # Every interpolation resolves (a renamed key or resolver fails here, not an hour into training).
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # `# @package _global_` missing from an experiment/debug file would nest it under its group name.
    assert group not in ("experiment", "debug") or group not in resolved
    if group == "experiment":
        assert cfg.task_name == option, "an experiment names its runs after itself (runs/<task_name>/...)"

    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, L.LightningDataModule)
    model = instantiate(cfg.model, _convert_="all")
    assert isinstance(model, FamilyModule)
    assert model.kind in ("discriminative", "generative", "hybrid")
    assert isinstance(model.family, str) and model.monitor[1] in ("min", "max")
    # Hyper-parameters are what a checkpoint rebuilds the model from: they must survive weights-only
    # loading, i.e. be plain values (no partials, no DictConfig).
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": dict(model.hparams)}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["hyper_parameters"] == dict(model.hparams)

    callbacks = build_callbacks(cfg, model)
    try:
        loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    except Exception as err:  # noqa: BLE001 - only an optional logger backend may be missing
        if group == "logger" and isinstance(err.__cause__, ModuleNotFoundError):
            pytest.skip(f"optional dependency of logger={option} is not installed: {err.__cause__}")
        raise
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if can_build_trainer(trainer_cfg):
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        assert isinstance(trainer, L.Trainer)
