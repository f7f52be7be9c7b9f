"""One recipe over several seeds: each seed's numbers and their mean with a 95 % t-interval.

    python benchmarks/seed_summary.py REPORT [--suite sample_quality]
        [--metrics fid precision recall class_accuracy diversity_min pixel_diversity_min] [--out PATH]

REPORT is an evaluate.py report.json whose models are one recipe trained with different seeds (e.g.
``python evaluate.py ckpts='[run_seed42,run_seed43,run_seed44]' suites='[sample_quality]'``). Each
metric is read from the suite's result per model; the seeds' spread gives the interval
(``dgbench.evaluation.stats.seed_mean``: Student's t with n - 1 degrees of freedom), so the mean
carries what a rerun with another seed would move. Training seconds come from each run's metrics.
Writes a Markdown table (stdout, and ``--out`` with a .json beside it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dgbench.evaluation.stats import seed_mean

DEFAULT_METRICS = ["fid", "precision", "recall", "class_accuracy", "diversity_min", "pixel_diversity_min"]


def summarise(report: dict[str, Any], suite: str, metrics: list[str]) -> dict[str, Any]:
    """{metric: {"per_model": {name: value}, **seed_mean}} for the metrics and the training time;
    the suite's real-data floor beside them where it has one."""
    models = report["models"]
    rows: dict[str, Any] = {}
    for metric in [*metrics, "train_time_s"]:
        per_model = {
            name: (m["training"] if metric == "train_time_s" else m["suites"][suite]).get(metric)
            for name, m in models.items()
        }
        if None in per_model.values():
            missing = [name for name, v in per_model.items() if v is None]
            raise SystemExit(f"error: {metric!r} missing for {missing} in suite {suite!r}; pick from --metrics")
        floor = next(iter(models.values()))["suites"][suite].get("floor", {}).get(metric)
        rows[metric] = {"per_model": per_model, **seed_mean(list(per_model.values())), "floor": floor}
    return rows


def markdown(rows: dict[str, Any]) -> str:
    names = list(next(iter(rows.values()))["per_model"])
    lines = [
        "| metric | " + " | ".join(names) + " | mean [95 % t-interval over seeds] | real-data floor |",
        "|---" * (len(names) + 3) + "|",
    ]
    for metric, row in rows.items():
        ci = f" [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]" if row["ci"] else ""
        floor = "" if row["floor"] is None else f"{row['floor']:.3f}"
        values = " | ".join(f"{v:.3f}" for v in row["per_model"].values())
        lines.append(f"| {metric} | {values} | **{row['mean']:.3f}**{ci} | {floor} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--suite", default="sample_quality")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--out", type=Path, help="also write the table here (and the numbers as .json)")
    args = parser.parse_args()
    if not args.report.is_file():
        raise SystemExit(f"error: no report at {args.report}; pass an evaluate.py report.json")
    rows = summarise(json.loads(args.report.read_text()), args.suite, args.metrics)
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"report": str(args.report), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
