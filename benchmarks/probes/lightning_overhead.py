"""What Lightning costs: the same model, data, optimiser and schedule, trained by Lightning and by a plain loop.

    python benchmarks/probes/lightning_overhead.py [--steps 200] [--repeats 2] [--out results/bench_lightning_overhead.json]

Three ways to run ``--steps`` optimiser steps of ``experiment=resnet_fast`` (batches of 256 from
the in-memory datamodule, AdamW + one-cycle), interleaved ``--repeats`` times so that drift in
machine load hits all of them alike:

* plain     the textbook loop: forward, cross-entropy, backward, step, schedule step;
* lightning ``Trainer.fit`` with nothing but the loop: no validation, checkpoints, logger or bar;
* dgbench   ``Trainer.fit`` as train.py configures it (callbacks/default, csv logger), still
            without validation, so the difference is per-step bookkeeping, not extra work.

Timed: the steps after ``--warmup`` steps, to the end of the last step (setup, first-step
allocations and the final checkpoint save are once-per-run costs, reported separately as fit_s).
Reported: milliseconds per step (median over repeats) and the overhead ratios; target <= 10 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from dgbench.runtime import compose_config, hardware, write_json
from train import build_callbacks

ROOT = Path(__file__).resolve().parents[2]

BASE = ["experiment=resnet_fast", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def build(steps: int, extra: list[str], out: Path) -> tuple:
    cfg = compose_config([*BASE, f"trainer.max_steps={steps}", "trainer.max_epochs=-1", *extra], out)
    L.seed_everything(0, verbose=False)
    return cfg, instantiate(cfg.data), instantiate(cfg.model, _convert_="all")


class StepTimer(L.Callback):
    """Clock from the start of batch ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.start, self.end = warmup, steps, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.steps:
            self.end = time.perf_counter()


def run_plain(steps: int, warmup: int, out: Path) -> tuple[float, float]:
    cfg, datamodule, model = build(steps, [], out)
    datamodule.setup("fit")
    optimizer = model.optimizer_factory(params=model.parameters())
    schedule = model.scheduler_factory(optimizer=optimizer, total_steps=steps)
    model.train()
    fit_start, done = time.perf_counter(), 0
    while done < steps:
        for x, y in datamodule.train_dataloader():
            if done == warmup:
                start = time.perf_counter()
            loss = model.loss(model(x), y)  # the family's own objective, as training_step computes it
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
    end = time.perf_counter()
    return (end - start) / (steps - warmup), end - fit_start


def run_lightning(steps: int, warmup: int, out: Path, as_configured: bool) -> tuple[float, float]:
    no_validation = ["trainer.limit_val_batches=0", "test=false"]
    bare = ["callbacks=none", "logger=none", "+trainer.enable_checkpointing=false"]
    extra = no_validation if as_configured else [*no_validation, *bare]
    cfg, datamodule, model = build(steps, extra, out)
    timer = StepTimer(warmup, steps)
    callbacks = [*build_callbacks(cfg, model), timer]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    fit_start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)  # includes datamodule.setup, as run_plain's fit_s does
    assert trainer.global_step == steps
    return (timer.end - timer.start) / (steps - warmup), time.perf_counter() - fit_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_lightning_overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    times: dict[str, list[float]] = {"plain": [], "lightning": [], "dgbench": []}
    fit_s: dict[str, list[float]] = {name: [] for name in times}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in times:
                out = Path(tmp) / f"{name}_{repeat}"
                if name == "plain":
                    seconds, fit = run_plain(args.steps, args.warmup, out)
                else:
                    seconds, fit = run_lightning(args.steps, args.warmup, out, as_configured=name == "dgbench")
                times[name].append(seconds)
                fit_s[name].append(round(fit, 2))
                print(f"[overhead] repeat {repeat + 1}/{args.repeats} {name}: {1000 * seconds:.1f} ms/step", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "command": "python benchmarks/probes/lightning_overhead.py " + " ".join(sys.argv[1:]),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "ms_per_step": {k: [round(1000 * v, 2) for v in vs] for k, vs in times.items()},
        "fit_s": fit_s,
        "overhead_lightning": round(median["lightning"] / median["plain"] - 1, 4),
        "overhead_dgbench": round(median["dgbench"] / median["plain"] - 1, 4),
        "target": "<= 0.10",
        **hardware(),
    }
    write_json(args.out, result)
    print(
        f"[overhead] Lightning {100 * result['overhead_lightning']:+.1f} %, as configured "
        f"{100 * result['overhead_dgbench']:+.1f} % vs the plain loop -> {args.out}"
    )


if __name__ == "__main__":
    main()
