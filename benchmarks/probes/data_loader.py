"""Images per second of our in-memory MNIST loader vs the textbook torchvision pipeline, on the CPU.

    python benchmarks/probes/data_loader.py [--baseline-batches N] [--epochs 3] [--out results/bench_data_loader.json]

Ours: ``MNISTDataModule.train_dataloader()``, one full epoch of the 55k training images, without and
with ``max_shift=2`` (median of ``--epochs`` epochs). Baseline: ``torchvision.datasets.MNIST(
transform=ToTensor())`` + ``DataLoader(batch_size=128, shuffle=True, num_workers=0)``, one full
epoch (or its first ``--baseline-batches`` batches, rated per image). Split setup (decoding the IDX
files) is timed separately: it happens once per process. Wall times depend on the machine's load,
so the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from dgbench.data import MNISTDataModule, default_data_root
from dgbench.runtime import hardware, write_json

ROOT = Path(__file__).resolve().parents[2]


def time_epoch(loader: Any, max_batches: int | None = None) -> tuple[int, float]:
    """(images seen, wall seconds) for one pass over ``loader``, stopping after ``max_batches``."""
    images, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        images += len(x)
        if max_batches is not None and i + 1 == max_batches:
            break
    return images, time.perf_counter() - start


def ours(root: str, batch_size: int, max_shift: int, epochs: int) -> dict[str, Any]:
    start = time.perf_counter()
    datamodule = MNISTDataModule(root=root, batch_size=batch_size, max_shift=max_shift, download=False)
    datamodule.setup("fit")
    setup_s = time.perf_counter() - start
    loader = datamodule.train_dataloader()
    runs = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        runs.append(time_epoch(loader))
    images, wall = runs[0][0], statistics.median(w for _, w in runs)
    return {"setup_s": setup_s, "images": images, "epoch_wall_s": wall, "all_epochs_wall_s": [w for _, w in runs]}


def torchvision_baseline(root: str, batch_size: int, max_batches: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    dataset = torchvision.datasets.MNIST(root, train=True, transform=ToTensor(), download=False)
    setup_s = time.perf_counter() - start
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    images, wall = time_epoch(loader, max_batches)
    return {"setup_s": setup_s, "images": images, "epoch_wall_s": wall, "full_epoch": max_batches is None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=default_data_root())
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of our loader (median reported)")
    parser.add_argument("--baseline-batches", type=int, help="stop the torchvision epoch after N batches")
    parser.add_argument("--max-shift", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_data_loader.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    start = time.perf_counter()
    pipelines = {
        "MNISTDataModule": ours(args.root, args.batch_size, 0, args.epochs),
        f"MNISTDataModule max_shift={args.max_shift}": ours(args.root, args.batch_size, args.max_shift, args.epochs),
        "torchvision MNIST + ToTensor + DataLoader": torchvision_baseline(
            args.root, args.batch_size, args.baseline_batches
        ),
    }
    total_s = time.perf_counter() - start
    baseline = pipelines["torchvision MNIST + ToTensor + DataLoader"]
    baseline_rate = baseline["images"] / baseline["epoch_wall_s"]
    for result in pipelines.values():
        result["images_per_s"] = result["images"] / result["epoch_wall_s"]
        result["speedup_vs_torchvision"] = result["images_per_s"] / baseline_rate

    print(f"{'pipeline':<44}{'images':>8}{'epoch s':>10}{'images/s':>12}{'ratio':>8}{'setup s':>9}")
    for name, r in pipelines.items():
        print(
            f"{name:<44}{r['images']:>8}{r['epoch_wall_s']:>10.3f}{r['images_per_s']:>12,.0f}"
            f"{r['speedup_vs_torchvision']:>7.1f}x{r['setup_s']:>9.2f}"
        )
    payload = {
        "benchmark": "data_loader",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "batch_size": args.batch_size,
        "hardware": hardware(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "total_wall_s": total_s,
        "pipelines": pipelines,
    }
    write_json(args.out, payload)
    print(f"load average before {load_before}, after {payload['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
