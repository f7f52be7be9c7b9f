"""Shared fixtures: config composition with tiny overrides, and a tiny trained ResNet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from dgbench.runtime import compose_config, register_resolvers

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"
if "DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DATA_DIR"] = str(SHARED_DATA)

register_resolvers()
# Test networks are tiny: a second thread buys nothing, and on a shared CPU two OpenMP threads that
# spin-wait on each other make them 10-100x slower. Subprocesses get OMP_NUM_THREADS=1 likewise.
torch.set_num_threads(1)

# Small enough to train in seconds on 2 CPU cores, real enough to learn something: the tiny preset
# of configs/benchmark.yaml, which also lists the smallest model of every family. A new family needs
# an entry there (test_reliability checks that every model config has one); the reliability tests
# (crash and resume, determinism) and the benchmark's test then cover it without further edits.
TINY_PRESET = OmegaConf.load(CONFIGS / "benchmark.yaml").tiny
TINY: list[str] = list(TINY_PRESET.common)
TINY_MODELS: dict[str, list[str]] = {family: list(o) for family, o in TINY_PRESET.families.items()}
TINY_RESNET = TINY_MODELS["resnet"]


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
