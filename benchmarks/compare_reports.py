"""Two benchmark reports side by side for some families: what a change of recipe did to the numbers.

    python benchmarks/compare_reports.py OLD NEW [--families vae gan ...]

OLD and NEW are report.json files, or ``REV:PATH`` for a committed one (read with ``git show``), e.g.

    python benchmarks/compare_reports.py 77cc267:results/primer_cpu/report.json results/primer_cpu/report.json \\
        --families vae gan pixelcnn diffusion m2 vae_finetuned

Prints a Markdown table: accuracy (Wilson 95 %), FID (bootstrap 95 %), precision / recall, sample
class accuracy, the declared outlier score's mean AUROC over every set, and the training run's own
test metrics and time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load(source: str) -> dict[str, Any]:
    if ":" in source and not Path(source).exists():
        return json.loads(
            subprocess.run(["git", "-C", str(ROOT), "show", source], check=True, capture_output=True, text=True).stdout
        )
    return json.loads(Path(source).read_text())


def cells(report: dict[str, Any], family: str) -> dict[str, str]:
    suites, out = report["models"][family]["suites"], {}
    if c := suites.get("classification"):
        low, high = c["accuracy_ci"]
        out["accuracy %"] = f"{100 * c['accuracy']:.2f} [{100 * low:.1f}, {100 * high:.1f}] (n = {c['n']})"
    if q := suites.get("sample_quality"):
        out["FID"] = f"{q['fid']:.2f} [{q['fid_ci'][0]:.2f}, {q['fid_ci'][1]:.2f}]"
        out["precision / recall"] = f"{q['precision']:.2f} / {q['recall']:.2f}"
        out["sample class accuracy %"] = f"{100 * q['class_accuracy']:.1f}"
    if o := suites.get("ood"):
        mean = o["scores"][o["primary_score"]]["mean_auroc"]
        out["declared outlier score, mean AUROC"] = f"{mean['all'] if isinstance(mean, dict) else mean:.3f}"
    training = report["models"][family]["training"]
    for key in ("test/nll", "test/loss", "test/acc", "train_time_s"):
        if key in training:
            out[f"training run {key}"] = f"{training[key]:.4g}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--families", nargs="+")
    args = parser.parse_args()
    old, new = load(args.old), load(args.new)
    families = args.families or [f for f in new["models"] if f in old["models"]]
    print("| family | measure | old | new |\n|---|---|---|---|")
    for family in families:
        before, after = cells(old, family), cells(new, family)
        for key in before:
            print(f"| {family} | {key} | {before[key]} | {after.get(key, '–')} |")


if __name__ == "__main__":
    main()
