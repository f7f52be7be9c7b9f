"""The benchmark scripts that assemble committed results from parts: seed summaries and merged
classifier parts. Expected values are computed here by hand, not by the scripts."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
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

    merged = script("diffusion_report").merge_classify([part(500, 500, 490), part(0, 500, 492)])
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
        script("diffusion_report").merge_classify([part(0, 500, 492), part(500, 500, 490, ckpt="other")])
