"""Out-of-distribution detection: every anomaly score of a model against every OOD set.

Each family declares its primary score (``primary_score``) in code, with the reason, before any
OOD test set was scored; the head-to-head table uses only it, as the mean AUROC over the near and
over the far sets (``common.NEAR_OOD``). Every score against every set stays in the detailed table,
each AUROC with DeLong's 95 % interval (Newcombe's score interval where DeLong's collapses at 0 or 1)
and its n; each mean AUROC with a 95 % percentile-bootstrap interval over images (``mean_auroc_ci``,
``stats.mean_auroc_bootstrap``, ``stats.BOOTSTRAP_REPLICATES`` replicates seeded by the evaluation's seed).
Two models' primary scores are compared on the same images by DeLong's paired test, per set and per
mean, with Holm's adjustment over every pair of models in that row (``pairwise_auroc``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgbench.evaluation import metrics, stats
from dgbench.evaluation.suites.common import NEAR_OOD, Context, Results, Suite, batched, plt, save_figure

SIGNIFICANCE = 0.05  # a pairwise AUROC difference is marked * where its Holm-adjusted p is below it


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
                "auroc_ci_method": delong["ci_method"],
                "n_out": delong["n_out"],
            }
        groups = {"all": list(per_set), "near": results["near"], "far": results["far"]}
        results["scores"][score_name] = {
            **per_set,
            "mean_auroc": {
                group: sum(per_set[s]["auroc"] for s in sets) / len(sets) for group, sets in groups.items() if sets
            },
            "mean_auroc_ci": stats.mean_auroc_bootstrap(
                ins, {s: outs[score_name] for s, outs in out_scores.items()}, groups, seed=ctx.seed
            ),
        }
    results["bootstrap_replicates"] = stats.BOOTSTRAP_REPLICATES
    if model.primary_score in in_scores:  # per image, in data order: the pairing for DeLong's paired test
        results["_primary_scores"] = {
            "in": in_scores[model.primary_score],
            "out": {s: outs[model.primary_score] for s, outs in out_scores.items()},
        }
    results["_curves"] = {
        (score_name, ood_name): metrics.roc_curve(ins, out_scores[ood_name][score_name])
        for score_name, ins in in_scores.items()
        for ood_name in out_scores
    }
    return results


def _sets(scores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in scores.items() if k not in ("mean_auroc", "mean_auroc_ci")}


def pairwise_auroc(results: Results) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """DeLong's paired test (``stats.delong_paired``) of every two models' primary scores, on each OOD set
    and on each mean (all, near, far sets): {row: {(a, b): test}}, both orders, ``difference`` = a - b.

    Both models scored the same images: the in-distribution test images and each set's outliers, paired
    by position on the first min(n) of each (every model draws them from the same evaluation data, in
    the same order). ``p_value`` is the test's; ``p_holm`` is Holm's (1979) adjusted p-value over the family
    of every pair of models in that row: the test an ordering of the models on that set (or mean) must pass.
    """
    scored = {m: r for m, r in results.items() if r and "_primary_scores" in r}
    rows: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    names = list(scored)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = scored[a], scored[b]
            sa, sb = ra["_primary_scores"], rb["_primary_scores"]
            k_in = min(len(sa["in"]), len(sb["in"]))
            shared = [s for s in sa["out"] if s in sb["out"]]
            groups = {s: [s] for s in shared}
            for group in ("all", "near", "far"):
                members = shared if group == "all" else [s for s in shared if s in ra[group] and s in rb[group]]
                if members and (group == "all" or set(ra[group]) == set(rb[group])):
                    groups[f"mean, {group} sets"] = members
            for row, members in groups.items():
                k = {s: min(len(sa["out"][s]), len(sb["out"][s])) for s in members}
                rows.setdefault(row, {})[a, b] = {
                    **stats.delong_paired(
                        sa["in"][:k_in],
                        {s: sa["out"][s][: k[s]] for s in members},
                        sb["in"][:k_in],
                        {s: sb["out"][s][: k[s]] for s in members},
                    ),
                    "n_in": k_in,
                }
    for tests in rows.values():
        adjusted = stats.holm({pair: test["p_value"] for pair, test in tests.items()})
        for (a, b), test in list(tests.items()):
            test["p_holm"] = adjusted[a, b]
            tests[b, a] = {**test, "difference": -test["difference"], "z": None if test["z"] is None else -test["z"]}
    return rows


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
                ci = per_set.get("mean_auroc_ci", {}).get(group)  # absent from records made before it
                cell = f"{score}{mark}: {value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + "<br>"
                table.setdefault(row, {})[m] = table.get(row, {}).get(m, "") + cell
    for row, tests in pairwise_auroc(results).items():
        label = f"primary score vs others, {row}: AUROC difference, paired DeLong p (Holm)"
        for (a, b), test in tests.items():
            star = " *" if test["p_holm"] < SIGNIFICANCE else ""
            cell = f"vs {b}: {test['difference']:+.3f}, p {test['p_value']:.2g} ({test['p_holm']:.2g}){star}<br>"
            table.setdefault(label, {})[a] = table.get(label, {}).get(a, "") + cell
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    """The declared primary score only: mean AUROC over the near and the far sets with their bootstrap
    intervals (where the record has them), n per set."""
    if not result:
        return {}
    primary = result["primary_score"]
    per_set = result["scores"][primary]
    means, sets, cis = per_set["mean_auroc"], _sets(per_set), per_set.get("mean_auroc_ci", {})

    def mean(group: str) -> str:
        ci = cis.get(group)
        return f"{means.get(group, float('nan')):.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    near = ", ".join(f"{s} {sets[s]['auroc']:.3f}" for s in result["near"])
    return {
        "Outlier detection (primary score, mean AUROC)": (
            f"near {mean('near')} ({near}); far {mean('far')}; {primary}, n = {result['n']} per set"
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
    title=(
        "Out-of-distribution detection (AUROC [95 % DeLong interval] / FPR@95, per score; * = primary; "
        "mean AUROC [95 % bootstrap interval over images]; pairwise rows: the primary scores' AUROC difference, "
        "DeLong's paired p (Holm-adjusted over every pair of models), * = Holm-adjusted p < 0.05)"
    ),
    rows=rows,
    summary=summary,
    summary_rank=4,
    figure=figure,
)
