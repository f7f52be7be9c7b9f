"""Sample quality: feature-classifier FID/KID, k-NN precision/recall and class accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from dgbench.evaluation import metrics
from dgbench.evaluation.suites.common import Context, Results, Suite, autocast, batched

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
    return {
        "n": n,
        **metrics.fid_kid(embed, real.shape[1], ctx.data.train_images, samples),
        **metrics.knn_precision_recall(real, fake),
        "class_accuracy": (predicted == labels).float().mean().item(),
        "floor": {
            **metrics.fid_kid(embed, real.shape[1], ctx.data.train_images, ctx.data.heldout_images),
            **metrics.knn_precision_recall(real, heldout),
        },
        "sample_images_per_s": n / seconds,
        "_grid": samples[: 10 * min(8, n // 10)],  # rows of digits 0..9
    }


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table = {
        metric: {m: (r or {}).get(metric) for m, r in results.items()}
        for metric in (*METRICS, "class_accuracy", "sample_images_per_s")
    }
    for metric in METRICS:
        table[f"real-data floor: {metric}"] = {
            m: ((r or {}).get("floor") or {}).get(metric) for m, r in results.items()
        }
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str]:
    if result:
        cell = f"yes: FID {result['fid']:.2f} (floor {result['floor']['fid']:.2f}), class acc {result['class_accuracy']:.3f}"
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
    title="Sample quality (feature-classifier FID/KID, k-NN precision/recall)",
    rows=rows,
    summary=summary,
    summary_rank=2,
    figure=figure,
    uses_feature_net=True,
)
