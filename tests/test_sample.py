"""sample.py: grid and tensor files, seed reproducibility, inference settings, imputation and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from dgbench.runtime import compose_config
from sample import sample
from tests.helpers import TINY, TINY_MODELS, run_python


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny naive Bayes (samples and imputes) and logistic regression (cannot sample) run directories."""
    from train import train

    out = {}
    for family in ("naive_bayes", "logistic_regression"):
        out[family] = tmp_path_factory.mktemp(family)
        train(compose_config([*TINY, *TINY_MODELS[family]], out[family]))
    return out


def run_sample(tmp_path: Path, *overrides: str) -> dict[str, torch.Tensor]:
    return sample(compose_config([*overrides], tmp_path, "sample"))


def test_grid_and_tensor_files(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = run_sample(tmp_path, f"ckpt={runs['naive_bayes']}", "n=20", "classes=all", f"out={out}")
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["images"].shape == (20, 1, 28, 28) and torch.equal(saved["images"], result["images"])
    assert saved["labels"].tolist() == [i % 10 for i in range(20)]
    assert 0 <= saved["images"].min() and saved["images"].max() <= 1
    # classes=all: 10 columns and 2 rows of 28-pixel tiles with torchvision's 2-pixel padding.
    assert Image.open(out / "samples.png").size == (10 * 30 + 2, 2 * 30 + 2)
    listed = run_sample(tmp_path, f"ckpt={runs['naive_bayes']}", "n=6", "classes=[1,2]", f"out={tmp_path / 'l'}")
    assert listed["labels"].tolist() == [1, 2, 1, 2, 1, 2]
    one = run_sample(tmp_path, f"ckpt={runs['naive_bayes']}", "n=4", "classes=3", f"out={tmp_path / 'one'}")
    assert one["labels"].tolist() == [3, 3, 3, 3]


def test_seed_reproducible_and_inference_settings_applied(runs: dict[str, Path], tmp_path: Path) -> None:
    args = (f"ckpt={runs['naive_bayes']}", "n=8")
    a = run_sample(tmp_path, *args, "seed=5", f"out={tmp_path / 'a'}")["images"]
    b = run_sample(tmp_path, *args, "seed=5", f"out={tmp_path / 'b'}")["images"]
    c = run_sample(tmp_path, *args, "seed=6", f"out={tmp_path / 'c'}")["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    knobbed = run_sample(tmp_path, *args, "seed=5", "+inference.alpha=50.0", f"out={tmp_path / 'k'}")["images"]
    assert not torch.equal(a, knobbed)  # a much stronger Beta prior changes the pixel probabilities
    assert torch.load(tmp_path / "k" / "samples.pt", weights_only=True)["inference"] == {"alpha": 50.0}


@pytest.mark.parametrize("spec", ["bottom_half", "random_0.5", "png"])
def test_impute_keeps_observed_pixels(runs: dict[str, Path], tmp_path: Path, spec: str) -> None:
    if spec == "png":
        mask = torch.zeros(28, 28, dtype=torch.uint8)
        mask[:, :10] = 255  # the left 10 columns observed
        Image.fromarray(mask.numpy()).save(tmp_path / "mask.png")
        spec = str(tmp_path / "mask.png")
    out = tmp_path / "imp"
    run_sample(tmp_path, f"ckpt={runs['naive_bayes']}", "n=6", "classes=[4,7]", f"impute={spec}", f"out={out}")
    saved = torch.load(out / "impute.pt", weights_only=True)
    observed, original, filled = saved["observed"], saved["original"], saved["filled"]
    assert set(saved["labels"].tolist()) <= {4, 7}
    assert 0 < observed.float().mean() < 1
    assert torch.equal(filled[observed], original[observed])  # bit-identical
    assert not torch.equal(filled[~observed], original[~observed])  # the rest was filled, not copied
    if spec.endswith(".png"):
        assert observed[:, :, :, :10].all() and not observed[:, :, :, 10:].any()
    assert Image.open(out / "impute.png").size[0] == 2 * 6 * 30 + 2  # observed and filled side by side


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["classes=10"], "classes=10"),
        (["impute=random_abc"], "impute=random_abc"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    result = run_python(["sample.py", f"ckpt={runs['naive_bayes']}", "n=2", f"out={tmp_path}", *args])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, message",
    [
        ("+inference.alhpa=50", "inference.alhpa: not a setting of naive_bayes; the settings are alpha, eval_seed"),
        ("+inference.alpha=strong", "inference.alpha='strong' has the wrong type: naive_bayes's alpha takes float"),
        ("+inference.eval_seed=1.5", "inference.eval_seed=1.5 has the wrong type: naive_bayes's eval_seed takes int"),
    ],
)
def test_a_mistyped_inference_setting_is_one_line_exit_2_and_writes_nothing(
    runs: dict[str, Path], tmp_path: Path, setting: str, message: str
) -> None:
    out = tmp_path / "out"
    result = run_python(["sample.py", f"ckpt={runs['naive_bayes']}", "n=2", f"out={out}", setting])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not list(out.glob("samples.*")) and not list(out.glob("impute.*"))


def test_impute_masks_are_the_shared_ones(runs: dict[str, Path], tmp_path: Path) -> None:
    """impute=bottom_half / random_<p> give exactly dgbench.masks' patterns: the top 14 rows observed;
    each pixel observed with probability 1 - p (here p = 0.25: 75 % of 6 x 784 pixels, +- 5 sigma)."""
    args = (f"ckpt={runs['naive_bayes']}", "n=6", "classes=[4,7]")
    run_sample(tmp_path, *args, "impute=bottom_half", f"out={tmp_path / 'b'}")
    bottom = torch.load(tmp_path / "b" / "impute.pt", weights_only=True)["observed"]
    assert bottom[:, :, :14].all() and not bottom[:, :, 14:].any()
    run_sample(tmp_path, *args, "impute=random_0.25", f"out={tmp_path / 'r'}")
    random = torch.load(tmp_path / "r" / "impute.pt", weights_only=True)["observed"]
    n = random.numel()
    assert abs(random.float().sum().item() - 0.75 * n) < 5 * (n * 0.25 * 0.75) ** 0.5


def test_checkpoint_that_cannot_sample(runs: dict[str, Path], tmp_path: Path) -> None:
    result = run_python(["sample.py", f"ckpt={runs['logistic_regression']}", "n=2", f"out={tmp_path}"])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot sample" in result.stderr
