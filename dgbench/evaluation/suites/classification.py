"""Accuracy (with its Wilson interval), NLL and calibration on the test set, and which
differences in accuracy between two models are significant (McNemar's test on the same images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dgbench import calibration
from dgbench.data import held_out_validation, to_float
from dgbench.evaluation import metrics, stats
from dgbench.evaluation.suites.common import Context, Results, Suite, batched, plt, save_figure, with_ci

SIGNIFICANCE = 0.05


def classification(model: Any, ctx: Context) -> dict[str, Any]:
    n = min(ctx.budget["classification"], len(ctx.data.test_images))
    labels = ctx.data.test_labels[:n]
    log_probs = batched(model.classify, ctx.data.test_images[:n], batch_size=ctx.batch_size, device=ctx.device)
    result = {"n": n, **metrics.classification_metrics(log_probs, labels)}
    correct = log_probs.argmax(1) == labels
    result["accuracy_ci"] = list(stats.wilson(int(correct.sum()), n))
    result["_confidence"] = log_probs.amax(1).exp()  # for the reliability diagram
    result.update(temperature_scaled(model, ctx, log_probs, labels))
    # A family whose class scores are not probabilities (an arbitrary temperature) says why;
    # its raw NLL and ECE would describe nothing, so they are N/A (the temperature-scaled ones stand).
    reason = getattr(model, "uncalibrated_reason", None)
    if reason:
        result.update(nll=None, ece=None, calibration_na=reason)
        if "nll_ts" in result:
            result["_confidence"] = result["_confidence_ts"]
    result.pop("_confidence_ts", None)
    result["_correct"] = correct  # per image, in test order: the pairing for McNemar's test
    return result


def temperature_scaled(model: Any, ctx: Context, log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """NLL and ECE after temperature scaling (dgbench.calibration) fitted on ``budget.calibration`` images of
    the validation split the checkpoint records (never test images), for every family that has one: the
    like-for-like comparison of families whose raw scores are not probabilities with those whose are."""
    n_val, split = ctx.budget.get("calibration", 0), getattr(model, "validation_split", None)
    if not n_val or not split:
        why = "budget.calibration=0" if not n_val else "the checkpoint records no validation split"
        return {"temperature_na": why}
    images, val_labels = held_out_validation(split["dataset"], split["val_size"], split["seed"], ctx.data_root)
    if split["dataset"] != ctx.data.in_dist:
        return {"temperature_na": f"trained on {split['dataset']}, evaluated on {ctx.data.in_dist}"}
    n_val = min(n_val, len(images))
    val_images = to_float(images[:n_val])
    val_log_probs = batched(model.classify, val_images, batch_size=ctx.batch_size, device=ctx.device)
    beta = calibration.fit_temperature(val_log_probs, val_labels[:n_val])
    scaled = calibration.apply_temperature(log_probs, beta)
    found = metrics.classification_metrics(scaled, labels)
    return {
        "temperature": 1 / beta,
        "n_calibration": n_val,
        "nll_ts": found["nll"],
        "ece_ts": found["ece"],
        "_confidence_ts": scaled.amax(1).exp(),
    }


def _accuracy(r: dict[str, Any]) -> str:
    return f"{with_ci(r['accuracy'], r['accuracy_ci'], 4)}, n = {r['n']}"


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ran = {m: r for m, r in results.items() if r}
    table: dict[str, dict[str, Any]] = {"accuracy [95 % Wilson]": {m: _accuracy(r) for m, r in ran.items()}}
    table.update({metric: {m: r.get(metric) for m, r in ran.items()} for metric in ("nll", "ece")})
    # Temperature scaling on held-out validation images, for every family (Guo et al. 2017).
    table["temperature T (validation images)"] = {
        m: f"{r['temperature']:.3g} (n = {r['n_calibration']})" for m, r in ran.items() if "temperature" in r
    }
    table.update(
        {
            f"{metric}, temperature-scaled": {m: r.get(f"{metric}_ts") for m, r in ran.items()}
            for metric in ("nll", "ece")
        }
    )
    tests = pairwise_mcnemar(ran)
    for other in ran:  # McNemar, paired on the first min(n) test images; Holm over every pair
        row = f"vs {other}: McNemar p (Holm)"
        for m in ran:
            if (m, other) in tests:
                test = tests[m, other]
                star = " *" if test["p_holm"] < SIGNIFICANCE else ""
                table.setdefault(row, {})[m] = (
                    f"{test['p_value']:.2g} ({test['p_holm']:.2g}){star}"
                    f" ({test['a_only']}/{test['b_only']}, n = {test['n']})"
                )
    return table


def pairwise_mcnemar(results: Results) -> dict[tuple[str, str], dict[str, Any]]:
    """McNemar's test of equal accuracy for every two models with per-image results, on the first
    min(n) test images (the same images, in the same order, for both), keyed (a, b) and (b, a) with
    a_only / b_only seen from the first. ``p_value`` is the test's own; ``p_holm`` is Holm's (1979) adjusted
    p-value over the family of all pairs, the one an accuracy ordering among these models must pass."""
    ran = [m for m, r in results.items() if r and "_correct" in r]
    tests: dict[tuple[str, str], dict[str, Any]] = {}
    for i, a in enumerate(ran):
        for b in ran[i + 1 :]:
            ra, rb = results[a], results[b]
            k = min(ra["n"], rb["n"])  # type: ignore[index]
            tests[a, b] = {**stats.mcnemar(ra["_correct"][:k], rb["_correct"][:k]), "n": k}  # type: ignore[index]
    adjusted = stats.holm({pair: test["p_value"] for pair, test in tests.items()})
    for (a, b), test in list(tests.items()):
        test["p_holm"] = adjusted[a, b]
        tests[b, a] = {**test, "a_only": test["b_only"], "b_only": test["a_only"]}
    return tests


def figure(results: Results, out_dir: Path) -> list[str]:
    """Reliability diagram (DeGroot & Fienberg 1983; Guo et al. 2017): accuracy against confidence in
    10 equal-width bins, one line per model: its own probabilities, or (marked) the temperature-scaled
    ones where its raw class scores are not probabilities."""
    calibrated = {m: r for m, r in results.items() if r and (not r.get("calibration_na") or "ece_ts" in r)}
    if not calibrated:
        return []
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = torch.linspace(0, 1, 11)
    for m, r in calibrated.items():
        confidence, correct = r["_confidence"], r["_correct"].float()
        bins = torch.bucketize(confidence, edges[1:-1])
        filled = [b for b in range(10) if (bins == b).sum() >= 10]  # bins with too few images say nothing
        ax.plot(
            [confidence[bins == b].mean().item() for b in filled],
            [correct[bins == b].mean().item() for b in filled],
            marker="o",
            label=f"{m} (ECE {r['ece']:.3f})" if r["ece"] is not None else f"{m}, T-scaled (ECE {r['ece_ts']:.3f})",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="confidence (max class probability)", ylabel="accuracy", title="Reliability (test set)")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "reliability.png")
    return ["reliability.png"]


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    return {"Test accuracy [95 % Wilson]": _accuracy(result)} if result else {}


SUITE = Suite(
    name="classification",
    needs=("classify",),
    run=classification,
    title=(
        "Classification (test set; McNemar rows: p-value of equal accuracy on the same images "
        "(Holm-adjusted over every pair of models), * = Holm-adjusted p < 0.05, (right only here / right only there))"
    ),
    rows=rows,
    summary=summary,
    summary_rank=1,
    figure=figure,
    extra_budgets=("calibration",),
)
