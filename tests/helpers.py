"""What the tests share besides fixtures (those are in conftest.py): paths, the tiny overrides, the
list of families, and running an entry point as a user would. Imported as ``from tests.helpers import ...``
(the repository root is on the path: pyproject.toml's ``pythonpath``; subprocesses get it too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# The families, defined once: every model config, i.e. every name `python train.py model=<name>` takes.
# A family's file and config share its name (models/<name>.py, configs/model/<name>.yaml).
FAMILIES: list[str] = sorted(path.stem for path in (CONFIGS / "model").glob("*.yaml"))

# Small enough to train in seconds on 2 CPU cores, real enough to learn something: the tiny preset of
# configs/benchmark.yaml. ``TINY`` holds its common overrides, ``TINY_MODELS[family]`` the smallest
# model of each family (tiny.families: every family needs an entry, test_reliability checks it).
TINY_PRESET = OmegaConf.load(CONFIGS / "benchmark.yaml").tiny
TINY: list[str] = list(TINY_PRESET.common)
TINY_MODELS: dict[str, list[str]] = {family: list(o) for family, o in TINY_PRESET.families.items()}
TINY_RESNET = TINY_MODELS["resnet"]


def run_python(args: list[str], cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh process, as a user would run it: one thread, this DATA_DIR."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
