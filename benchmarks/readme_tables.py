"""README's findings and head-to-head tables, written from a benchmark's report.json and curves.json
(nothing typed by hand).

    python benchmarks/readme_tables.py [results/primer_cpu] > results/primer_cpu/tables.md
    python benchmarks/readme_tables.py results/primer_cpu --readme README.md   # README's findings table
    python benchmarks/readme_tables.py results/primer_cpu --reference results/primer_reference  # side by side

The findings table (one row per primer claim, ``dgbench.evaluation.findings``) replaces what stands
between README's ``<!-- findings -->`` and ``<!-- /findings -->`` markers; tests/test_readme.py checks
that the committed README holds exactly what this writes from the committed report.

One row per family (the primer's table turned on its side: fourteen families do not fit as columns),
in two tables: deciding, generating and what it costs; missing features, outliers and
interpretability. Every cell is the report's number with its 95 % interval where the report has one;
N/A where the family lacks the capability; "–" where the benchmark did not measure it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dgbench.evaluation.findings import findings, markdown, read_run, side_by_side

BEGIN, END = "<!-- findings -->", "<!-- /findings -->"


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


def findings_block(folder: Path) -> str:
    """README's findings table between its markers, naming the command that wrote it."""
    record = folder / "findings.json"  # the benchmark writes it; its "previous" says what changed
    previous = json.loads(record.read_text()).get("previous") if record.exists() else None
    lines = [BEGIN, f"<!-- python benchmarks/readme_tables.py {folder.as_posix()} --readme README.md -->"]
    return "\n".join(lines + markdown(findings(*read_run(folder)), folder.as_posix(), previous) + [END])


def with_findings(readme: str, folder: Path) -> str:
    """``readme`` with the text between the findings markers replaced by the table of ``folder``."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"error: README has no {BEGIN} ... {END} block: add the two markers where the table goes")
    head, rest = readme.split(BEGIN, 1)
    return head + findings_block(folder) + rest.split(END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="results/primer_cpu", type=Path)
    parser.add_argument("--readme", type=Path, help="rewrite this README's findings table in place")
    parser.add_argument("--reference", type=Path, help="print each claim's verdict here and in this folder's run")
    args = parser.parse_args()
    if args.reference:
        rows = [findings(*read_run(folder)) for folder in (args.folder, args.reference)]
        print("\n".join(side_by_side(*rows, (args.folder.as_posix(), args.reference.as_posix()))))
        return
    if args.readme:
        args.readme.write_text(with_findings(args.readme.read_text(), args.folder))
        print(f"{args.readme}: findings table from {args.folder}")
        return
    report, curves, seeds = read_run(args.folder)
    models, curves = report["models"], curves or {"points": []}
    print(f"<!-- python benchmarks/readme_tables.py {args.folder.as_posix()} -->")
    print("\n".join(markdown(findings(report, curves, seeds), args.folder.as_posix())))
    print()
    print("\n".join(first_table(models, curves["points"])))
    print()
    print("\n".join(second_table(models)))


if __name__ == "__main__":
    main()
