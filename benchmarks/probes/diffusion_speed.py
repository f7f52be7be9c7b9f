"""Time the diffusion family's costs: a training step, DDIM sampling, the classifier, the bound.

    python benchmarks/probes/diffusion_speed.py [--ckpt RUN_OR_CKPT] [--channels 16 32 64] [--device cpu] [--train-steps N]

Without ``--ckpt`` a fresh model is timed (costs do not depend on the weights). Prints one JSON
line. Wall time depends on the machine's load; ``cpu_s`` (process CPU time) does not, so both are
reported: on a shared machine, CPU time / cores is the estimate for an idle one.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import torch

from dgbench.checkpoint import load_model
from models.diffusion import DiffusionModel


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, after the device has finished."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="checkpoint or run directory (default: a fresh model)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--attention-levels", type=int, nargs="*", default=[2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128, help="training batch size")
    parser.add_argument("--train-steps", type=int, default=1, help="training steps timed (the mean is reported)")
    parser.add_argument("--samples", type=int, default=20, help="images for DDIM-50 sampling")
    parser.add_argument("--classify", type=int, default=2, help="images for the diffusion classifier")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--likelihood", type=int, default=10, help="images for the bound")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.ckpt:
        model = load_model(args.ckpt, device)
    else:
        model = DiffusionModel(channels=args.channels, attention_levels=args.attention_levels).to(device).eval()
    model.classify_pairs = args.pairs
    result = {"device": str(device), "threads": torch.get_num_threads(), "parameters": model.num_parameters}

    # One optimiser step of the training loss (the family's training_step: forward, backward, AdamW),
    # after a warm-up step. Outside a Trainer its self.log only warns (silenced here).
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
    x, y = torch.rand(args.batch, 1, 28, 28, device=device), torch.randint(0, 10, (args.batch,), device=device)
    optimizer = torch.optim.AdamW(model.unet.parameters(), 1e-4)
    model.unet.train()

    def train_step() -> None:
        model.training_step((x, y), 0).backward()
        optimizer.step()
        optimizer.zero_grad()

    train_step()
    wall, cpu = timed(lambda: [train_step() for _ in range(args.train_steps)], device)
    result["train_step_wall_s"], result["train_step_cpu_s"] = wall / args.train_steps, cpu / args.train_steps
    model.unet.eval()

    labels = torch.arange(args.samples, device=device) % 10
    model.sample(2, labels[:2])  # warm-up
    wall, cpu = timed(lambda: model.sample(args.samples, labels, torch.Generator().manual_seed(0)), device)
    result.update(
        sample_steps=model.sample_steps,
        guidance_scale=model.guidance_scale,
        sample_images_per_s=args.samples / wall,
        sample_cpu_s_per_image=cpu / args.samples,
    )
    images = torch.rand(max(args.classify, args.likelihood), 1, 28, 28, device=device)
    wall, cpu = timed(lambda: model.classify(images[: args.classify]), device)
    result.update(
        classify_pairs=args.pairs,
        classify_images_per_s=args.classify / wall,
        classify_cpu_s_per_image=cpu / args.classify,
    )
    wall, cpu = timed(lambda: model.log_likelihood(images[: args.likelihood]), device)
    result.update(
        likelihood_timesteps=model.likelihood_timesteps,
        likelihood_images_per_s=args.likelihood / wall,
        likelihood_cpu_s_per_image=cpu / args.likelihood,
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
