"""Shared fixtures: config composition with tiny overrides, and a tiny trained ResNet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from dgbench.runtime import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"
if "DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DATA_DIR"] = str(SHARED_DATA)

register_resolvers()
# Test networks are tiny: a second thread buys nothing, and on a shared CPU two OpenMP threads that
# spin-wait on each other make them 10-100x slower. Subprocesses get OMP_NUM_THREADS=1 likewise.
torch.set_num_threads(1)

# Small enough to train in seconds on 2 CPU cores, real enough to learn something.
TINY = [
    "data.train_size=1000",
    "data.batch_size=100",
    "data.eval_batch_size=500",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=none",
]
# Per family, the smallest model that still trains, keyed by its configs/model/ name. A new family
# needs an entry here (test_reliability checks that every config has one); the reliability tests
# (fast_dev_run, crash and resume, determinism) then cover it without further edits.
TINY_GAN_NETS = dict(latent_dim=16, g_width=16, d_width=8, e_width=8, impute_steps=3, impute_classes=2)
TINY_MODELS: dict[str, list[str]] = {
    "resnet": ["model=resnet", "model.width=8", "model.depth=1", "model.num_stages=2", "model.stem_stride=2"],
    "vae": ["model=vae", "model.width=4", "model.latent_dim=2", "model.classify_k=2", "model.likelihood_k=2"],
    "gan": ["model=gan", *(f"model.{k}={v}" for k, v in TINY_GAN_NETS.items()), "callbacks.sample_grid.per_class=2"],
    "diffusion": [
        "model=diffusion",
        "model.channels=[8,16,16]",
        "model.sample_steps=3",
        "callbacks.sample_grid.per_class=2",
        "data.eval_batch_size=100",
    ],
    "logistic_regression": ["model=logistic_regression"],
    "naive_bayes": ["model=naive_bayes"],
    "pixelcnn": ["model=pixelcnn", "model.width=4", "model.dilations=[1]"],
}
TINY_RESNET = TINY_MODELS["resnet"]


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` as Hydra would, writing into ``output_dir``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, config_name: str = "train") -> DictConfig:
        return compose_config(list(overrides), tmp_path, config_name)

    return make


@pytest.fixture(scope="session")
def tiny_resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding a tiny ResNet trained for two short epochs (shared by tests)."""
    from train import train

    out = tmp_path_factory.mktemp("tiny_resnet")
    train(compose_config([*TINY, *TINY_RESNET], out))
    return out


# --- added for the foundation tests -------------------------------------------------------------
def run_python(args: list[str], cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh process, as a user would run it: one thread, this DATA_DIR."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
