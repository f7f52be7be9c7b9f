"""The GPT family's key-value cache: sampling speed with and without it, and that both give the same images.

    OMP_NUM_THREADS=1 python benchmarks/probes/gpt_cache_speed.py RUN_OR_CKPT [--n 20] [--repeats 2]
        [--out results/cpu/gpt_cpu/cache_speed.json]

Samples ``--n`` images with one seed, cached (one new token per step) and uncached (the whole prefix
recomputed at every step), in the order cached / uncached / uncached / cached per repeat (ABBA), CPU
seconds each; the issue's target is a 10x speed-up with identical images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dgbench.checkpoint import load_model
from dgbench.runtime import environment, write_json


def timed(model: torch.nn.Module, n: int, cached: bool) -> tuple[float, torch.Tensor]:
    start = time.process_time()
    images = model.sample(n, generator=torch.Generator().manual_seed(0), cached=cached)
    return time.process_time() - start, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a gpt run directory or checkpoint")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/cpu/gpt_cpu/cache_speed.json"))
    args = parser.parse_args()
    model = load_model(args.ckpt)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    same = True
    for _ in range(args.repeats):
        reference = None
        for cached in (True, False, False, True):
            s, images = timed(model, args.n, cached)
            seconds[cached].append(s)
            reference = images if reference is None else reference
            same &= torch.equal(images, reference)
    cached, uncached = sum(seconds[True]) / len(seconds[True]), sum(seconds[False]) / len(seconds[False])
    record = {
        "images": args.n,
        "cached_cpu_s": round(cached, 3),
        "uncached_cpu_s": round(uncached, 3),
        "speedup": round(uncached / cached, 2),
        "identical_images": bool(same),
        "threads": torch.get_num_threads(),
        **environment(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, record)
    print(record)


if __name__ == "__main__":
    main()
