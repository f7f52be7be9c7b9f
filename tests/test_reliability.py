"""Reliability: crash and resume, determinism, atomic checkpoints, the nan guard, bad command lines, DDP.

The per-family tests run every family (``FAMILIES``, tests/helpers.py) with its tiny overrides (``TINY_MODELS``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.cli import check_overrides
from dgbench.runtime import compose_config
from tests.helpers import CONFIGS, FAMILIES, ROOT, TINY, TINY_MODELS, TINY_RESNET, run_python
from train import train

# Two epochs of three batches: the faults strike in the second epoch, after last.ckpt of the first.
SHORT = [*TINY, "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
VARIABLE = ("train_time_s", "ckpt_path")  # what may differ between identical runs


def fault(batch: int, action: str) -> list[str]:
    return [
        "+callbacks.fault._target_=tests.faults.FaultAt",
        f"+callbacks.fault.batch={batch}",
        f"+callbacks.fault.action={action}",
    ]


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def test_every_family_has_a_tiny_config() -> None:
    assert FAMILIES == sorted(TINY_MODELS), "configs/benchmark.yaml: tiny.families needs one entry per model config"


@pytest.mark.slow  # three tiny trainings per family
@pytest.mark.parametrize("family", FAMILIES)
def test_crash_then_resume_reproduces_the_uninterrupted_run(family: str, tmp_path: Path) -> None:
    """Determinism and exact resume at once: run A fresh; run B crashes in epoch 2 and C resumes B's
    last.ckpt. C equals A weight for weight and in metrics.json only if training is deterministic
    (B's first epoch = A's) and resuming restores everything (weights, optimiser, schedule, RNG)."""
    base = [*SHORT, *TINY_MODELS[family]]
    reference = train(compose_config(base, tmp_path / "a"))
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]

    with pytest.raises(RuntimeError, match="injected crash"):
        train(compose_config([*base, *fault(5, "raise")], tmp_path / "b"))
    crashed = read_metrics(tmp_path / "b")
    assert not crashed["complete"] and crashed["status"].startswith("failed: injected crash")
    assert crashed["ckpt_path"] == str((tmp_path / "b" / "checkpoints" / "last.ckpt").resolve())

    resumed = train(compose_config([*base, f"ckpt_path={crashed['ckpt_path']}"], tmp_path / "c"))
    assert {k: v for k, v in resumed.items() if k not in VARIABLE} == {
        k: v for k, v in reference.items() if k not in VARIABLE
    }
    assert_same_weights(final_weights(tmp_path / "c"), final_weights(tmp_path / "a"))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_from_the_command_line(tmp_path: Path) -> None:
    """A real SIGKILL in epoch 2 of a train.py process; the documented resume gives the same model."""
    base = [*TINY, *TINY_RESNET]
    killed = run_python(["train.py", *base, *fault(15, "sigkill"), f"hydra.run.dir={tmp_path / 'killed'}"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 10  # the end of epoch 1, intact

    resumed = run_python(["train.py", *base, f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = train(compose_config(base, tmp_path / "reference"))
    after_resume = read_metrics(tmp_path / "resumed")
    assert {k: after_resume[k] for k in reference if k.startswith("test/")} == {
        k: v for k, v in reference.items() if k.startswith("test/")
    }
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "reference"))


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_checkpoint_and_an_incomplete_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_python(["train.py", *TINY, *TINY_RESNET, *fault(15, "sigint"), f"hydra.run.dir={run}"])
    assert result.returncode != 0
    metrics = read_metrics(run)
    assert (metrics["complete"], metrics["status"], metrics["epochs"]) == (False, "interrupted", 1)
    model = load_model(metrics["ckpt_path"])  # last.ckpt of epoch 1 loads and classifies
    assert model.classify(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_nan_loss_stops_training_naming_the_step_and_keeps_good_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(DGBenchError, match=r"epoch 1, batch 2\)") as err:
        train(compose_config([*TINY, *TINY_RESNET, *fault(13, "poison")], tmp_path))
    assert "\n" not in str(err.value) and "last.ckpt" in str(err.value)
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert checkpoint["global_step"] == 10  # written at the end of epoch 1, before the poison
        assert all(w.isfinite().all() for w in checkpoint["state_dict"].values() if w.is_floating_point())
    assert read_metrics(tmp_path)["status"].startswith("failed: training stopped")


SAVE_FOREVER = """
import sys, torch
from dgbench.runtime import atomic_save  # what AtomicCheckpointIO, Lightning's writer here, calls
payload = {"w": torch.randn(4_000_000)}  # 16 MB: a save takes a while
for i in range(10**6):
    payload["i"] = i
    atomic_save(payload, sys.argv[1])
    print(i, flush=True)
"""


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for delay in (0.01, 0.1):
        process = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, str(target)], stdout=subprocess.PIPE, env=env)
        process.stdout.readline()  # one save completed
        time.sleep(delay)
        process.kill()
        process.wait()
        assert torch.load(target, weights_only=True)["w"].shape == (4_000_000,)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"] or all(
        p.name.endswith(".tmp") for p in tmp_path.iterdir() if p.name != "last.ckpt"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=foo", "unknown model 'foo': choose one of"),
        ("experiment=nope", "unknown experiment 'nope'"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' has the wrong type: expected int"),
        ("data.batch_size=1.5", "data.batch_size=1.5 has the wrong type: expected int"),
        ("test=maybe", "test='maybe' has the wrong type: expected bool"),
        ("data.batch_sizee=3", "no setting data.batch_sizee in the config: did you mean data.batch_size?"),
        ("+seed=3", "seed already exists"),
        ("model=[", "cannot parse the overrides"),
    ],
)
def test_bad_overrides_are_caught_before_hydra(override: str, message: str) -> None:
    with pytest.raises(DGBenchError, match=message.replace("?", r"\?").replace("[", r"\[")):
        check_overrides("train", [override])


def test_good_overrides_pass_the_check() -> None:
    check_overrides("train", ["model=vae", "model.width=8", "trainer.devices=auto", "+foo=1", "-m", "seed=1,2"])
    check_overrides("evaluate", ["budget.classification=100", "ckpts=[a,b]"])


@pytest.mark.slow
def test_a_bad_override_is_one_line_and_leaves_no_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_python(["train.py", "trainer.max_epochs=abc", f"hydra.run.dir={run}"])
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: trainer.max_epochs")
    assert not run.exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path: Path) -> None:
    """Lightning DDP with gloo: two processes of 50 images per step = one process of 100."""
    single = train(compose_config([*TINY, *TINY_RESNET], tmp_path / "single"))
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.batch_size=50"]
    result = run_python(["train.py", *TINY, *TINY_RESNET, *ddp, f"hydra.run.dir={tmp_path / 'ddp'}"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = read_metrics(tmp_path / "ddp")
    assert distributed["global_step"] == single["global_step"] == 20  # same number of optimiser steps
    # Not bit-identical: each process normalises its own half-batch (BatchNorm) and gradients are
    # summed in another order; the models still agree closely.
    assert distributed["test/acc"] == pytest.approx(single["test/acc"], abs=0.05)
    assert distributed["test/loss"] == pytest.approx(single["test/loss"], rel=0.1)


def test_the_slurm_launcher_is_sized_from_the_trainer() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert get_class(launcher._target_).__name__ == "SlurmLauncher"  # the plugin is installed and importable
