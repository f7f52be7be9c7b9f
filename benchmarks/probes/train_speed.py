"""Time one training step of each generative family under the CPU speed settings oneDNN offers.

    OMP_NUM_THREADS=1 python benchmarks/probes/train_speed.py [--families vae gan ...] [--steps 30] [--rounds 2]
        [--variants fp32 bf16 channels_last bf16_channels_last compile threads2] [--out results/train_speed.json]

Every family trains from its CPU preset (configs/experiment/<family>_cpu.yaml or <family>.yaml) on
real MNIST batches through Lightning, as train.py does, for ``--warmup`` + ``--steps`` steps; the
mean wall time of the last ``--steps`` is its step time. The variants, all in one process so that
their ratios share the machine's state (rounds interleave them):

- ``fp32``: the presets today (one thread, as the benchmark's workers run);
- ``bf16``: ``trainer.precision=bf16-mixed``, Lightning's CPU autocast: oneDNN's bf16 kernels on
  processors with AVX512-BF16 or AMX, emulated (slow) elsewhere;
- ``channels_last``: the network's weights in NHWC memory format (1-channel inputs are already both);
- ``bf16_channels_last``: both;
- ``compile``: ``torch.compile`` of the LightningModule (inductor, C++ codegen); compile time excluded;
- ``threads2``: fp32 with two intra-op threads (what one job alone on the 2-core machine could use).

Prints a table and writes JSON with the CPU model, torch version and every time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from dgbench.runtime import compose_config, cpu_model, quiet_third_party

PRESETS = {
    "vae": "vae_cpu",
    "gan": "gan_cpu",
    "pixelcnn": "pixelcnn_cpu",
    "diffusion": "diffusion_cpu",
    "m2": "m2",
    "vae_finetuned": "vae_finetuned",
    "hmm": "hmm",
    "gpt": "gpt_cpu",
}
VARIANTS = ("fp32", "bf16", "channels_last", "bf16_channels_last", "compile", "threads2")


class StepTimer(L.Callback):
    """Wall time of the training batches after the first ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.batches, self.start, self.end = warmup, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if self.batches == self.warmup:
            self.start = time.perf_counter()
        self.batches += 1

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.end = time.perf_counter()


def step_time(family: str, variant: str, warmup: int, steps: int, out: Path) -> float:
    """Seconds per training step of ``family``'s preset under ``variant``."""
    cfg = compose_config([f"experiment={PRESETS[family]}", "logger=none"], out)
    torch.set_num_threads(2 if variant == "threads2" else 1)
    L.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _convert_="all")
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        model = torch.compile(model)
    timer = StepTimer(warmup)
    trainer = L.Trainer(  # batches, not optimiser steps: the GAN steps three optimisers per batch
        accelerator="cpu",
        precision="bf16-mixed" if variant.startswith("bf16") else "32-true",
        max_epochs=1,
        limit_train_batches=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        default_root_dir=str(out),
    )
    trainer.fit(model, datamodule=datamodule)
    return (timer.end - timer.start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the minimum is kept")
    parser.add_argument("--out", type=Path, default=Path("results/train_speed.json"))
    args = parser.parse_args()
    quiet_third_party()
    scratch = Path("runs") / "train_speed"
    times: dict[str, dict[str, float]] = {family: {} for family in args.families}
    start = time.perf_counter()
    for _ in range(args.rounds):
        for family in args.families:
            for variant in args.variants:
                seconds = step_time(family, variant, args.warmup, args.steps, scratch)
                times[family][variant] = min(seconds, times[family].get(variant, float("inf")))
                print(f"{family:14s} {variant:20s} {seconds * 1000:8.1f} ms/step", flush=True)
    print(f"\n{'family':14s}" + "".join(f"{v:>20s}" for v in args.variants))
    for family, row in times.items():
        print(f"{family:14s}" + "".join(f"{row['fp32'] / row[v]:19.2f}x" for v in args.variants))
    record = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "wall_s": round(time.perf_counter() - start, 1),
        "warmup": args.warmup,
        "steps": args.steps,
        "rounds": args.rounds,
        "seconds_per_step": times,
        "speedup_vs_fp32": {f: {v: row["fp32"] / row[v] for v in row} for f, row in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
