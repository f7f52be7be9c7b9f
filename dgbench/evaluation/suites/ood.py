"""Out-of-distribution detection: every anomaly score of a model against every OOD set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgbench.evaluation import metrics
from dgbench.evaluation.suites.common import Context, Results, Suite, batched, plt, save_figure


def ood(model: Any, ctx: Context) -> dict[str, Any]:
    """Every anomaly score of the model against every OOD set; in-distribution = test images."""
    n = ctx.budget["ood"]
    score = lambda x: batched(model.score_anomalies, x, batch_size=ctx.batch_size, device=ctx.device)  # noqa: E731
    in_scores = score(ctx.data.test_images[:n])
    out_scores = {name: score(images) for name, images in ctx.data.ood.items()}
    results: dict[str, Any] = {"n": n, "in_distribution": ctx.data.in_dist, "scores": {}}
    for score_name, ins in in_scores.items():
        results["scores"][score_name] = {
            ood_name: metrics.ood_metrics(ins, outs[score_name]) for ood_name, outs in out_scores.items()
        }
    results["_curves"] = {
        (score_name, ood_name): metrics.roc_curve(ins, out_scores[ood_name][score_name])
        for score_name, ins in in_scores.items()
        for ood_name in out_scores
    }
    return results


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """One row per OOD set; a cell lists every score of the model."""
    table: dict[str, dict[str, str]] = {}
    for m, r in results.items():
        for score, per_set in ((r or {}).get("scores") or {}).items():
            for ood_set, values in per_set.items():
                cell = f"{values['auroc']:.3f} / {values['fpr95']:.3f}"
                table.setdefault(ood_set, {})[m] = table.get(ood_set, {}).get(m, "") + f"{score}: {cell}<br>"
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    """The model's best score against the other real dataset."""
    scores = (result or {}).get("scores") or {}
    if not scores:
        return {}
    ood_set = next(iter(next(iter(scores.values()))))  # the other real dataset comes first
    best = max(scores, key=lambda k: scores[k][ood_set]["auroc"])
    return {"Outlier detection": f"AUROC vs {ood_set} {scores[best][ood_set]['auroc']:.3f} ({best})"}


def figure(results: Results, out_dir: Path) -> list[str]:
    """ROC curves of every score against the other real dataset, one panel per model."""
    with_curves = {m: r["_curves"] for m, r in results.items() if r}
    if not with_curves:
        return []
    fig, axes = plt.subplots(1, len(with_curves), figsize=(4.5 * len(with_curves), 4), squeeze=False)
    for ax, (m, curves) in zip(axes[0], with_curves.items()):
        ood_set = next(iter(curves))[1]
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
    title="Out-of-distribution detection (AUROC / FPR@95, per anomaly score)",
    rows=rows,
    summary=summary,
    summary_rank=4,
    figure=figure,
)
