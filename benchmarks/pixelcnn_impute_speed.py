"""PixelCNN imputation: each sampling step on every image (before) vs only the images that lack the pixel.

    python benchmarks/pixelcnn_impute_speed.py [RUN_OR_CKPT] [--n 500] [--out results/cpu/pixelcnn_impute_speed.md]

``impute`` fills the missing pixels in raster order, one network pass per pixel position
(models/pixelcnn.py, ``fill``). Before, each pass ran on the whole batch and kept the draws of the
images that lack the pixel; now it runs on those images only, so with a fraction p of the pixels
missing at random a pass reads ~p of the batch. Both versions run here on the same images and
masks (missing_features' own, seed 0), in one process and one thread like a benchmark worker, in the
order before, after, after, before (a drift of the machine's speed cancels), timed in process CPU
seconds (what another process on the machine changes least); the table also gives the largest
difference of the imputed values (float rounding only: the draws use the same uniforms).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dgbench.checkpoint import load_model  # noqa: E402
from dgbench.data import default_data_root, load_split  # noqa: E402
from dgbench.evaluation.suites.missing_features import observed_masks  # noqa: E402
from dgbench.runtime import cpu_model  # noqa: E402


def fill_every_image(self, inputs: Tensor, labels: Tensor, todo: Tensor, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """The previous ``fill``: each step runs the window on the whole batch."""
    probabilities = torch.zeros_like(inputs, dtype=torch.float32)
    width, reach = inputs.shape[-1], self.net.receptive_rows
    for t in todo.flatten(1).any(0).nonzero().flatten().tolist():
        row, col = divmod(t, width)
        top, left = max(0, row - reach), max(0, col - reach)
        window = inputs[:, :, top : row + 1, left : col + reach + 1]
        p = torch.sigmoid(self.net(window, labels)[:, 0, row - top, col - left].float())
        bit = (uniforms[:, t] < p).to(inputs.dtype)
        inputs[:, 0, row, col] = torch.where(todo[:, 0, row, col], 2 * bit - 1, inputs[:, 0, row, col])
        probabilities[:, 0, row, col] = p
    return inputs, probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", default="runs/primer_cpu/pixelcnn/checkpoints/best.ckpt")
    parser.add_argument("--n", type=int, default=500, help="test images (one batch, the hour's batch_size)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "cpu" / "pixelcnn_impute_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.run).eval()
    subset_fill = type(model).fill
    images, _ = load_split("mnist", default_data_root(), train=False, download=False)
    x = (images[: args.n].float() / 255).unsqueeze(1)
    masks = observed_masks(args.n, torch.Generator().manual_seed(0))
    cpu = cpu_model()
    lines = [
        f"# PixelCNN imputation speed: `{args.run}`, {args.n} test images, one thread",
        "",
        f"{cpu}, torch {torch.__version__}. Command: `python benchmarks/pixelcnn_impute_speed.py {args.run} --n {args.n}`",
        "",
        "| mask | every image (CPU s, twice) | images lacking the pixel (CPU s, twice) | speed-up | max difference |",
        "|---|---|---|---|---|",
    ]
    total = {"before": 0.0, "after": 0.0}
    fills = {"before": fill_every_image, "after": subset_fill}
    for name, observed in masks.items():
        if bool(observed.all()):
            continue  # nothing to impute
        seconds, filled = {"before": 0.0, "after": 0.0}, {}
        for which in ("before", "after", "after", "before"):
            type(model).fill = fills[which]
            start = time.process_time()
            filled[which] = model.impute(x * observed, observed)
            elapsed = time.process_time() - start
            seconds[which] += elapsed
            total[which] += elapsed
        type(model).fill = subset_fill
        gap = (filled["before"] - filled["after"]).abs().max().item()
        lines.append(
            f"| {name} | {seconds['before']:.1f} | {seconds['after']:.1f} | {seconds['before'] / seconds['after']:.2f} | {gap:.1e} |"
        )
        print(lines[-1], flush=True)
    lines.append(f"| all | {total['before']:.1f} | {total['after']:.1f} | {total['before'] / total['after']:.2f} | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
