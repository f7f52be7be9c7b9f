"""Sample quality: feature-classifier FID/KID, k-NN precision/recall and class accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from dgbench.evaluation import metrics, stats
from dgbench.evaluation.suites.common import Context, Results, Suite, autocast, batched, with_ci

METRICS = ("fid", "kid", "precision", "recall")


def sample_quality(model: Any, ctx: Context) -> dict[str, Any]:
    """FID/KID/precision/recall of class-balanced samples against training images, the same metrics
    for held-out real images (the floor any model can reach), and class-conditional accuracy."""
    n = ctx.budget["sample_quality"]
    labels = torch.arange(10).repeat(n // 10 + 1)[:n]
    generator = torch.Generator().manual_seed(ctx.seed)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(ctx.device):
        chunks = [
            model.sample(len(y), labels=y.to(ctx.device), generator=generator).float().cpu()
            for y in labels.split(ctx.batch_size)
        ]
    samples = torch.cat(chunks).clamp(0, 1)
    seconds = time.perf_counter() - start
    feature_net = ctx.feature_net
    embed = lambda x: batched(feature_net.features, x, batch_size=ctx.batch_size, device=ctx.device)  # noqa: E731
    real, fake, heldout = (embed(x) for x in (ctx.data.train_images, samples, ctx.data.heldout_images))
    predicted = batched(feature_net.classify, samples, batch_size=ctx.batch_size, device=ctx.device).argmax(1)
    right = int((predicted == labels).sum())
    return {
        "n": n,
        "n_reference": len(real),
        **stats.fid_interval(real, fake, seed=ctx.seed),
        **stats.kid_interval(real, fake, seed=ctx.seed),
        **metrics.knn_precision_recall(real, fake),
        "class_accuracy": right / n,
        "class_accuracy_ci": list(stats.wilson(right, n)),
        "floor": {
            "n": len(heldout),
            **stats.fid_interval(real, heldout, seed=ctx.seed),
            **stats.kid_interval(real, heldout, seed=ctx.seed),
            **metrics.knn_precision_recall(real, heldout),
        },
        "sample_images_per_s": n / seconds,
        "_grid": samples[: 10 * min(8, n // 10)],  # rows of digits 0..9
    }


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def cell(r: dict[str, Any] | None, metric: str) -> Any:
        if not r or metric not in r:
            return None
        digits = 4 if metric == "kid" else 3
        return with_ci(r[metric], r[f"{metric}_ci"], digits) if f"{metric}_ci" in r else r[metric]

    table = {
        metric: {m: cell(r, metric) for m, r in results.items()}
        for metric in (*METRICS, "class_accuracy", "sample_images_per_s")
    }
    for metric in METRICS:
        table[f"real-data floor: {metric}"] = {m: cell((r or {}).get("floor"), metric) for m, r in results.items()}
    table["n (samples / reference / floor)"] = {
        m: f"{r['n']} / {r['n_reference']} / {r['floor']['n']}" for m, r in results.items() if r
    }
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    if result:
        floor = result["floor"]
        cell = (
            f"yes: FID {with_ci(result['fid'], result['fid_ci'], 2)} (floor {with_ci(floor['fid'], floor['fid_ci'], 2)}), "
            f"KID {with_ci(result['kid'], result['kid_ci'], 4)} (floor {floor['kid']:.4f}), "
            f"class acc {with_ci(result['class_accuracy'], result['class_accuracy_ci'], 3)}, "
            f"precision {result['precision']:.2f} / recall {result['recall']:.2f}, n = {result['n']}"
        )
    else:
        cell = "yes (samples suite not run)" if "sample" in record["capabilities"] else "no"
    return {"Can generate": cell}


def figure(results: Results, out_dir: Path) -> list[str]:
    """A grid of samples per model: one row per pass over the digits 0..9."""
    written = []
    for m, r in results.items():
        if r:
            save_image(r["_grid"], out_dir / f"samples_{m}.png", nrow=10)
            written.append(f"samples_{m}.png")
    return written


SUITE = Suite(
    name="sample_quality",
    needs=("sample",),
    run=sample_quality,
    title="Sample quality (feature-classifier FID/KID [95 % interval], k-NN precision/recall)",
    rows=rows,
    summary=summary,
    summary_rank=2,
    figure=figure,
    uses_feature_net=True,
)
