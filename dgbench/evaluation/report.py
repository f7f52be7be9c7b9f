"""report.json, report.md and figures from evaluation results (models as columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from dgbench.runtime import write_json  # noqa: E402

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


def suite_tables(results: dict[str, dict[str, Any]]) -> list[str]:
    models = list(results)
    suite = lambda m, s: results[m]["suites"].get(s)  # noqa: E731
    lines: list[str] = []

    rows: dict[str, dict[str, Any]] = {}
    for metric in ("accuracy", "nll", "ece"):
        rows[metric] = {m: (suite(m, "classification") or {}).get(metric) for m in models}
    lines += _table("Classification (test set)", rows, models)

    rows = {}
    for m in models:
        for score, per_set in ((suite(m, "ood") or {}).get("scores") or {}).items():
            for ood_set, values in per_set.items():
                cell = f"{values['auroc']:.3f} / {values['fpr95']:.3f}"
                rows.setdefault(ood_set, {})[m] = rows.get(ood_set, {}).get(m, "") + f"{score}: {cell}<br>"
    lines += _table("Out-of-distribution detection (AUROC / FPR@95, per anomaly score)", rows, models)

    rows = {}
    for m in models:
        for setting, values in (suite(m, "missing_features") or {}).items():
            if isinstance(values, dict):
                cell = f"{values['accuracy']:.4f}"
                if "impute_then_classify_accuracy" in values:
                    cell += f" (impute→classify {values['impute_then_classify_accuracy']:.4f}, MSE {values['impute_mse']:.4f})"
                rows.setdefault(setting, {})[m] = cell
    lines += _table("Missing features (accuracy; zero-filled input + mask)", rows, models)

    rows = {}
    for metric in ("fid", "kid", "precision", "recall", "class_accuracy", "sample_images_per_s"):
        rows[metric] = {m: (suite(m, "sample_quality") or {}).get(metric) for m in models}
    for metric in ("fid", "kid", "precision", "recall"):
        rows[f"real-data floor: {metric}"] = {
            m: ((suite(m, "sample_quality") or {}).get("floor") or {}).get(metric) for m in models
        }
    lines += _table("Sample quality (feature-classifier FID/KID, k-NN precision/recall)", rows, models)

    rows = {"parameters": {m: (suite(m, "cost") or {}).get("parameters") for m in models}}
    rows["train time (s)"] = {m: results[m]["training"].get("train_time_s") for m in models}
    rows["trained on"] = {m: results[m]["training"].get("device") for m in models}
    for m in models:
        for key, value in (suite(m, "cost") or {}).items():
            if key.endswith("_per_s"):
                rows.setdefault(key.replace("_", " "), {})[m] = value
    lines += _table("Cost", rows, models)
    return lines


def summary_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The primer's head-to-head table, with measured values in its cells."""
    models = list(results)
    rows: dict[str, dict[str, Any]] = {}
    for m, r in results.items():
        s = r["suites"]
        learns = "p(y|x)" if r["kind"] == "discriminative" else "p(x|y), p(x)"
        rows.setdefault("Primary goal / what it learns", {})[m] = (
            f"{r['kind']}: {learns}; can {', '.join(r['capabilities'])}"
        )
        if s.get("classification"):
            rows.setdefault("Test accuracy", {})[m] = f"{s['classification']['accuracy']:.4f}"
        samples = s.get("sample_quality")
        rows.setdefault("Can generate", {})[m] = (
            f"yes: FID {samples['fid']:.2f} (floor {samples['floor']['fid']:.2f}), class acc {samples['class_accuracy']:.3f}"
            if samples
            else "yes (samples suite not run)"
            if "sample" in r["capabilities"]
            else "no"
        )
        missing = (s.get("missing_features") or {}).get("random_50")
        if missing:
            cell = f"50% missing: acc {missing['accuracy']:.4f}"
            if "impute_then_classify_accuracy" in missing:
                cell += f", impute→classify {missing['impute_then_classify_accuracy']:.4f}"
            rows.setdefault("Missing features", {})[m] = cell
        scores = (s.get("ood") or {}).get("scores") or {}
        if scores:
            ood_set = next(iter(next(iter(scores.values()))))  # the other real dataset comes first
            best = max(scores, key=lambda k: scores[k][ood_set]["auroc"])
            rows.setdefault("Outlier detection", {})[m] = (
                f"AUROC vs {ood_set} {scores[best][ood_set]['auroc']:.3f} ({best})"
            )
        train_time = r["training"].get("train_time_s")
        params = (s.get("cost") or {}).get("parameters")
        cell = f"{train_time:.0f} s on {r['training'].get('device', '?')}" if train_time else NA
        rows.setdefault("Training cost", {})[m] = f"{cell}, {params:,} params" if train_time and params else cell
    return _table("Head-to-head (the primer's table, measured)", rows, models)


def figures(results: dict[str, dict[str, Any]], out_dir: Path) -> list[str]:
    written: list[str] = []
    with_curves = {m: r["suites"]["ood"]["_curves"] for m, r in results.items() if r["suites"].get("ood")}
    if with_curves:
        fig, axes = plt.subplots(1, len(with_curves), figsize=(4.5 * len(with_curves), 4), squeeze=False)
        for ax, (m, curves) in zip(axes[0], with_curves.items()):
            ood_set = next(iter(curves))[1]
            for (score, name), (fpr, tpr) in curves.items():
                if name == ood_set:
                    ax.plot(fpr.numpy(), tpr.numpy(), label=score)
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set(title=f"{m}: OOD = {ood_set}", xlabel="false positive rate", ylabel="true positive rate")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "roc.png", dpi=120)
        plt.close(fig)
        written.append("roc.png")
    with_missing = {
        m: r["suites"]["missing_features"] for m, r in results.items() if r["suites"].get("missing_features")
    }
    if with_missing:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, res in with_missing.items():
            rand = [res[k] for k in sorted(res) if k.startswith("random_")]
            x = [r["fraction_missing"] for r in rand]
            line = ax.plot(x, [r["accuracy"] for r in rand], marker="o", label=m)[0]
            if "impute_then_classify_accuracy" in rand[0]:
                ax.plot(
                    x,
                    [r["impute_then_classify_accuracy"] for r in rand],
                    ls="--",
                    marker="x",
                    color=line.get_color(),
                    label=f"{m} (impute→classify)",
                )
        ax.set(xlabel="fraction of pixels missing", ylabel="test accuracy", title="Missing features", ylim=(0, 1))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "missing_features.png", dpi=120)
        plt.close(fig)
        written.append("missing_features.png")
    for m, r in results.items():
        samples = r["suites"].get("sample_quality")
        if samples:
            save_image(samples["_grid"], out_dir / f"samples_{m}.png", nrow=10)
            written.append(f"samples_{m}.png")
    return written


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
