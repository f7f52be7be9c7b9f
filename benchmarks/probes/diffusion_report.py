"""The diffusion family's issue targets from one checkpoint, at budgets evaluate.py's CPU preset avoids.

    python benchmarks/probes/diffusion_report.py --merge PART.json PART.json ... --out PATH
    python benchmarks/probes/diffusion_report.py RUN_OR_CKPT [--parts classify,likelihood,samples]
        [--classify-images 200] [--classify-start 0] [--pairs 100] [--keep K] [--first-pairs P1]
        [--likelihood-images 300]
        [--timesteps 100] [--samples 300] [--guidance 1 2 3] [--raw-weights] [--out PATH]

- diffusion-classifier test accuracy with ``--pairs`` shared (t, ε) pairs (the anchor, Li et al.
  2023: 99.23 % on MNIST with 100) on ``--classify-images`` test images from ``--classify-start``
  (so a long measurement can be split over invocations), and its cost; ``--keep 10`` turns the
  adaptive class elimination off (every class gets every pair, the anchor's plain protocol);
- the variational bound in bits/dim (and nats) on the first ``--likelihood-images`` test images
  with ``--timesteps`` Monte-Carlo timesteps (the protocol string is in the output);
- class-conditional sample accuracy (the shipped feature classifier on ``--samples`` class-balanced
  DDIM samples) for each guidance scale w, with sampling images/s.
``--merge`` joins classifier parts measured with ``--classify-start`` into one result (Wilson interval).
Writes one JSON (``--out``) with wall and process-CPU seconds of every part; test images are the
first N of the MNIST test split, so the numbers carry binomial error bars (reported as ±1.96 σ).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dgbench.checkpoint import load_model
from dgbench.data import to_float
from dgbench.datasets import default_data_root, load_split
from dgbench.evaluation.features import load_feature_net
from dgbench.evaluation.stats import wilson
from dgbench.evaluation.suites import batched
from dgbench.runtime import environment, write_json
from models.diffusion import classifier

ROOT = Path(__file__).resolve().parents[2]

BATCH = 100


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    acc = (predicted == labels).float().mean().item()
    return {"acc": acc, "ci95": 1.96 * math.sqrt(acc * (1 - acc) / len(labels)), "n": len(labels)}


def first_pairs(pairs: int, first: int, keep: int) -> int:
    """The pairs every class gets, as the classifier splits them (models.diffusion.classifier)."""
    return len(classifier.split_pairs(pairs, first, keep)[0])


def merge_classify(paths: list[Path]) -> dict[str, Any]:
    """Classifier results measured in parts (``--classify-start``) as one: the images, the number
    right and its Wilson 95 % interval; the parts must share checkpoint and settings."""
    reports = [json.loads(path.read_text()) for path in paths]
    parts = sorted((r["classify"] for r in reports), key=lambda c: c["first_image"])
    for c in parts:  # the pairs every class really got (all of them when every class is kept)
        c["first_pairs"] = first_pairs(c["pairs"], c["first_pairs"], c["keep"])
    settings = {(r["ckpt"], c["pairs"], c["first_pairs"], c["keep"]) for r in reports for c in [r["classify"]]}
    if len(settings) != 1:
        raise SystemExit(f"error: the parts differ in checkpoint or settings {sorted(settings)}; merge like with like")
    n, right = sum(c["n"] for c in parts), sum(round(c["acc"] * c["n"]) for c in parts)
    return {
        **{k: parts[0][k] for k in ("pairs", "first_pairs", "keep")},
        "images": [[c["first_image"], c["first_image"] + c["n"] - 1] for c in parts],
        "n": n,
        "right": right,
        "acc": right / n,
        "wilson95": list(wilson(right, n)),
        "wall_s": sum(c["wall_s"] for c in parts),
        "parts": [str(path) for path in paths],
    }


def sample_per_class(model: Any, labels: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)  # the same noise for every guidance scale
    return torch.cat([model.sample(len(c), labels=c, generator=generator).cpu() for c in labels.split(BATCH)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", nargs="?")
    parser.add_argument("--merge", type=Path, nargs="+", help="classify parts (--out files) to merge, no model")
    parser.add_argument("--parts", default="classify,likelihood,samples", help="comma-separated subset")
    parser.add_argument("--classify-images", type=int, default=200)
    parser.add_argument("--classify-start", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument(
        "--keep", type=int, help="classes kept after --first-pairs (default: the checkpoint's; 10 = plain)"
    )
    parser.add_argument("--first-pairs", type=int, help="pairs every class gets (default: the checkpoint's)")
    parser.add_argument("--likelihood-images", type=int, default=300)
    parser.add_argument("--timesteps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--guidance", type=float, nargs="*", default=[1.0, 2.0, 3.0])
    parser.add_argument("--raw-weights", action="store_true", help="the trained network instead of its EMA")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "diffusion_report.json")
    args = parser.parse_args()
    if args.merge:
        merged = {"ckpt": json.loads(args.merge[0].read_text())["ckpt"], "classify": merge_classify(args.merge)}
        write_json(args.out, {"command": " ".join(sys.argv), **merged})
        print(json.dumps(merged["classify"]))
        return
    if not args.ckpt:
        parser.error("give a run directory or checkpoint (or --merge parts)")
    device = torch.device(args.device)
    model, feature_net = load_model(args.ckpt, device), load_feature_net(device=device)
    if args.raw_weights:  # is the EMA helping? every part then runs on the last training weights
        model.ema.averaged.load_state_dict(model.unet.state_dict())
    images, labels = load_split("mnist", default_data_root(), train=False)
    x, y = to_float(images), labels
    report: dict[str, Any] = {"ckpt": str(args.ckpt), "command": " ".join(sys.argv), **environment()}
    report["weights"] = "raw" if args.raw_weights else "ema"

    parts = set(args.parts.split(","))
    if "classify" in parts:
        model.classify_pairs = args.pairs
        model.classify_keep = args.keep or model.classify_keep
        model.classify_first_pairs = args.first_pairs or model.classify_first_pairs
        rows = slice(args.classify_start, args.classify_start + args.classify_images)
        log_probs, cost = timed(lambda: batched(model.classify, x[rows], batch_size=BATCH, device=device))
        result = {
            "pairs": args.pairs,
            "first_pairs": first_pairs(args.pairs, model.classify_first_pairs, model.classify_keep),
            "keep": model.classify_keep,
            "first_image": args.classify_start,
            **accuracy(log_probs.argmax(1), y[rows]),
        }
        report["classify"] = {**result, **cost, "images_per_s": args.classify_images / cost["wall_s"]}
        print(json.dumps({"classify": report["classify"]}), flush=True)

    if "likelihood" in parts:
        model.likelihood_timesteps, n = args.timesteps, args.likelihood_images
        log_lik, cost = timed(lambda: batched(model.log_likelihood, x[:n], batch_size=BATCH, device=device))
        nats = -log_lik.double().mean().item()
        bpd = nats / (784 * math.log(2))
        report["likelihood"] = {"n": n, "timesteps": args.timesteps, "nats": nats, "bits_per_dim": bpd, **cost}
        print(json.dumps(report["likelihood"]), flush=True)
        report["likelihood"]["protocol"] = model.likelihood_protocol

    guidance = args.guidance if "samples" in parts else []
    wanted = torch.arange(10).repeat(args.samples // 10 + 1)[: args.samples]
    report["samples"] = {"sampler": model.sampler, "steps": model.sample_steps, "by_guidance": {}}
    for w in guidance:
        model.guidance_scale = w
        samples, cost = timed(lambda: sample_per_class(model, wanted))
        predicted = batched(feature_net.classify, samples, batch_size=BATCH, device=device).argmax(1).cpu()
        result = {**accuracy(predicted, wanted), **cost, "images_per_s": len(wanted) / cost["wall_s"]}
        report["samples"]["by_guidance"][str(w)] = result
        print(json.dumps({"guidance": w, **result}), flush=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
