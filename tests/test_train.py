"""train.py end to end: weights-only checkpoints that reload in a fresh process, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dgbench import DGBenchError
from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
from dgbench.runtime import compose_config
from tests.helpers import TINY, TINY_RESNET, run_python
from train import train

# What tiny_resnet_run tests on: limit_test_batches=2 batches of eval_batch_size=500, in order.
TINY_TEST_IMAGES = 1000

RELOAD = """
import json, sys, torch
from dgbench.checkpoint import load_model
from dgbench.data import default_data_root, load_split, to_float
run, n = sys.argv[1], int(sys.argv[2])
for name in ("best.ckpt", "last.ckpt"):  # both load without unpickling any code
    assert "dgbench" in torch.load(f"{run}/checkpoints/{name}", map_location="cpu", weights_only=True)
model = load_model(f"{run}/checkpoints/best.ckpt")
images, labels = load_split("mnist", default_data_root(), train=False)
predictions = model.classify(to_float(images[:n])).argmax(1)
print(json.dumps({"predictions": predictions.tolist(), "hparams": dict(model.hparams)}))
"""


@pytest.mark.slow
def test_checkpoint_reloads_in_a_fresh_process(tiny_resnet_run: Path) -> None:
    metrics = json.loads((tiny_resnet_run / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs"] == 2 and metrics["global_step"] == 20  # 1000 images / 100
    assert Path(metrics["ckpt_path"]) == (tiny_resnet_run / "checkpoints" / "best.ckpt").resolve()

    images, labels = load_split("mnist", default_data_root(), train=False)
    model = load_model(tiny_resnet_run)  # a run directory resolves to its tested checkpoint
    in_process = model.classify(to_float(images[:TINY_TEST_IMAGES])).argmax(1)

    result = run_python(["-c", RELOAD, str(tiny_resnet_run), str(TINY_TEST_IMAGES)])
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["hparams"] == dict(model.hparams) and fresh["hparams"]["width"] == 8
    assert fresh["predictions"] == in_process.tolist()
    accuracy = (in_process == labels[:TINY_TEST_IMAGES]).float().mean().item()
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)  # 1 image = 1e-3


@pytest.mark.parametrize("schedule", ["constant", "one_cycle"])
def test_resume_continues_to_the_same_weights(tmp_path: Path, schedule: str) -> None:
    """Epoch 1 (of 2) from a checkpoint = the uninterrupted run, weight for weight (deterministic mode).

    A one-cycle schedule is fixed by max_epochs, so "interrupted" must mean a max_epochs=2 run that
    stopped after its first epoch (EarlyStopping at a threshold every model passes); a constant
    rate also allows the plain recipe: train max_epochs=1, then resume with max_epochs=2.
    """
    base = [*TINY, *TINY_RESNET, "trainer.deterministic=true", "trainer.limit_val_batches=1"]
    if schedule == "constant":
        base.append("model.scheduler=null")
        first = ["trainer.max_epochs=1"]
    else:
        first = [
            "trainer.max_epochs=2",
            "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.stop.monitor=val/acc",
            "+callbacks.stop.mode=max",
            "+callbacks.stop.stopping_threshold=0.0",
        ]
    interrupted = train(compose_config([*base, *first, "test=false"], tmp_path / "first"))
    assert (interrupted["epochs"], interrupted["global_step"]) == (1, 10)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(compose_config([*base, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path / "resumed"))
    reference = train(compose_config([*base, "trainer.max_epochs=2"], tmp_path / "reference"))

    assert (resumed["epochs"], resumed["global_step"]) == (reference["epochs"], reference["global_step"]) == (2, 20)
    saved = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert saved["complete"] and saved["global_step"] == 20 and "test/acc" in saved
    last_ckpts = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
        for run in ("resumed", "reference", "first")
    ]
    # last.ckpt holds the final state even when the last epoch did not improve the monitored metric.
    assert [c["global_step"] for c in last_ckpts] == [20, 20, 10]
    weights = [c["state_dict"] for c in last_ckpts]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0]), "the resumed run trained"


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint", "no_dgbench_entry", "pickled_code"])
def test_bad_checkpoints_are_one_line_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "model.ckpt"
    if case == "not_a_checkpoint":
        path.write_text("hello")
    elif case == "no_dgbench_entry":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    elif case == "pickled_code":
        torch.save({"dgbench": {"class_path": "x"}, "callback": DGBenchError("pickled")}, path)
    with pytest.raises(DGBenchError) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_sample_grids_and_epoch_lines_name_the_right_epochs(make_config, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ``every_n_epochs``-th epoch and the last get a grid, named by 0-based epoch; the epoch
    lines count 1..max_epochs (reading Lightning's fit_loop.done in the last epoch would skip one)."""
    from tests.helpers import TINY_MODELS

    cfg = make_config(
        *TINY,
        *TINY_MODELS["vae"],
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "callbacks.sample_grid.every_n_epochs=2",
        "callbacks.sample_grid.per_class=1",
    )
    metrics = train(cfg)
    grids = sorted(p.name for p in (Path(cfg.paths.output_dir) / "samples").iterdir())
    assert grids == ["epoch_001.png", "epoch_002.png"] and metrics["epochs"] == 3
    lines = [line.split()[2] for line in capsys.readouterr().out.splitlines() if line.startswith("[vae] epoch")]
    assert lines == ["1/3", "2/3", "3/3"]
