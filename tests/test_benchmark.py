"""benchmarks/primer.py end to end on the tiny preset: every stage runs and writes what README shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY_PRESET, run_python

pytestmark = pytest.mark.slow  # benchmarks/primer.py in subprocesses: every stage of the tiny preset


def test_the_benchmark_runs_every_stage_and_writes_every_file_the_readme_links(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    command = ["benchmarks/primer.py", "--preset", "tiny", "--runs", str(runs), "--out", str(out)]
    result = run_python(command, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.findall(r"stage (\w+) done", result.stdout) == ["train", "evaluate", "curves", "fashion"]
    # The train stage trains every run of every stage (one pool); the later stages reuse them.
    after_train = result.stdout.split("stage train done")[1]
    assert "training (" not in after_train and "reusing" in after_train

    # README and results/README.md show the CPU benchmark's results: each file they link is one this
    # command writes.
    pattern = r"(?<![\w.-])(?:results/)?primer_cpu/([\w/.-]+\.(?:png|md|json))"
    linked = {f for page in ("README.md", "results/README.md") for f in re.findall(pattern, (ROOT / page).read_text())}
    assert {"report.md", "curves.md", "learning_curves.png", "fashion/report.md"} <= linked
    assert sorted(f for f in linked if not (out / f).is_file()) == []

    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == list(TINY_PRESET.families)  # every family, side by side
    points = json.loads((out / "curves.json").read_text())["points"]
    expected = {(f, s or "all") for f in TINY_PRESET.curves.families for s in TINY_PRESET.curves.sizes}
    assert {(p["family"], p["train_size"]) for p in points} == expected
    assert all(0.0 < p["test_acc"] <= 1.0 for p in points)
    fashion = json.loads((out / "fashion" / "report.json").read_text())
    assert fashion["in_distribution"] == "fashion_mnist" and list(fashion["models"]) == list(
        TINY_PRESET.fashion.families
    )
    # The seeded families at every seed, on the deciding suites only: their own runs, not copies.
    seeded = json.loads((out / "seeds" / "report.json").read_text())["models"]
    spec = TINY_PRESET.seeds
    assert set(seeded) == {*spec.families, *(f"{f}@s{s}" for f in spec.families for s in spec["values"])}
    assert all(set(m["suites"]) == set(spec.suites) for m in seeded.values())
    accuracies = {name: m["suites"]["classification"]["accuracy"] for name, m in seeded.items()}
    assert accuracies["naive_bayes"] == report["models"]["naive_bayes"]["suites"]["classification"]["accuracy"]
    assert len({m["sha256"] for m in seeded.values()}) == len(seeded)  # another seed, another checkpoint
    timings = json.loads((out / "benchmark.json").read_text())
    assert set(timings["stages_s"]) == {"train", "evaluate", "curves", "fashion"} and timings["torch_version"]

    # A second invocation finds the complete runs and trains nothing again (here in one process,
    # --jobs 1; the first ran the preset's two workers, which must hand back every run's metrics).
    again = run_python([*command, "--stages", "train", "--jobs", "1"], timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("reusing") == len(TINY_PRESET.families) and "training (" not in again.stdout


def test_a_report_rebuilt_from_two_parts_records_is_the_report_of_one_run_of_both(tmp_path: Path) -> None:
    def primer(out: Path, families: str) -> dict:
        command = ["benchmarks/primer.py", "--preset", "tiny", "--runs", str(tmp_path / "runs"), "--out", str(out)]
        result = run_python(
            [*command, "--stages", "train,evaluate", "--families", families, "--jobs", "1"], timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return {f: json.loads((out / f).read_text()) for f in ("report.json", "seeds/report.json")}

    def comparable(report: dict) -> dict:  # what the measurements say, not when or from which folder
        meta = {k: v for k, v in report.items() if k not in ("models", "wall_time_s", "merged_from")}
        return {"meta": meta, "models": report["models"]}

    primer(tmp_path / "parts", "naive_bayes")
    parts = primer(tmp_path / "parts", "logistic_regression")  # the second part: the first part's records kept
    both = primer(tmp_path / "both", "naive_bayes,logistic_regression")
    assert list(parts["report.json"]["models"]) == ["logistic_regression", "naive_bayes"]  # the preset's order
    for name in parts:
        assert comparable(parts[name]) == comparable(both[name])
    assert sorted(p.name for p in (tmp_path / "parts" / "records").iterdir()) == ["logistic_regression", "naive_bayes"]
    unknown = run_python(
        ["benchmarks/primer.py", "--preset", "tiny", "--families", "nope", "--out", str(tmp_path / "x")]
    )
    assert unknown.returncode != 0 and "nope not in the preset" in unknown.stderr and not (tmp_path / "x").exists()
