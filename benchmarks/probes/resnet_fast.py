"""Wall time and test accuracy of ``experiment=resnet_fast``: our data pipeline vs torchvision's.

    python benchmarks/probes/resnet_fast.py [--seeds 42 1 2] [--epochs N] [--limit N] [--threads N] [--skip-baseline]

Both runs go through ``train.train`` with the same composed config (model, optimiser, one-cycle
schedule, seed, validation every epoch, checkpointing, testing the best checkpoint); only the
datamodule differs. The baseline is the textbook pipeline: ``torchvision.datasets.MNIST(
transform=ToTensor())`` wrapped in ``DataLoader``s (num_workers=0) with the same train/val split,
batch sizes and drop_last. Wall time is measured around ``train.train`` (setup, training and test,
after imports). Meaningful only on an otherwise idle machine: the load average is recorded.
Our pipeline runs once per ``--seeds`` (a one-epoch recipe sits within a few tenths of a point of
99 %, so one seed would say little); the baseline runs with the first seed.
``--epochs 1 --limit 20`` runs a quick end-to-end check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import ToTensor

from dgbench.runtime import compose_config, hardware, register_resolvers, write_json
from train import train

ROOT = Path(__file__).resolve().parents[2]


class TorchvisionMNIST(L.LightningDataModule):
    """The per-sample pipeline: PIL image -> ToTensor in ``__getitem__``, collated by a DataLoader.

    The split is drawn exactly as ``MNISTDataModule`` draws it (same seed, same permutation), so
    both pipelines train, validate and test on the same images.
    """

    def __init__(self, root: str, batch_size: int, eval_batch_size: int, val_size: int, seed: int) -> None:
        super().__init__()
        self.root, self.batch_size, self.eval_batch_size = root, batch_size, eval_batch_size
        self.val_size, self.seed = val_size, seed

    def setup(self, stage: str | None = None) -> None:
        train_set = torchvision.datasets.MNIST(self.root, train=True, transform=ToTensor(), download=False)
        perm = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(self.seed))
        self.val, self.train = Subset(train_set, perm[: self.val_size]), Subset(train_set, perm[self.val_size :])
        self.test = torchvision.datasets.MNIST(self.root, train=False, transform=ToTensor(), download=False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, self.batch_size, shuffle=True, num_workers=0, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, self.eval_batch_size, num_workers=0)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, self.eval_batch_size, num_workers=0)


def make_config(args: argparse.Namespace, output_dir: Path, seed: int) -> DictConfig:
    overrides = ["experiment=resnet_fast", "logger=none", "trainer.enable_progress_bar=false", f"seed={seed}"]
    overrides += [f"trainer.accelerator={args.accelerator}"]
    if args.epochs is not None:
        overrides.append(f"trainer.max_epochs={args.epochs}")
    if args.limit is not None:
        overrides += [f"trainer.limit_{split}_batches={args.limit}" for split in ("train", "val", "test")]
    return compose_config(overrides, output_dir)


def timed_run(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    metrics = train(cfg)
    wall_s = time.perf_counter() - start
    keep = ("test/acc", "test/loss", "train_time_s", "epochs", "global_step", "num_parameters", "precision")
    return {"wall_s": wall_s, **{k: metrics.get(k) for k in keep}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="seeds of our pipeline's runs")
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs (recipe: 2)")
    parser.add_argument("--limit", type=int, help="batches per train/val/test epoch (quick check)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_resnet_fast.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_resolvers()

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours = [timed_run(make_config(args, Path(tmp) / f"ours_{seed}", seed)) for seed in args.seeds]
        results["MNISTDataModule"] = ours[0]
        if not args.skip_baseline:
            cfg = make_config(args, Path(tmp) / "torchvision", args.seeds[0])
            with open_dict(cfg):
                cfg.data = OmegaConf.create(
                    {
                        "_target_": f"{TorchvisionMNIST.__module__}.{TorchvisionMNIST.__qualname__}",
                        **{k: cfg.data[k] for k in ("root", "batch_size", "eval_batch_size", "val_size", "seed")},
                    }
                )
            results["torchvision DataLoader"] = timed_run(cfg)

    print(f"\n{'pipeline':<26}{'wall s':>9}{'train s':>9}{'test acc':>10}{'steps':>7}")
    for name, r in results.items():
        print(f"{name:<26}{r['wall_s']:>9.1f}{r['train_time_s']:>9.1f}{r['test/acc']:>10.4f}{r['global_step']:>7}")
    accs, walls = [r["test/acc"] for r in ours], [r["wall_s"] for r in ours]
    results["seeds"] = {
        "seeds": args.seeds,
        "test_acc": accs,
        "wall_s": walls,
        "test_acc_min": min(accs),
        "test_acc_mean": sum(accs) / len(accs),
        "wall_s_max": max(walls),
    }
    print(f"seeds {args.seeds}: test acc {min(accs):.4f}-{max(accs):.4f}, wall {min(walls):.1f}-{max(walls):.1f} s")
    if "torchvision DataLoader" in results:
        speedup = results["torchvision DataLoader"]["wall_s"] / results["MNISTDataModule"]["wall_s"]
        results["wall_speedup"] = speedup
        print(f"wall-time speed-up of MNISTDataModule: {speedup:.2f}x")
    payload = {
        "benchmark": "resnet_fast",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "complete_recipe": args.epochs is None and args.limit is None,
        "hardware": hardware(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": results,
    }
    write_json(args.out, payload)
    print(f"load average before {load_before}, after {payload['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
