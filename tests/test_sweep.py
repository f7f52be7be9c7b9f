"""Hyper-parameter search (configs/hparams_search/): Hydra's Optuna sweeper runs train.py as its
objective. Two trials of a tiny logistic regression: two runs with different hyper-parameters, and
the sweeper's recorded best value is the better run's own validation metric (read from its metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY, TINY_MODELS, run_python

pytestmark = pytest.mark.slow  # train.py -m in a subprocess: an Optuna sweep

TINY_LR = [o for o in TINY if not o.startswith("logger=")] + TINY_MODELS["logistic_regression"][1:]


def test_optuna_sweep_returns_the_best_trial(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    args = ["train.py", "-m", "hparams_search=logistic_regression_optuna", "hydra.sweeper.n_trials=2"]
    result = run_python([*args, *TINY_LR, "logger=none", f"hydra.sweep.dir={sweep}"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [t.name for t in trials] == ["0", "1"]
    params = []
    for trial in trials:
        overrides = yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text())
        params.append({o.split("=")[0]: float(o.split("=")[1]) for o in overrides if o.startswith("model.")})
        config = yaml.safe_load((trial / ".hydra" / "config.yaml").read_text())
        assert config["model"]["l2"] == params[-1]["model.l2"]  # the trial trained what the sweeper chose
    assert set(params[0]) == {"model.l2", "model.optimizer.lr"}
    assert params[0] != params[1]

    scores = [json.loads((t / "metrics.json").read_text())["val/acc_best"] for t in trials]
    best = max(range(2), key=lambda i: scores[i])  # direction: maximize
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(scores[best], abs=1e-9)
    assert results["best_params"] == pytest.approx(params[best])
