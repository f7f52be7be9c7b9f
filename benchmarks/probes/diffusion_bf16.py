"""Does bf16 autocast change the diffusion family's results on this CPU? Speed and quality, one run.

    python benchmarks/probes/diffusion_bf16.py RUN_OR_CKPT [--images 300] [--samples 500] [--out results/diffusion_bf16.md]

The same checkpoint with ``bf16_inference`` off and on (models/diffusion/model.py; oneDNN runs bf16
natively on CPUs with AVX512-BF16 or AMX): the diffusion classifier on ``--images`` validation images
(accuracy, agreement of the two, seconds), guided samples scored by the sample-quality suite (FID with
its bootstrap interval, class accuracy, images/s; same seed) and the bound (always fp32: must be equal).
Validation images only: the choice it informs is made before any test number.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dgbench.checkpoint import load_model
from dgbench.data import held_out_validation, to_float
from dgbench.datasets import default_data_root
from dgbench.evaluation.features import load_feature_net
from dgbench.evaluation.suites import Context, load_eval_data
from dgbench.evaluation.suites.sample_quality import sample_quality
from dgbench.runtime import environment, fast_bf16

ROOT = Path(__file__).resolve().parents[2]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def speed(model, out: str, batch: int = 250, repeats: int = 5) -> None:
    """The network alone, fp32 and bf16 interleaved (so load changes hit both alike): seconds per batch."""
    generator = torch.Generator().manual_seed(0)
    x, t = torch.randn(batch, 1, 28, 28, generator=generator), torch.randint(0, 1000, (batch,), generator=generator)
    y, net, seconds = torch.randint(0, 10, (batch,), generator=generator), model.ema.averaged, {False: [], True: []}
    with torch.inference_mode():
        for _ in range(repeats):
            for bf16 in (False, True):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    seconds[bf16].append(timed(lambda: net(x, t, y))[1])
    best = {k: min(v) for k, v in seconds.items()}
    lines = [
        f"# Diffusion UNet forward pass, fp32 vs bf16 autocast (interleaved, best of {repeats})",
        "",
        f"`python benchmarks/probes/diffusion_bf16.py CKPT --speed-only` on {environment()['device']} (native bf16: "
        f"{fast_bf16(torch.device('cpu'))}), torch {torch.__version__}, batch {batch}, {torch.get_num_threads()} threads:",
        f"fp32 {best[False]:.3f} s, bf16 {best[True]:.3f} s per batch: **{best[False] / best[True]:.2f}x**.",
    ]
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--out", default="results/diffusion_bf16.md")
    parser.add_argument("--speed-only", action="store_true", help="only the interleaved network timing (seconds)")
    args = parser.parse_args()
    model = load_model(args.checkpoint)
    if args.speed_only:
        return speed(model, args.out)
    split = model.validation_split or {"dataset": "mnist", "val_size": 5000, "seed": 0}
    images, labels = held_out_validation(split["dataset"], split["val_size"], split["seed"])
    x, y = to_float(images[: args.images]), labels[: args.images]
    budget = {"ood": 10, "sample_quality": args.samples}
    ctx = Context(
        load_eval_data("mnist", default_data_root(), budget, 0), budget, torch.device("cpu"), 250, 0, load_feature_net()
    )
    rows, predictions, bounds = [], {}, {}
    for bf16 in (False, True):
        model.bf16_inference = bf16
        log_p, seconds = timed(lambda: torch.cat([model.classify(x[i : i + 50]) for i in range(0, len(x), 50)]))
        predictions[bf16] = log_p.argmax(1)
        quality, sample_seconds = timed(lambda: sample_quality(model, ctx))
        bounds[bf16] = model.log_likelihood(x[:20])
        rows.append(
            f"| {'bf16 autocast' if bf16 else 'fp32'} | {(predictions[bf16] == y).double().mean():.3f} | {seconds:.0f} "
            f"| {quality['fid']:.2f} [{quality['fid_ci'][0]:.2f}, {quality['fid_ci'][1]:.2f}] "
            f"| {quality['class_accuracy']:.3f} | {quality['sample_images_per_s']:.1f} |"
        )
        print(rows[-1], flush=True)
    agree = (predictions[False] == predictions[True]).double().mean()
    lines = [
        "# Diffusion inference in bf16 on the CPU: speed and quality",
        "",
        f"`python benchmarks/probes/diffusion_bf16.py {args.checkpoint} --images {args.images} --samples {args.samples}` on "
        f"{environment()['device']} (native bf16: {fast_bf16(torch.device('cpu'))}), torch {torch.__version__}; "
        f"classifier settings of the checkpoint ({model.classify_pairs} pairs, {model.classify_first_pairs} for every "
        f"class, {model.classify_keep} kept), sampler {model.sampler} {model.sample_steps} steps, guidance "
        f"{model.guidance_scale}.",
        "",
        f"| precision | classifier accuracy ({args.images} validation images) | classify s | FID [95 %] "
        f"({args.samples} samples) | sample class accuracy | samples/s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"The two classifiers agree on {agree:.3f} of the images; the bound (always fp32) is "
        f"{'identical' if torch.equal(bounds[False], bounds[True]) else 'DIFFERENT'} in both runs.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
