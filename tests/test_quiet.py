"""A train.py run prints what the user needs and no third-party noise: no advertisement, no echo of
the configuration, no library-internal deprecation (dgbench.runtime.quiet_third_party). Real
warnings still print: the check below would pass on an empty output, so it asserts one of them too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY, TINY_MODELS, run_python

NOISE = (
    "litlogger",
    "LitLogger",
    "💡",
    "was configured so",  # `Trainer(limit_val_batches=2)` was configured so 2 batches will be used
    "Loading `train_dataloader` to estimate",
    "GPU available: False",
    "TPU available: False",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
    "is deprecated",
    "DeprecationWarning",
    "FutureWarning",
)


@pytest.mark.slow
def test_a_tiny_train_run_prints_no_third_party_noise(tmp_path: Path) -> None:
    # the default logger (csv) and progress bar: what `python train.py` does, at the tiny size
    overrides = [o for o in TINY if not o.startswith(("logger=", "trainer.enable_progress_bar="))]
    overrides += [*TINY_MODELS["logistic_regression"], f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_python(["train.py", *overrides])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert [noise for noise in NOISE if noise in output] == [], output[-3000:]
    assert "test/acc=" in result.stdout and "checkpoint: " in result.stdout  # the run's own lines
    # a real warning is not swallowed: 10 batches an epoch log no training curve at log_every_n_steps=50
    assert "smaller than the logging interval" in output


def test_progress_estimates_from_the_first_batch_and_reports_sparsely() -> None:
    import io

    from dgbench import progress

    now = [0.0]
    out = io.StringIO()
    with progress.suite("diffusion: classification", "budget.classification=N"):
        p = progress.Progress(1000, "classify", stream=out, clock=lambda: now[0])
        for done in range(100, 1001, 100):  # batches of 100 images, 6 s each
            now[0] += 6
            p.update(done)
        p.close()
    # 100 images in 6 s: 1000 in 60 s. Then a line once 10 s have passed since the last one (t = 18,
    # 30, 42, 54 s), each with rate = done / t = 16.7 images/s and (1000 - done) / rate left.
    label = "diffusion: classification"
    expected = [f"{label}: ~60 s for 1000 images (budget.classification=N to shorten)"]
    for t in (18, 30, 42, 54):
        done = 100 * t // 6
        expected.append(f"{label}: {done}/1000 images, 16.7 images/s, ~{round((1000 - done) / (done / t))} s left")
    expected.append(f"{label}: 1000 images in 60 s (16.7 images/s)")
    assert out.getvalue().splitlines() == expected


def test_batched_names_the_suite_and_its_override(capsys, monkeypatch) -> None:
    import torch

    from dgbench import progress
    from dgbench.evaluation.suites.common import batched

    x = torch.arange(10.0)
    assert batched(lambda b: b * 2, x, batch_size=3, device=torch.device("cpu")).tolist() == (x * 2).tolist()
    assert capsys.readouterr().err == ""  # a quick loop prints nothing
    monkeypatch.setattr(progress, "ANNOUNCE_OVER_S", 0.0)  # every loop counts as long
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    with progress.suite("m: ood", "budget.ood=N"):
        batched(lambda b: b, x, batch_size=3, device=torch.device("cpu"))
        batched(lambda b: b, x, batch_size=5, device=torch.device("cpu"))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("m: ood: ~") and err[0].endswith("for 10 images (budget.ood=N to shorten)")
    assert any(line.startswith("m: ood: 6/10 images, ") for line in err)
    assert any(line.startswith("m: ood, pass 2 (<lambda>): ~") for line in err)
