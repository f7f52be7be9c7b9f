"""Interpretability: how faithful each family's own explanation of a decision is, and how big it is.

The primer says interpretability is "often higher for simple models; varies, latent spaces complex".
Two measurable halves of that claim, on the same ``budget.interpretability`` test images for every
model that can ``explain`` (``dgbench.capabilities``):

* **Faithfulness: deletion and insertion** (Petsiuk, Das & Saenko 2018). Pixels are ranked by the
  model's attribution for its predicted class ŷ (ties in a seeded random order); in ``STEPS``
  equal steps the most-attributed fraction f of the 784 pixels is *deleted*: made missing, i.e.
  zero-filled and passed as ``observed = False`` to ``classify``, so a generative family
  marginalises it and a discriminative one sees the zero-filled image (with ``mask_channel`` the mask
  too). The deletion curve is p(ŷ | x with the top-f pixels missing) for f = 0, 1/STEPS, ..., 1;
  its area (trapezoid rule) is low when the attribution found what the decision rests on. The
  insertion curve starts from nothing observed and reveals the pixels in the same order; its area
  is high then. The same deletion with a uniformly random order per image is the reference: a
  model that stays confident with most pixels missing has a high deletion area whatever its
  explanation, so the paired difference *random - attributed deletion area* ("deletion gain") is
  the part of the score that is the explanation's. Every area is a mean over images with a
  percentile-bootstrap 95 % interval (``dgbench.attribution.bootstrap_mean_ci``).
* **Size: numbers a person must read to follow one decision**, ``decision_parameters``: how many
  model parameters the explained quantity reads for one input, the score difference of ŷ over the
  runner-up y' (or log p(ŷ|x) for integrated gradients). Two weight rows and two biases for
  logistic regression (2 x 785), two class-conditional pixel tables and two priors for naive Bayes
  (2 x 784 + 2), every parameter for a network, where each hidden unit feeds every class score.
  It counts what one must read, not how hard reading it is: a weight of a linear model is a
  per-pixel vote, a convolution weight means nothing on its own.

A figure shows the same ten test digits (the first of each class) explained by every model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from dgbench.attribution import area_under_curve, bootstrap_mean_ci, masks_at, pick, ranking
from dgbench.evaluation.suites.common import Context, Results, Suite, batched, plt, save_figure, with_ci

DEFAULT_IMAGES = 200  # when the evaluation config has no budget.interpretability
STEPS = 10  # deletion / insertion steps: 11 points from f = 0 to 1
SUMMARY_ROW = "Interpretability (deletion / insertion AUC [95 % bootstrap]; parameters one decision reads)"


def interpretability(model: Any, ctx: Context) -> dict[str, Any]:
    n = min(ctx.budget.get("interpretability", DEFAULT_IMAGES), len(ctx.data.test_images))
    images = ctx.data.test_images[:n]
    run = lambda fn, *xs: batched(fn, *xs, batch_size=ctx.batch_size, device=ctx.device)  # noqa: E731
    start = time.perf_counter()
    attributions = run(model.explain, images)
    explain_seconds = time.perf_counter() - start
    log_probs = run(model.classify, images)
    predicted = log_probs.argmax(1)
    generator = torch.Generator().manual_seed(ctx.seed)
    orders = {"attributed": ranking(attributions, generator), "random": ranking(torch.zeros_like(images), generator)}
    fractions = torch.linspace(0, 1, STEPS + 1)
    full = pick(log_probs, predicted).exp()
    nothing = torch.zeros_like(images, dtype=torch.bool)
    empty = pick(run(model.classify, images * nothing, nothing), predicted).exp()
    curves = {}
    for name, order, deleting in (
        ("deletion", orders["attributed"], True),
        ("insertion", orders["attributed"], False),
        ("random_deletion", orders["random"], True),
    ):
        points = []
        for f in fractions.tolist():
            count = round(f * order.shape[1])
            if count in (0, order.shape[1]):  # nothing or everything moved: the full or the empty image
                points.append(full if deleting == (count == 0) else empty)
                continue
            moved = masks_at(order, count, images.shape[1:])
            observed = ~moved if deleting else moved
            points.append(pick(run(model.classify, images * observed, observed), predicted).exp())
        curves[name] = torch.stack(points, dim=1)  # (n, points)
    areas = {name: area_under_curve(fractions, curve) for name, curve in curves.items()}
    areas["deletion_gain"] = areas["random_deletion"] - areas["deletion"]  # paired, per image
    # The figure's digits: the first test image of each class, whatever n is (10 more explanations).
    shown = ctx.data.test_images[[int((ctx.data.test_labels == d).nonzero()[0]) for d in ctx.data.test_labels.unique()]]
    return {
        "n": n,
        "steps": STEPS,
        **{f"{name}_auc": values.mean().item() for name, values in areas.items()},
        **{f"{name}_auc_ci": bootstrap_mean_ci(values, seed=ctx.seed) for name, values in areas.items()},
        "mean_curves": {name: curve.mean(0).tolist() for name, curve in curves.items()},
        "fractions": fractions.tolist(),
        "decision_parameters": int(model.decision_parameters),
        "explanation_method": model.explanation_method,
        "explain_images_per_s": n / explain_seconds,
        "_images": shown,
        "_attributions": run(model.explain, shown),
        "_predicted": run(model.classify, shown).argmax(1),
    }


def _method(r: dict[str, Any]) -> str:
    """The method's name without its details: "exact", "integrated gradients"."""
    return r["explanation_method"].split(":")[0].split(" (")[0]


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ran = {m: r for m, r in results.items() if r}
    table: dict[str, dict[str, Any]] = {}
    for name, label in (
        ("deletion", "deletion AUC (lower = more faithful)"),
        ("insertion", "insertion AUC (higher = more faithful)"),
        ("random_deletion", "deletion AUC, random order (reference)"),
        ("deletion_gain", "deletion gain = random - attributed (higher = more faithful)"),
    ):
        table[label] = {m: with_ci(r[f"{name}_auc"], r[f"{name}_auc_ci"]) for m, r in ran.items()}
    table["numbers to read per decision (parameters)"] = {m: f"{r['decision_parameters']:,}" for m, r in ran.items()}
    table["attribution method"] = {m: r["explanation_method"] for m, r in ran.items()}
    table["explain images / s"] = {m: r["explain_images_per_s"] for m, r in ran.items()}
    table["n (images) / steps"] = {m: f"{r['n']} / {r['steps']}" for m, r in ran.items()}
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    if not result:
        return {SUMMARY_ROW: "yes (suite not run)" if "explain" in record["capabilities"] else "no"}
    r = result
    return {
        SUMMARY_ROW: (
            f"{_method(r)}: deletion {with_ci(r['deletion_auc'], r['deletion_auc_ci'])} "
            f"(random order {r['random_deletion_auc']:.3f}), insertion {with_ci(r['insertion_auc'], r['insertion_auc_ci'])}; "
            f"{r['decision_parameters']:,} parameters per decision; n = {r['n']}"
        )
    }


def figure(results: Results, out_dir: Path) -> list[str]:
    """The same ten test digits explained by every model (red: for ŷ, blue: against; each map scaled to
    its largest |attribution|), and every model's mean deletion and insertion curves."""
    ran = {m: r for m, r in results.items() if r}
    if not ran:
        return []
    images = next(iter(ran.values()))["_images"]
    fig, axes = plt.subplots(
        len(ran) + 1, len(images), figsize=(1.3 * len(images), 1.4 * (len(ran) + 1)), squeeze=False
    )
    for ax, image in zip(axes[0], images):
        ax.imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    axes[0][0].set_ylabel("digit", fontsize=7)
    for row, (m, r) in enumerate(ran.items(), start=1):
        for col, (ax, a) in enumerate(zip(axes[row], r["_attributions"])):
            scale = a.abs().max().clamp(min=1e-12).item()
            ax.imshow(a[0].numpy(), cmap="bwr", vmin=-scale, vmax=scale)
            ax.set_title(f"ŷ={int(r['_predicted'][col])}", fontsize=6, pad=1)
        axes[row][0].set_ylabel(f"{m}\n{_method(r)}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, out_dir / "interpretability.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m, r in ran.items():
        line = axes[0].plot(r["fractions"], r["mean_curves"]["deletion"], marker="o", label=m)[0]
        axes[0].plot(r["fractions"], r["mean_curves"]["random_deletion"], ls=":", color=line.get_color())
        axes[1].plot(r["fractions"], r["mean_curves"]["insertion"], marker="o", label=m)
    axes[0].set(title="Deletion (dotted: random order)", xlabel="fraction of pixels missing", ylabel="p(ŷ)")
    axes[1].set(title="Insertion", xlabel="fraction of pixels observed", ylabel="p(ŷ)")
    axes[1].legend(fontsize=7)
    save_figure(fig, out_dir / "deletion_insertion.png")
    return ["interpretability.png", "deletion_insertion.png"]


SUITE = Suite(
    name="interpretability",
    needs=("explain", "classify"),
    run=interpretability,
    title=(
        "Interpretability (deletion / insertion AUC of p(ŷ) as the most-attributed pixels go missing / appear, "
        "Petsiuk et al. 2018, mean [95 % bootstrap]; parameters one decision reads)"
    ),
    rows=rows,
    summary=summary,
    summary_rank=6,
    figure=figure,
)
