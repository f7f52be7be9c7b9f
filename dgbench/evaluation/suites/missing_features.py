"""Classification with pixels missing, and impute-then-classify for models that impute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgbench.capabilities import capabilities_of
from dgbench.evaluation import stats
from dgbench.evaluation.suites.common import Context, Results, Suite, batched, plt, save_figure, with_ci
from dgbench.masks import bottom_half_mask, random_pixel_mask


def observed_masks(n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Bool masks (True = observed): random pixels missing at 0/25/50/75%, and the bottom half."""
    masks = {f"random_{int(100 * p)}": random_pixel_mask(n, p, generator) for p in (0, 0.25, 0.5, 0.75)}
    return {**masks, "bottom_half": bottom_half_mask(n)}


def missing_features(model: Any, ctx: Context) -> dict[str, Any]:
    """Accuracy when pixels are missing. Every model sees the zero-filled image plus the mask (a
    model that can marginalise uses it); models that impute are also scored impute-then-classify."""
    n = ctx.budget["missing_features"]
    images, labels = ctx.data.test_images[:n], ctx.data.test_labels[:n]
    can_impute = "impute" in capabilities_of(model)
    results: dict[str, Any] = {"n": n}
    for name, observed in observed_masks(n, torch.Generator().manual_seed(ctx.seed)).items():
        masked = images * observed
        log_probs = batched(model.classify, masked, observed, batch_size=ctx.batch_size, device=ctx.device)
        row = {"fraction_missing": 1 - observed.float().mean().item(), **_accuracy(log_probs, labels)}
        if can_impute:
            row.update(_impute_then_classify(model, ctx, images, labels, observed, log_probs))
        results[name] = row
    return results


def _impute_then_classify(
    model: Any, ctx: Context, images: Tensor, labels: Tensor, observed: Tensor, log_probs: Tensor
) -> dict[str, Any]:
    """Impute the missing pixels, then classify the filled image. With nothing missing the image is
    complete already (impute returns observed pixels as given): the classification is ``log_probs``."""
    if bool(observed.all()):
        then, extra = _accuracy(log_probs, labels), {"impute_mse": 0.0, "observed_unchanged": True}
    else:
        masked, missing = images * observed, ~observed
        filled = batched(model.impute, masked, observed, batch_size=ctx.batch_size, device=ctx.device)
        extra = {
            "impute_mse": ((filled - images)[missing] ** 2).mean().item(),
            "observed_unchanged": bool(torch.equal(filled[observed], masked[observed])),
        }
        then = _accuracy(batched(model.classify, filled, batch_size=ctx.batch_size, device=ctx.device), labels)
    return {
        **extra,
        "impute_then_classify_accuracy": then["accuracy"],
        "impute_then_classify_accuracy_ci": then["accuracy_ci"],
    }


def _accuracy(log_probs: Tensor, labels: Tensor) -> dict[str, Any]:
    correct = int((log_probs.argmax(1) == labels).sum())
    return {"accuracy": correct / len(labels), "accuracy_ci": list(stats.wilson(correct, len(labels)))}


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for m, r in results.items():
        for setting, values in (r or {}).items():
            if isinstance(values, dict):  # a mask, not "n"
                cell = with_ci(values["accuracy"], values["accuracy_ci"])
                if "impute_then_classify_accuracy" in values:
                    then = with_ci(values["impute_then_classify_accuracy"], values["impute_then_classify_accuracy_ci"])
                    cell += f" (impute→classify {then}, MSE {values['impute_mse']:.4f})"
                table.setdefault(setting, {})[m] = cell
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    if not result or "random_50" not in result:
        return {}
    cells = {}
    for setting, label in (("random_50", "50 % of pixels missing"), ("bottom_half", "bottom half missing")):
        values = result[setting]
        cell = with_ci(values["accuracy"], values["accuracy_ci"])
        if "impute_then_classify_accuracy" in values:
            cell += f"; impute→classify {with_ci(values['impute_then_classify_accuracy'], values['impute_then_classify_accuracy_ci'])}"
        cells[f"Missing features: {label} (accuracy [95 % Wilson])"] = f"{cell}, n = {result['n']}"
    return cells


def figure(results: Results, out_dir: Path) -> list[str]:
    """Accuracy against the fraction of random pixels missing; dashed: impute-then-classify."""
    with_missing = {m: r for m, r in results.items() if r}
    if not with_missing:
        return []
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
    save_figure(fig, out_dir / "missing_features.png")
    return ["missing_features.png"]


SUITE = Suite(
    name="missing_features",
    needs=("classify",),
    run=missing_features,
    title="Missing features (accuracy [95 % Wilson interval]; zero-filled input + mask)",
    rows=rows,
    summary=summary,
    summary_rank=3,
    figure=figure,
)
