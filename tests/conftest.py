"""Fixtures, and the test session's set-up: the shared MNIST files, one thread.

Helpers and constants that tests import are in tests/helpers.py (``from tests.helpers import ...``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from dgbench.runtime import compose_config
from tests.helpers import ROOT, TINY, TINY_RESNET

SHARED_DATA = ROOT.parent / "shared" / "data"
if "DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DATA_DIR"] = str(SHARED_DATA)

# Test networks are tiny: a second thread buys nothing, and on a shared CPU two OpenMP threads that
# spin-wait on each other make them 10-100x slower. Subprocesses get OMP_NUM_THREADS=1 likewise.
torch.set_num_threads(1)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_config writing into this test's tmp_path: ``make_config("model=vae", ...)``."""

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
