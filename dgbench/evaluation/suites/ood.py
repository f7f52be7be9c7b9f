"""Out-of-distribution detection: every anomaly score of a model against every OOD set.

Each family declares its primary score (``primary_score``) in code, with the reason, before any
OOD test set was scored; the head-to-head table uses only it, as the mean AUROC over the near and
over the far sets (``common.NEAR_OOD``). Every score against every set stays in the detailed table,
each AUROC with DeLong's 95 % interval and its n.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgbench.evaluation import metrics, stats
from dgbench.evaluation.suites.common import NEAR_OOD, Context, Results, Suite, batched, plt, save_figure


def ood(model: Any, ctx: Context) -> dict[str, Any]:
    """Every anomaly score of the model against every OOD set; in-distribution = test images."""
    n = ctx.budget["ood"]
    score = lambda x: batched(model.score_anomalies, x, batch_size=ctx.batch_size, device=ctx.device)  # noqa: E731
    in_scores = score(ctx.data.test_images[:n])
    out_scores = {name: score(images[:n]) for name, images in ctx.data.ood.items()}  # n per set too
    results: dict[str, Any] = {
        "n": n,
        "in_distribution": ctx.data.in_dist,
        "primary_score": model.primary_score,
        "near": [s for s in out_scores if s in NEAR_OOD],
        "far": [s for s in out_scores if s not in NEAR_OOD],
        "scores": {},
    }
    for score_name, ins in in_scores.items():
        per_set = {}
        for ood_name, outs in out_scores.items():
            delong = stats.auroc_delong(ins, outs[score_name])
            per_set[ood_name] = {
                **metrics.ood_metrics(ins, outs[score_name]),
                "auroc_ci": list(delong["ci"]),
                "n_out": delong["n_out"],
            }
        results["scores"][score_name] = {
            **per_set,
            "mean_auroc": {
                group: sum(per_set[s]["auroc"] for s in sets) / len(sets)
                for group, sets in (("all", list(per_set)), ("near", results["near"]), ("far", results["far"]))
                if sets
            },
        }
    results["_curves"] = {
        (score_name, ood_name): metrics.roc_curve(ins, out_scores[ood_name][score_name])
        for score_name, ins in in_scores.items()
        for ood_name in out_scores
    }
    return results


def _sets(scores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in scores.items() if k != "mean_auroc"}


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """One row per OOD set and the means; a cell lists every score, the primary one marked *."""
    table: dict[str, dict[str, str]] = {}
    for m, r in results.items():
        for score, per_set in ((r or {}).get("scores") or {}).items():
            mark = "*" if score == r.get("primary_score") else ""
            for ood_set, v in _sets(per_set).items():
                lo, hi = v["auroc_ci"]
                cell = f"{score}{mark}: {v['auroc']:.3f} [{lo:.3f}, {hi:.3f}] / {v['fpr95']:.3f}<br>"
                table.setdefault(ood_set, {})[m] = table.get(ood_set, {}).get(m, "") + cell
            for group, value in per_set["mean_auroc"].items():
                row = f"mean AUROC, {group} sets"
                table.setdefault(row, {})[m] = table.get(row, {}).get(m, "") + f"{score}{mark}: {value:.3f}<br>"
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    """The declared primary score only: mean AUROC over the near and the far sets, n per set."""
    if not result:
        return {}
    primary = result["primary_score"]
    per_set = result["scores"][primary]
    means, sets = per_set["mean_auroc"], _sets(per_set)
    near = ", ".join(f"{s} {sets[s]['auroc']:.3f}" for s in result["near"])
    return {
        "Outlier detection (primary score, mean AUROC)": (
            f"near {means.get('near', float('nan')):.3f} ({near}); far {means.get('far', float('nan')):.3f}; "
            f"{primary}, n = {result['n']} per set"
        )
    }


def figure(results: Results, out_dir: Path) -> list[str]:
    """ROC curves of every score against the other real dataset and the letters, one panel each."""
    with_curves = {m: r["_curves"] for m, r in results.items() if r}
    if not with_curves:
        return []
    sets = list(dict.fromkeys(name for curves in with_curves.values() for _, name in curves))
    shown = [s for s in (sets[0], "letters") if s in sets]
    fig, axes = plt.subplots(
        len(shown), len(with_curves), figsize=(4.5 * len(with_curves), 4 * len(shown)), squeeze=False
    )
    for row, ood_set in enumerate(shown):
        for ax, (m, curves) in zip(axes[row], with_curves.items()):
            for (score, name), (fpr, tpr) in curves.items():
                if name == ood_set:
                    ax.plot(fpr.numpy(), tpr.numpy(), label=score)
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set(title=f"{m}: OOD = {ood_set}", xlabel="false positive rate", ylabel="true positive rate")
            ax.legend(fontsize=8)
    save_figure(fig, out_dir / "roc.png")
    return ["roc.png"]


SUITE = Suite(
    name="ood",
    needs=("score_anomalies",),
    run=ood,
    title="Out-of-distribution detection (AUROC [95 % DeLong interval] / FPR@95, per score; * = primary)",
    rows=rows,
    summary=summary,
    summary_rank=4,
    figure=figure,
)
