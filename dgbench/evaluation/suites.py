"""Evaluation suites. Each takes a model and the evaluation data and uses only the capability
protocol (``dgbench.capabilities``): a suite runs on every model that has what it requires and is
N/A (``None``) for the others. No suite knows which family it is measuring."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dgbench.capabilities import capabilities_of
from dgbench.data import load_split
from dgbench.evaluation import metrics

SYNTHETIC_OOD = ("uniform_noise", "gaussian_noise", "inverted", "flipped")
OTHER_DATASET = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}


@dataclass
class EvalData:
    """Images as float (N, 1, 28, 28) in [0, 1] on the CPU, drawn once for every model."""

    in_dist: str
    test_images: Tensor
    test_labels: Tensor
    train_images: Tensor  # reference set for sample quality
    heldout_images: Tensor  # real images not in ``train_images``: the FID/KID floor
    ood: dict[str, Tensor] = field(default_factory=dict)


def load_eval_data(in_dist: str, root: str, budget: dict[str, int], seed: int) -> EvalData:
    generator = torch.Generator().manual_seed(seed)

    def subset(images: Tensor, n: int) -> Tensor:
        return images[torch.randperm(len(images), generator=generator)[:n]]

    to_float = lambda u8: u8.unsqueeze(1).float() / 255  # noqa: E731
    test_u8, test_labels = load_split(in_dist, root, train=False)
    order = torch.randperm(len(test_u8), generator=generator)
    test_images, test_labels = to_float(test_u8[order]), test_labels[order]
    train_u8, _ = load_split(in_dist, root, train=True)
    n_ood = budget["ood"]
    digits = test_images[:n_ood]
    mean, std = test_images.mean(), test_images.std()
    ood = {
        OTHER_DATASET[in_dist]: to_float(subset(load_split(OTHER_DATASET[in_dist], root, train=False)[0], n_ood)),
        "uniform_noise": torch.rand(n_ood, 1, 28, 28, generator=generator),
        # Same mean and variance as the data: only structure separates it from digits.
        "gaussian_noise": (mean + std * torch.randn(n_ood, 1, 28, 28, generator=generator)).clamp(0, 1),
        "inverted": 1 - digits,
        # Upside-down images keep every pixel statistic of the data and only break its shapes: a
        # detector that passes this one looks at content, not at intensity histograms.
        "flipped": digits.flip(-2),
    }
    n_ref = budget["sample_quality"]
    return EvalData(
        in_dist,
        test_images,
        test_labels,
        to_float(subset(train_u8, n_ref)),
        test_images[-n_ref:],
        ood,
    )


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (as in training), nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batched(fn: Callable[..., Any], *inputs: Tensor, batch_size: int, device: torch.device) -> Any:
    """Apply ``fn`` chunk by chunk on ``device``; concatenate tensors (or dicts of tensors) on the CPU."""
    outputs = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(inputs[0]), batch_size):
            outputs.append(fn(*(x[start : start + batch_size].to(device) for x in inputs)))
    if isinstance(outputs[0], dict):
        return {k: torch.cat([o[k].float().cpu() for o in outputs]) for k in outputs[0]}
    return torch.cat([o.float().cpu() for o in outputs])


@dataclass
class Context:
    data: EvalData
    budget: dict[str, int]
    device: torch.device
    batch_size: int
    seed: int
    feature_net: Any  # a trained classifier with ``features`` (see dgbench.evaluation.features)


def classification(model: Any, ctx: Context) -> dict[str, Any]:
    n = ctx.budget["classification"]
    log_probs = batched(model.classify, ctx.data.test_images[:n], batch_size=ctx.batch_size, device=ctx.device)
    return {"n": n, **metrics.classification_metrics(log_probs, ctx.data.test_labels[:n])}


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


def observed_masks(n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Bool masks (True = observed): random pixels missing at 0/25/50/75%, and the bottom half."""
    masks = {f"random_{int(100 * p)}": torch.rand(n, 1, 28, 28, generator=generator) >= p for p in (0, 0.25, 0.5, 0.75)}
    bottom = torch.ones(n, 1, 28, 28, dtype=torch.bool)
    bottom[:, :, 14:] = False
    masks["bottom_half"] = bottom
    return masks


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
        row = {"fraction_missing": 1 - observed.float().mean().item(), "accuracy": _accuracy(log_probs, labels)}
        if can_impute:
            filled = batched(model.impute, masked, observed, batch_size=ctx.batch_size, device=ctx.device)
            missing = ~observed
            row["impute_mse"] = ((filled - images)[missing] ** 2).mean().item() if missing.any() else 0.0
            row["observed_unchanged"] = bool(torch.equal(filled[observed], masked[observed]))
            log_probs = batched(model.classify, filled, batch_size=ctx.batch_size, device=ctx.device)
            row["impute_then_classify_accuracy"] = _accuracy(log_probs, labels)
        results[name] = row
    return results


def _accuracy(log_probs: Tensor, labels: Tensor) -> float:
    return (log_probs.argmax(1) == labels).float().mean().item()


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


def cost(model: Any, ctx: Context) -> dict[str, Any]:
    """Size, training time (from the run's metrics.json) and inference throughput per capability."""
    images = ctx.data.test_images[: ctx.budget["cost"]]
    throughput: dict[str, float] = {}
    calls = {
        "classify": lambda: batched(model.classify, images, batch_size=ctx.batch_size, device=ctx.device),
        "score_anomalies": lambda: batched(model.score_anomalies, images, batch_size=ctx.batch_size, device=ctx.device),
        "log_likelihood": lambda: batched(model.log_likelihood, images, batch_size=ctx.batch_size, device=ctx.device),
    }
    for capability in capabilities_of(model):
        if capability in calls:
            start = time.perf_counter()
            calls[capability]()
            throughput[f"{capability}_images_per_s"] = len(images) / (time.perf_counter() - start)
    return {"parameters": model.num_parameters, **throughput}


# name -> (capabilities required, suite)
SUITES: dict[str, tuple[tuple[str, ...], Callable[[Any, Context], dict[str, Any]]]] = {
    "classification": (("classify",), classification),
    "ood": (("score_anomalies",), ood),
    "missing_features": (("classify",), missing_features),
    "sample_quality": (("sample",), sample_quality),
    "cost": ((), cost),
}
