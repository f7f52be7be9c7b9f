"""What a generative family's samples and latent space show: the interpretability figures of the primer's
"varies; latent spaces complex".

    python benchmarks/probes/generative_figures.py runs/primer_cpu [--out results/generative] [--per-class 100]

Two figures from the benchmark's checkpoints (every run directory under RUNS with a checkpoint):

* ``sampler_directions.png``: for every family that can ``sample``, per class, the mean of
  ``--per-class`` samples and that mean moved ±2 standard deviations along the samples' first
  principal direction (PCA of the class's samples, Pearson 1901): what a class looks like to the
  model, and the one direction in which its samples vary most (slant, thickness, a loop opening).
* ``latent_traversals.png``: for every family with a latent decoder (``latent_dim`` and
  ``decode(z, y)``: the VAE, M2), the four most active latent units (largest variance of the
  posterior mean over 1 000 test images: Burda et al. 2016's activity A_u = Cov_x(E_q[z_u])), each
  swept from -3 to 3 with every other unit at 0, decoded for three classes. A unit is interpretable
  when one sweep changes one visible property for every class.

Seeds are fixed; the figures and the activities (printed, and in ``generative_figures.json``) are
reproducible.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model
from dgbench.data import to_float
from dgbench.datasets import default_data_root, load_split
from dgbench.rundir import RunDir

matplotlib.use("Agg")  # figures go to files: never ask for a display

CLASSES, SWEEP, TRAVERSED_CLASSES, UNITS = 10, torch.linspace(-3, 3, 9), (0, 4, 7), 4


def class_directions(model: torch.nn.Module, per_class: int, seed: int) -> torch.Tensor:
    """(3, 10, 28, 28): per class, mean - 2 sd v1, mean, mean + 2 sd v1 of ``per_class`` samples."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for y in range(CLASSES):
        samples = model.sample(per_class, torch.full((per_class,), y), generator).float().flatten(1).cpu()
        mean = samples.mean(0)
        _, s, v = torch.linalg.svd(samples - mean, full_matrices=False)
        step = 2 * s[0] / (per_class - 1) ** 0.5 * v[0]  # 2 sd along the first principal direction
        rows.append(torch.stack([mean - step, mean, mean + step]))
    return torch.stack(rows, 1).view(3, CLASSES, 28, 28).clamp(0, 1)


def traversals(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, list[int], list[float]]:
    """(units, classes, steps, 28, 28) decoded sweeps of the most active units, their indices and activities."""
    posterior = model.posterior  # q(z | x, y) for every y: means (N, classes, D) first
    takes_mask = len(inspect.signature(posterior).parameters) > 1
    mean = (posterior(images, torch.ones_like(images, dtype=torch.bool)) if takes_mask else posterior(images))[0]
    activity = mean[torch.arange(len(images)), labels].var(0)  # Cov_x(E_q[z_u | x, y]) at each image's label
    units = activity.argsort(descending=True)[:UNITS].tolist()
    sweeps = []
    for u in units:
        z = torch.zeros(len(TRAVERSED_CLASSES), len(SWEEP), model.latent_dim)
        z[..., u] = SWEEP
        y = torch.tensor(TRAVERSED_CLASSES)[:, None].expand(-1, len(SWEEP))
        sweeps.append(
            torch.sigmoid(model.decode(z.flatten(0, 1), y.flatten())).view(len(TRAVERSED_CLASSES), len(SWEEP), 28, 28)
        )
    return torch.stack(sweeps), units, [activity[u].item() for u in units]


def grid(ax: plt.Axes, images: torch.Tensor, title: str) -> None:
    """Images (rows, cols, 28, 28) tiled into one picture on ``ax``."""
    rows, cols = images.shape[:2]
    ax.imshow(images.permute(0, 2, 1, 3).reshape(rows * 28, cols * 28), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8, loc="left")
    ax.axis("off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results/generative"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    start, record = time.perf_counter(), {"per_class": args.per_class, "seed": args.seed, "latent": {}}
    models = {}
    for run in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        if RunDir(run).finished() and "sample" in capabilities_of(model := load_model(run, torch.device("cpu"))):
            models[run.name] = model
    directions = {}
    for name, model in models.items():
        print(f"{name}: {args.per_class} samples per class", flush=True)
        directions[name] = class_directions(model.eval(), args.per_class, args.seed)
    fig, axes = plt.subplots(len(directions), 1, figsize=(7, 2.3 * len(directions)), squeeze=False)
    for ax, (name, d) in zip(axes[:, 0], directions.items(), strict=True):
        grid(ax, d, f"{name}: per class, mean - 2 sd, mean, mean + 2 sd along the samples' first principal direction")
    fig.tight_layout()
    fig.savefig(args.out / "sampler_directions.png", dpi=110)
    images, labels = load_split("mnist", default_data_root(), train=False)
    images, labels = to_float(images[:1000]), labels[:1000]
    latent = {
        n: m for n, m in models.items() if hasattr(m, "latent_dim") and hasattr(m, "decode") and hasattr(m, "posterior")
    }
    if latent:
        fig, axes = plt.subplots(len(latent), UNITS, figsize=(3.2 * UNITS, 1.4 * len(latent) + 0.4), squeeze=False)
        for row, (name, model) in zip(axes, latent.items(), strict=True):
            sweeps, units, activity = traversals(model, images, labels)
            record["latent"][name] = {"units": units, "activity": activity, "latent_dim": model.latent_dim}
            print(f"{name}: most active units {units}, activity {[round(a, 3) for a in activity]}", flush=True)
            for ax, sweep, u, a in zip(row, sweeps, units, activity, strict=True):
                grid(ax, sweep, f"{name}: z[{u}] from -3 to 3 (activity {a:.2f}); classes {TRAVERSED_CLASSES}")
        fig.tight_layout()
        fig.savefig(args.out / "latent_traversals.png", dpi=110)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    (args.out / "generative_figures.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}: sampler_directions.png, latent_traversals.png, generative_figures.json")


if __name__ == "__main__":
    main()
