"""The learning curves' protocol: a model trained on n labels sees exactly n labels.

Each run is built exactly as the benchmark's ``curve_jobs`` (dgbench/evaluation/curves.py) configures
it: below the full set the data module holds n labelled training images and no validation split, no
checkpoint is chosen on a validation metric (the last one is tested), and every seed draws its own
stratified subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from dgbench.evaluation.curves import curve_jobs, hybrid_comparisons
from dgbench.runtime import compose_config
from tests.helpers import CONFIGS

PRESETS = OmegaConf.load(CONFIGS / "benchmark.yaml")


def jobs_at(preset: str, family: str, size: int | str) -> list[tuple[list[str], Path, int]]:
    """(overrides, run directory, seed) of the curve runs of ``family`` at ``size`` labels."""
    spec = PRESETS[preset]
    found = [
        (overrides, run_dir, seed)
        for (_, overrides, run_dir), label, seed in curve_jobs(spec, list(spec.get("common", [])), Path("runs"))
        if label == size and (run_dir.name == family or run_dir.name.startswith(f"{family}_{size}_s"))
    ]
    assert found, f"no curve run of {family} at {size} in the {preset} preset"
    return found


def labelled(cfg: Any) -> dict[str, Any]:
    """The data module the run would train on, set up: its splits (images, labels)."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule.splits


CURVE_FAMILIES = [("cpu", f) for f in PRESETS.cpu.curves.families] + [
    ("cpu_full", f) for f in PRESETS.cpu_full.curves.families if f not in PRESETS.cpu.curves.families
]


@pytest.mark.parametrize(("preset", "family"), CURVE_FAMILIES)
def test_a_run_at_n_100_reads_exactly_100_labels_and_selects_nothing_on_validation(
    preset: str, family: str, tmp_path: Path
) -> None:
    from train import build_callbacks

    for overrides, _, seed in jobs_at(preset, family, 100):
        cfg = compose_config(overrides, tmp_path)
        splits = labelled(cfg)
        train_labels = splits["train"][1]
        if PRESETS[preset].curves.families[family].get("size_setting") == "data.label_size":
            # semi-supervised: every training image (no validation split), exactly 100 of them labelled
            assert len(train_labels) == 60000 and int((train_labels >= 0).sum()) == 100
        else:
            assert len(train_labels) == 100
        assert len(splits["val"][1]) == 0  # labels seen in training = n
        assert cfg.data.seed == cfg.seed == seed  # the seed draws the subset
        # No validation loop, and no checkpoint picked on a metric: the last state is the one tested.
        assert cfg.trainer.limit_val_batches == 0
        assert "model_checkpoint" not in cfg.callbacks
        checkpoints = [
            c for c in build_callbacks(cfg, instantiate(cfg.model, _convert_="all")) if isinstance(c, ModelCheckpoint)
        ]
        assert [(Path(c.filename).name, c.monitor) for c in checkpoints] == [("last", None)]
        steps = PRESETS[preset].curves.families[family].steps
        if steps is not None:  # step-bounded: saved once, at the last step
            assert cfg.trainer.max_steps == steps and checkpoints[0]._every_n_train_steps == steps


def test_seeds_draw_different_subsets_of_the_same_class_balance(tmp_path: Path) -> None:
    subsets, counts = [], []
    for overrides, _, _ in jobs_at("cpu", "logistic_regression", 100):
        images, labels = labelled(compose_config(overrides, tmp_path))["train"]
        subsets.append(images.flatten(1))
        counts.append(labels.bincount(minlength=10).tolist())
    assert len(subsets) >= 3 and all(c == counts[0] for c in counts)  # stratified: same class counts
    for i in range(len(subsets)):
        for j in range(i + 1, len(subsets)):
            assert not subsets[i].equal(subsets[j])


def test_naive_bayes_alpha_is_fixed_a_priori_at_every_size(tmp_path: Path) -> None:
    for size in [*(s for s in PRESETS.cpu.curves.sizes if s is not None), "all"]:
        for overrides, _, _ in jobs_at("cpu", "naive_bayes", size):
            assert compose_config(overrides, tmp_path).model.alpha == 1


def test_the_full_set_reads_all_60000_labels_with_the_same_protocol(tmp_path: Path) -> None:
    # Every training image, labelled, no validation split: n = 60 000, a curve run of its own per seed.
    jobs = jobs_at("cpu", "logistic_regression", "all")
    assert [seed for _, _, seed in jobs] == list(PRESETS.cpu.curves.seeds)
    for overrides, run_dir, _ in jobs:
        assert run_dir.parent == Path("runs") / "curves"  # not the preset's run with its validation split
        splits = labelled(compose_config(overrides, tmp_path))
        assert len(splits["train"][1]) == 60_000 and len(splits["val"][1]) == 0


@pytest.mark.parametrize("preset", ["cpu", "tiny"])
def test_every_point_of_a_family_has_the_same_optimisation_budget(preset: str, tmp_path: Path) -> None:
    """Equal effort along a curve: the same steps (or the same epochs) at every n, the full set included
    (one seed per point: the seed changes the subset and the noise, not the budget)."""
    spec = PRESETS[preset]
    budgets: dict[str, set] = {}
    for (_, overrides, _), _, seed in curve_jobs(spec, list(spec.get("common", [])), Path("runs")):
        if seed != spec.curves.seeds[0]:
            continue
        family = overrides[len(spec.get("common", []))]  # the family preset's first override names it
        cfg = compose_config(overrides, tmp_path)
        budgets.setdefault(family, set()).add((cfg.trainer.max_steps, cfg.trainer.max_epochs))
    assert budgets and all(len(b) == 1 for b in budgets.values()), budgets


def test_step_overrides_go_with_the_step_count_at_every_size(tmp_path: Path) -> None:
    preset = OmegaConf.create(
        {
            "families": {"lr": ["experiment=logistic_regression"]},
            "curves": {
                "sizes": [100, None],
                "seeds": [1],
                "families": {"lr": {"steps": 7, "step_overrides": ["model.optimizer.lr=0.5"]}},
            },
        }
    )
    jobs = {label: (overrides, run_dir) for (_, overrides, run_dir), label, _ in curve_jobs(preset, [], Path("runs"))}
    for label in (100, "all"):
        cfg = compose_config(jobs[label][0], tmp_path)
        assert cfg.trainer.max_steps == 7 and cfg.model.optimizer.lr == 0.5


def test_a_trained_curve_run_tests_its_last_checkpoint(tmp_path: Path) -> None:
    """End to end on the tiny preset: n = 100, no validation, the last checkpoint tested."""
    from train import train

    overrides, _, _ = jobs_at("tiny", "logistic_regression", 100)[0]
    metrics = train(compose_config(overrides, tmp_path))
    assert metrics["complete"] and metrics["global_step"] == PRESETS.tiny.curves.families.logistic_regression.steps
    assert Path(metrics["ckpt_path"]).name == "last.ckpt" and 0 < metrics["test/acc"] <= 1
    assert 0 < metrics["train_loss_last"] < 2.31  # cross-entropy after training: below log(10), the uniform guess
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]


def test_the_spectrum_table_tests_each_hybrid_against_the_best_family_of_each_kind() -> None:
    accs = {  # percent, three seeds at n = 100
        ("lr", "discriminative"): [75.0, 76.0, 77.0],
        ("cnn", "discriminative"): [60.0, 61.0, 62.0],
        ("nb", "generative"): [70.0, 71.0, 72.0],
        ("m2", "hybrid"): [79.0, 80.0, 81.0],
    }
    points = [
        {"family": f, "kind": k, "train_size": 100, "seed": i, "test_acc": a / 100}
        for (f, k), values in accs.items()
        for i, a in enumerate(values)
    ] + [{"family": "m2", "kind": "hybrid", "train_size": "all", "seed": 0, "test_acc": 0.9}]  # one seed: no test
    lines = hybrid_comparisons(points)
    assert len([line for line in lines if line.startswith("| m2 |")]) == 1  # one row: n = 100 ("all" has one seed)
    row = next(line for line in lines if line.startswith("| m2 |"))
    # the best of each kind by mean: lr (76), not cnn (61); nb. Sd 1 each: difference 4, se^2 = 2/3, df 4, t = 4.90,
    # p = 1 - 1.5 x (1 - x^2 / 3) with x = t / sqrt(t^2 + 4) = 0.008 (closed form of Student's t at 4 df); the
    # other test (+9.0, t = 11.0) has the smaller p, so Holm's p for this one is itself: max(2 x 0.0005, 0.008).
    assert "+4.0 [" in row and "vs lr, p = 0.008 (Holm 0.008)" in row and "+9.0 [" in row and "vs nb" in row
