"""report.json, report.md and figures from evaluation results (models as columns).

Each suite's table, head-to-head rows and figures come from its record in the registry
(``dgbench.evaluation.suites``): this module only lays them out and never names a suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgbench.evaluation.suites import SUITES
from dgbench.family import LEARNS
from dgbench.runtime import write_json

NA = "N/A"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def _table(title: str, rows: dict[str, dict[str, Any]], models: list[str]) -> list[str]:
    lines = [f"### {title}", "", "| | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(_fmt(cells.get(m)) for m in models) + " |" for row, cells in rows.items()]
    return lines + [""]


def strip_private(obj: Any) -> Any:
    """Drop keys starting with '_' (curves, image grids): they go to figures, not JSON."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


def _of(results: dict[str, dict[str, Any]], suite: str) -> dict[str, dict[str, Any] | None]:
    """One suite's result per model (None where it is N/A or was not run)."""
    return {m: r["suites"].get(suite) for m, r in results.items()}


def suite_tables(results: dict[str, dict[str, Any]]) -> list[str]:
    """One table per registered suite, run or not (a suite not run reads N/A)."""
    lines: list[str] = []
    for suite in SUITES.values():
        lines += _table(suite.title, suite.rows(_of(results, suite.name), results), list(results))
    return lines


def summary_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The primer's head-to-head table, with measured values in its cells."""
    suites = sorted((s for s in SUITES.values() if s.summary), key=lambda s: s.summary_rank)
    rows: dict[str, dict[str, Any]] = {}
    for m, r in results.items():
        learns = r.get("learns") or LEARNS.get(r["kind"], "")  # records written before families declared it
        rows.setdefault("Primary goal / what it learns", {})[m] = (
            f"{r['kind']}: {learns}; can {', '.join(r['capabilities'])}"
        )
        for suite in suites:
            for row, cell in suite.summary(r["suites"].get(suite.name), r).items():
                rows.setdefault(row, {})[m] = cell
    return _table("Head-to-head (the primer's table, measured)", rows, list(results))


def figures(results: dict[str, dict[str, Any]], out_dir: Path) -> list[str]:
    return [name for s in SUITES.values() if s.figure for name in s.figure(_of(results, s.name), out_dir)]


def write_report(results: dict[str, dict[str, Any]], meta: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = figures(results, out_dir)
    write_json(out_dir / "report.json", {**meta, "models": strip_private(results)})
    lines = ["# dgbench evaluation report", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, dict)]
    lines += [f"- {name}: `{result['checkpoint']}`" for name, result in results.items()] + [""]
    lines += summary_table(results) + ["## Suites", ""] + suite_tables(results)
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in written] + [""]
    (out_dir / "report.md").write_text("\n".join(lines))
