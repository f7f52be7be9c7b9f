"""Quick numbers for a trained GAN: anomaly AUROC (MNIST vs Fashion-MNIST test) and imputation.

A probe for development, not the benchmark (``evaluate.py`` is): it checks that both anomaly
scores separate the datasets and that latent-optimisation imputation beats a mean fill, and times
each capability.

    python benchmarks/gan_probe.py runs/gan_cpu/gan/<run> [--n 1000] [--impute-n 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dgbench.checkpoint import load_model  # noqa: E402
from dgbench.data import default_data_root, load_split  # noqa: E402
from dgbench.evaluation.metrics import ood_metrics  # noqa: E402


def images(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_split(name, default_data_root(), train=False)
    return x[:n].unsqueeze(1).float() / 255, y[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt or a run directory")
    parser.add_argument("--n", type=int, default=1000, help="test images per dataset for AUROC")
    parser.add_argument("--impute-n", type=int, default=200, help="images to impute (top half observed)")
    args = parser.parse_args()
    model = load_model(args.checkpoint)

    mnist, labels = images("mnist", args.n)
    fashion, _ = images("fashion_mnist", args.n)
    start = time.perf_counter()
    inlier, outlier = model.score_anomalies(mnist), model.score_anomalies(fashion)
    seconds = time.perf_counter() - start
    for name in inlier:
        auroc = ood_metrics(inlier[name], outlier[name])["auroc"]
        print(f"AUROC mnist->fashion_mnist [{name}] = {auroc:.4f}")
    print(f"score_anomalies: {seconds:.1f} s for {2 * args.n} images")

    x = mnist[: args.impute_n]
    observed = torch.zeros_like(x, dtype=torch.bool)
    observed[:, :, :14] = True  # top half observed
    start = time.perf_counter()
    filled = model.impute(x, observed)
    seconds = time.perf_counter() - start
    missing = ~observed
    mse = (filled - x)[missing].pow(2).mean()
    mean_fill = (x[observed].mean() - x)[missing].pow(2).mean()
    assert torch.equal(filled[observed], x[observed])
    print(f"impute (top half observed): MSE on missing pixels {mse:.4f}, mean fill {mean_fill:.4f}")
    print(f"impute: {seconds:.1f} s for {args.impute_n} images")

    start = time.perf_counter()
    model.sample(1000, generator=torch.Generator().manual_seed(0))
    print(f"sample: {time.perf_counter() - start:.2f} s for 1000 images")


if __name__ == "__main__":
    main()
