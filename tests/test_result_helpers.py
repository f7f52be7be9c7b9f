"""The benchmark scripts that assemble committed results from parts: seed summaries, merged
classifier parts and merged likelihood parts. Expected values are computed here by hand, not by the scripts."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import ROOT


def script(path: str) -> ModuleType:
    """benchmarks/<path>.py as a module: the report tools in benchmarks/, the probes in benchmarks/probes/."""
    spec = importlib.util.spec_from_file_location(Path(path).name, ROOT / "benchmarks" / f"{path}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_summary_gives_each_seed_and_the_t_interval_of_their_mean() -> None:
    quality = [{"fid": 1.0, "recall": 0.5}, {"fid": 2.0, "recall": 0.5}, {"fid": 3.0, "recall": 0.5}]
    report = {
        "models": {
            f"seed{i}": {"training": {"train_time_s": 10.0 * (i + 1)}, "suites": {"sample_quality": q}}
            for i, q in enumerate(quality)
        }
    }
    report["models"]["seed0"]["suites"]["sample_quality"]["floor"] = {"fid": 0.25}
    rows = script("seed_summary").summarise(report, "sample_quality", ["fid", "recall"])
    half = 4.303 / math.sqrt(3)  # sd 1 over 3 seeds, Student's t at 2 degrees of freedom
    assert rows["fid"]["per_model"] == {"seed0": 1.0, "seed1": 2.0, "seed2": 3.0}
    assert rows["fid"]["mean"] == pytest.approx(2.0) and rows["fid"]["ci"] == pytest.approx([2 - half, 2 + half])
    assert rows["fid"]["floor"] == 0.25 and rows["recall"]["ci"] == pytest.approx([0.5, 0.5])
    assert rows["train_time_s"]["mean"] == pytest.approx(20.0)
    with pytest.raises(SystemExit, match="missing"):
        script("seed_summary").summarise(report, "sample_quality", ["precision"])


def test_merged_classifier_parts_count_every_image_once(tmp_path: Path) -> None:
    def part(start: int, n: int, right: int, ckpt: str = "run") -> Path:
        path = tmp_path / f"{start}.json"
        classify = {"pairs": 100, "first_pairs": 5, "keep": 10, "first_image": start, "n": n, "acc": right / n}
        path.write_text(json.dumps({"ckpt": ckpt, "classify": {**classify, "wall_s": 1.0}}))
        return path

    merged = script("probes/diffusion_report").merge_classify([part(500, 500, 490), part(0, 500, 492)])
    assert (merged["n"], merged["right"], merged["acc"]) == (1000, 982, 0.982)
    assert merged["images"] == [[0, 499], [500, 999]] and merged["first_pairs"] == 100  # 10 kept: plain
    # Wilson: centre (p + z²/2n) / (1 + z²/n), half-width z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    z, n, p = 1.959964, 1000, 0.982
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    assert merged["wilson95"] == pytest.approx([centre - half, centre + half], abs=1e-6)
    with pytest.raises(SystemExit, match="like with like"):
        script("probes/diffusion_report").merge_classify([part(0, 500, 492), part(500, 500, 490, ckpt="other")])


def test_merged_likelihood_parts_are_summarised_over_every_image(tmp_path: Path) -> None:
    def part(start: int, nll: list[float], correct: list[float], k: int = 5000) -> Path:
        path = tmp_path / f"{start}_{k}.json"
        per_image = {"nll": nll, "nll_given_true_class": [v - 2 for v in nll], "correct": correct}
        record = {"ckpt": "run", "k": k, "protocol": "p", "start": start, "images": len(nll), "wall_s": 5.0}
        path.write_text(json.dumps({**record, "per_image": per_image}))
        return path

    merged = script("probes/vae_likelihood").merge([part(2, [90.0, 94.0], [1, 0]), part(0, [86.0, 90.0], [1, 1])])
    # the four images 86, 90, 90, 94: mean 90, sample sd sqrt(32/3), interval 1.96 sd / sqrt(4)
    half = 1.96 * math.sqrt(32 / 3) / 2
    assert merged["images"] == 4 and merged["ranges"] == [[0, 1], [2, 3]] and merged["wall_s"] == 10.0
    assert merged["nll_nats"] == pytest.approx(90.0) and merged["nll_ci"] == pytest.approx([90 - half, 90 + half])
    assert merged["nll_given_true_class_nats"] == pytest.approx(88.0)
    assert merged["bayes_accuracy_binarized"] == pytest.approx(0.75)
    with pytest.raises(SystemExit, match="like with like"):
        script("probes/vae_likelihood").merge([part(0, [86.0], [1]), part(1, [90.0], [1], k=100)])
    with pytest.raises(SystemExit, match="overlap"):
        script("probes/vae_likelihood").merge([part(0, [86.0, 90.0], [1, 1]), part(1, [90.0], [1])])


def test_progress_comparison_pairs_each_training_once_and_skips_reuses() -> None:
    old = "\n".join(
        [
            "[primer 0:10:00]   vae: done, trained in 100 s; test/acc=0.9",
            "[primer 0:20:00]   hmm: done, trained in 50 s; test/acc=0.8",
            "[primer 0:20:05]   lr: done, trained in 5 s; test/acc=0.9",
        ]
    )
    new = "\n".join(
        [
            "[primer 0:12:00]   vae: done, trained in 80 s; test/acc=0.9",
            "[primer 0:30:00]   hmm: done, trained in 75 s; test/acc=0.8",
            "[primer 0:30:01]   lr: done, trained in 6 s; test/acc=0.9",
            "[primer 0:31:00]   vae n=all seed=42: reusing runs/vae",
            "[primer 0:31:00]   vae n=all seed=42: done, trained in 80 s; test/acc=0.9",
        ]
    )
    compare_progress = script("compare_progress")
    assert compare_progress.trained(new) == {"vae": (720, 80), "hmm": (1800, 75), "lr": (1801, 6)}
    table = compare_progress.compare(old, new, min_seconds=8)  # lr: 5 s in the old run, below the floor
    assert "| 12 min | vae | 100 | 80 | 0.80 |" in table and "| 30 min | hmm | 50 | 75 | 1.50 |" in table
    assert "lr" not in table and "vae n=all" not in table
    # quarters of the last finish (30 min): vae at 12 min in the 2nd, hmm at 30 in the 4th
    assert "| 2 (to 15 min) | 1 | 0.80 |" in table and "| 4 (to 30 min) | 1 | 1.50 |" in table
    with pytest.raises(SystemExit, match="no training run"):
        compare_progress.compare(old, "[primer 0:01:00]   other: done, trained in 9 s", min_seconds=8)


def test_work_table_counts_each_job_once_by_group() -> None:
    log = "\n".join(
        [
            "[primer 0:00:00]   diffusion: training (experiment=diffusion_cpu)",
            "[primer 0:15:00]   diffusion: done, trained in 880 s; test/loss=0.04",
            "[primer 0:15:00]   evaluating diffusion (ood)",
            "[primer 0:21:30]   evaluated diffusion (ood)",
            "[primer 0:21:30]   m2 n=100 seed=42: training (experiment=m2 seed=42)",
            "[primer 0:22:30]   m2 n=100 seed=42: done, trained in 55 s",
            "[primer 0:22:30]   m2 n=1000 seed=42: training (experiment=m2 seed=42)",
            "[primer 0:24:00]   m2 n=1000 seed=42: done, trained in 85 s",
            "[primer 0:30:00]   m2 n=100 seed=42: reusing runs/m2_100_s42",
            "[primer 0:30:00]   m2 n=100 seed=42: done, trained in 55 s",
        ]
    )
    table = script("compare_progress").work(log)
    # diffusion 15 min, its OOD suite 6.5, the two m2 curve runs 1 + 1.5 (the reuse at 0:30 adds nothing)
    assert "| train diffusion | 15.0 |" in table and "| evaluate diffusion (ood) | 6.5 |" in table
    assert "| curves: m2 | 2.5 |" in table and table.rstrip().endswith("| all | 24.0 |")
