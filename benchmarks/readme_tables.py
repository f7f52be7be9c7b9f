"""README's head-to-head tables, written from a benchmark's report.json and curves.json (nothing typed by hand).

    python benchmarks/readme_tables.py [results/primer_cpu] > results/primer_cpu/tables.md

One row per family (the primer's table turned on its side: fourteen families do not fit as columns),
in two tables: deciding, generating and what it costs; missing features, outliers and
interpretability. Every cell is the report's number with its 95 % interval where the report has one;
N/A where the family lacks the capability; "–" where the benchmark did not measure it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def pct(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "N/A"
    return f"{100 * value:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def auroc(value: float, ci: list[float] | None = None) -> str:
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def curve_cell(points: list[dict[str, Any]], family: str, size: int) -> str:
    accs = [100 * p["test_acc"] for p in points if p["family"] == family and p["train_size"] == size]
    if not accs:
        return "–"
    mean = sum(accs) / len(accs)
    if len(accs) == 1:
        return f"{mean:.1f} (1 seed)"
    sd = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5
    return f"{mean:.1f} ± {sd:.1f}"


def first_table(models: dict[str, Any], points: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| family | kind | test accuracy % [95 %] (n) | NLL · ECE, temperature-scaled (raw) | can generate: FID [95 %] · "
        "class acc · recall · diversity (n) | 100 labels, no other seen (%) | training | classify images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        s = m["suites"]
        c = s.get("classification")
        acc = f"{pct(c['accuracy'], c['accuracy_ci'])} ({c['n']})" if c else "N/A"
        if c:
            raw = "N/A" if c.get("nll") is None else f"{c['nll']:.3f} · {c['ece']:.3f}"
            scaled = f"{c['nll_ts']:.3f} · {c['ece_ts']:.3f}" if "nll_ts" in c else "–"
            calib = f"{scaled} ({raw})"
        else:
            calib = "N/A"
        q = s.get("sample_quality")
        if q:
            diversity = f" · {q['diversity']:.2f}" if "diversity" in q else ""
            gen = (
                f"{q['fid']:.2f} [{q['fid_ci'][0]:.2f}, {q['fid_ci'][1]:.2f}] · {100 * q['class_accuracy']:.0f} % · "
                f"{q['recall']:.2f}{diversity} ({q['n']})"
            )
        else:
            gen = "no"
        training = m.get("training") or {}
        cost = f"{training.get('train_time_s', float('nan')):.0f} s, {s['cost']['parameters']:,} params"
        speed = s["cost"].get("classify_images_per_s")
        lines.append(
            f"| {name} | {m['kind']} | {acc} | {calib} | {gen} | {curve_cell(points, name, 100)} | {cost} | "
            f"{'N/A' if speed is None else f'{speed:,.0f}' if speed >= 10 else f'{speed:.1f}'} |"
        )
    return lines


def second_table(models: dict[str, Any]) -> list[str]:
    lines = [
        "| family | 50 % pixels missing % [95 %] | bottom half missing % | declared score | outliers far: mean AUROC | "
        "outliers near: mean AUROC | vs letters: AUROC [95 %] | deletion gain [95 %] | numbers one decision reads |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        s = m["suites"]
        mf = s.get("missing_features")

        def missing(condition: str, mf: dict[str, Any] | None = mf) -> str:
            if not mf:
                return "N/A"
            r = mf[condition]
            cell = pct(r["accuracy"], r.get("accuracy_ci"))
            if r.get("impute_then_classify_accuracy") is not None:
                cell += f" (impute→classify {pct(r['impute_then_classify_accuracy'])})"
            return f"{cell} (n = {mf['n']})" if condition == "random_50" else cell

        o = s.get("ood")
        if o:
            score = o["primary_score"]
            means = o["scores"][score]["mean_auroc"]
            letters = o["scores"][score].get("letters")
            ood_cells = [
                score,
                f"{means['far']:.3f}",
                f"{means['near']:.3f}",
                auroc(letters["auroc"], letters.get("auroc_ci")) if letters else "–",
            ]
        else:
            ood_cells = ["N/A"] * 4
        i = s.get("interpretability")
        interp = (
            [f"{i['deletion_gain_auc']:.3f} [{i['deletion_gain_auc_ci'][0]:.3f}, {i['deletion_gain_auc_ci'][1]:.3f}]"
             f" (n = {i['n']})", f"{i['decision_parameters']:,}"]
            if i
            else ["N/A", "N/A"]
        )  # fmt: skip
        lines.append(
            f"| {name} | {missing('random_50')} | {missing('bottom_half')} | " + " | ".join(ood_cells + interp) + " |"
        )
    return lines


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/primer_cpu")
    report = json.loads((folder / "report.json").read_text())
    curves = json.loads((folder / "curves.json").read_text()) if (folder / "curves.json").exists() else {"points": []}
    models = report["models"]
    print(f"<!-- python benchmarks/readme_tables.py {folder} -->")
    print("\n".join(first_table(models, curves["points"])))
    print()
    print("\n".join(second_table(models)))


if __name__ == "__main__":
    main()
