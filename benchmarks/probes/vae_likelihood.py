"""The VAE's test log-likelihood with the literature's protocol: IWAE with k importance samples.

    OMP_NUM_THREADS=1 python benchmarks/probes/vae_likelihood.py RUN_OR_CKPT [--k 5000] [--images 1000] [--start 0]
        [--out results/vae_likelihood.json]
    python benchmarks/probes/vae_likelihood.py --merge PART.json PART.json ... --out PATH

Burda et al. 2016 report -log p(x) on binarized MNIST with k = 5000 (eq. 8; their IWAE: 82.90 nats;
pythae's VAE reproduction 89.78 nats at k = 200). Here, on the first ``--images`` test images, each
binarized once with the model's seeded binarization (``likelihood_protocol``): log p(x|y) for all ten
classes from k samples of q(z|x, y) each, log p(x) = logsumexp_y [log p(x|y) + log 1/10] (the
class marginalised) and log p(x|y) at the true label, mean with a 95 % normal interval over images.
A lower bound whatever k; the bound tightens as k grows, which --k lets one watch.

k = 5 000 costs ~2 h of one core per 1 000 images: measure parts side by side (``--start``, one
core each) and join them with ``--merge`` (each record keeps its per-image values for that).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from dgbench.checkpoint import load_model
from dgbench.data import to_float
from dgbench.datasets import default_data_root, load_split
from dgbench.progress import Progress
from dgbench.runtime import environment


def mean_ci(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean and 95 % normal-approximation interval (n >= 100 here)."""
    mean, half = values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))
    return mean, mean - half, mean + half


def summarise(nll: torch.Tensor, nll_given_true_class: torch.Tensor, correct: torch.Tensor) -> dict[str, Any]:
    """The record's numbers from per-image values (nats; correct: the Bayes rule's argmax was right)."""
    marginal, true_class = mean_ci(nll.double()), mean_ci(nll_given_true_class.double())
    return {
        "nll_nats": marginal[0],
        "nll_ci": list(marginal[1:]),
        "nll_given_true_class_nats": true_class[0],
        "nll_given_true_class_ci": list(true_class[1:]),
        "bayes_accuracy_binarized": correct.double().mean().item(),
    }


def merge(paths: list[Path]) -> dict[str, Any]:
    """Parts measured with ``--start`` as one record: same checkpoint and k, disjoint image ranges."""
    parts = sorted((json.loads(path.read_text()) for path in paths), key=lambda r: r["start"])
    if len({(r["ckpt"], r["k"], r["protocol"]) for r in parts}) != 1:
        raise SystemExit("error: the parts differ in checkpoint, k or protocol; merge like with like")
    for before, after in zip(parts, parts[1:]):
        if before["start"] + before["images"] > after["start"]:
            raise SystemExit(f"error: parts starting at {before['start']} and {after['start']} overlap")
    per_image = parts[0]["per_image"]
    values = {
        key: torch.tensor([v for r in parts for v in r["per_image"][key]], dtype=torch.float64) for key in per_image
    }
    return {
        **{key: parts[0][key] for key in ("ckpt", "k", "protocol")},
        "images": sum(r["images"] for r in parts),
        "ranges": [[r["start"], r["start"] + r["images"] - 1] for r in parts],
        **summarise(values["nll"], values["nll_given_true_class"], values["correct"]),
        "wall_s": sum(r["wall_s"] for r in parts),
        "parts": [str(path) for path in paths],
        **{key: parts[0][key] for key in ("device", "torch_version", "python") if key in parts[0]},
    }


def write(record: dict[str, Any], out: Path) -> None:
    print(json.dumps({k: v for k, v in record.items() if k != "per_image"}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", nargs="?")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per class")
    parser.add_argument("--images", type=int, default=1000, help="how many test images, from --start")
    parser.add_argument("--start", type=int, default=0, help="the first test image")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--merge", type=Path, nargs="+", help="parts (--out files) to join, no model")
    parser.add_argument("--out", type=Path, default=Path("results/vae_likelihood.json"))
    args = parser.parse_args()
    if args.merge:
        write(merge(args.merge), args.out)
        return
    if not args.ckpt:
        parser.error("give a run directory or checkpoint (or --merge parts)")
    model = load_model(args.ckpt, torch.device("cpu"))
    images, labels = load_split("mnist", default_data_root(), train=False)
    rows = slice(args.start, args.start + args.images)
    x, y = to_float(images[rows]), labels[rows]
    if len(x) < 2:
        parser.error(
            f"--start {args.start} --images {args.images} selects {len(x)} of {len(images)} test images; need 2+"
        )
    start, per_class = time.perf_counter(), []
    progress = Progress(len(x), f"IWAE k={args.k}")
    with torch.inference_mode():  # gray x in: the encoder reads it, the bound scores its fixed binarization
        for i in range(0, len(x), args.batch):
            per_class.append(model.log_px_given_y(x[i : i + args.batch], None, args.k))
            progress.update(i + len(per_class[-1]))
    log_px_y = torch.cat(per_class).double()  # (N, 10), nats
    per_image = {
        "nll": -torch.logsumexp(log_px_y + model.log_prior, dim=1),
        "nll_given_true_class": -log_px_y.gather(1, y[:, None]).squeeze(1),
        "correct": (log_px_y.argmax(1) == y).double(),
    }
    record = {
        "ckpt": str(args.ckpt),
        "k": args.k,
        "start": args.start,
        "images": len(x),
        "protocol": model.likelihood_protocol.replace(f"k={model.likelihood_k}", f"k={args.k}"),
        **summarise(per_image["nll"], per_image["nll_given_true_class"], per_image["correct"]),
        "wall_s": round(time.perf_counter() - start, 1),
        **environment(),
        "per_image": {key: [round(v, 4) for v in values.tolist()] for key, values in per_image.items()},
    }
    write(record, args.out)


if __name__ == "__main__":
    main()
