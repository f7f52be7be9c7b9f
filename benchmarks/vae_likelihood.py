"""The VAE's test log-likelihood with the literature's protocol: IWAE with k importance samples.

    OMP_NUM_THREADS=1 python benchmarks/vae_likelihood.py RUN_OR_CKPT [--k 5000] [--images 1000]
        [--out results/vae_likelihood.json]

Burda et al. 2016 report -log p(x) on binarized MNIST with k = 5000 (eq. 8; their IWAE: 82.90 nats;
pythae's VAE reproduction 89.78 nats at k = 200). Here, on the first ``--images`` test images, each
binarized once with the model's seeded binarization (``likelihood_protocol``): log p(x|y) for all ten
classes from k samples of q(z|x, y) each, log p(x) = logsumexp_y [log p(x|y) + log 1/10] (the
class marginalised) and log p(x|y) at the true label, mean with a 95 % t-interval over images.
A lower bound whatever k; the bound tightens as k grows, which --k lets one watch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgbench.checkpoint import load_model  # noqa: E402
from dgbench.data import load_split  # noqa: E402
from dgbench.progress import Progress  # noqa: E402
from dgbench.runtime import environment  # noqa: E402


def mean_ci(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean and 95 % normal-approximation interval (n >= 100 here)."""
    mean, half = values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per class")
    parser.add_argument("--images", type=int, default=1000, help="the first N test images")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/vae_likelihood.json"))
    args = parser.parse_args()
    model = load_model(args.ckpt, torch.device("cpu"))
    images, labels = load_split("mnist", os.environ.get("DATA_DIR", "./data"), train=False)
    x, y = images[: args.images].unsqueeze(1).float() / 255, labels[: args.images]
    start, per_class = time.perf_counter(), []
    progress = Progress(len(x), f"IWAE k={args.k}")
    with torch.inference_mode():  # gray x in: the encoder reads it, the bound scores its fixed binarization
        for i in range(0, len(x), args.batch):
            per_class.append(model.log_px_given_y(x[i : i + args.batch], None, args.k))
            progress.update(i + len(per_class[-1]))
    log_px_y = torch.cat(per_class).double()  # (N, 10), nats
    marginal = torch.logsumexp(log_px_y + model.log_prior, dim=1)
    true_class = log_px_y.gather(1, y[:, None]).squeeze(1)
    nll, nll_y = mean_ci(-marginal), mean_ci(-true_class)
    record = {
        "ckpt": str(args.ckpt),
        "k": args.k,
        "images": len(x),
        "protocol": model.likelihood_protocol.replace(f"k={model.likelihood_k}", f"k={args.k}"),
        "nll_nats": nll[0],
        "nll_ci": nll[1:],
        "nll_given_true_class_nats": nll_y[0],
        "nll_given_true_class_ci": nll_y[1:],
        "bayes_accuracy_binarized": (log_px_y.argmax(1) == y).double().mean().item(),
        "wall_s": round(time.perf_counter() - start, 1),
        **environment(),
    }
    print(json.dumps(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
