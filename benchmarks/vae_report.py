"""The VAE family's report numbers from one checkpoint, each with its protocol.

    python benchmarks/vae_report.py RUN_OR_CKPT [--data mnist] [--limit 10000] [--likelihood-k 100]

Bayes-rule test accuracy, accuracy with 50% of pixels missing (i.i.d., seeded), imputation error
on the missing pixels, the log-likelihood bound, and AUROC of every anomaly score with the test
split of the other dataset as out-of-distribution. Prints one JSON line; times are wall seconds
and process CPU seconds (on a shared machine, CPU seconds / cores estimates an idle one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgbench.checkpoint import load_model  # noqa: E402
from dgbench.data import load_split  # noqa: E402
from dgbench.evaluation.metrics import ood_metrics  # noqa: E402
from dgbench.evaluation.suites import batched  # noqa: E402

OTHER = {"mnist": "fashion_mnist", "fashion_mnist": "mnist"}


def test_split(name: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split(name, os.environ.get("DATA_DIR", "./data"), train=False)
    return images[:limit].unsqueeze(1).float() / 255, labels[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--data", default="mnist", choices=sorted(OTHER))
    parser.add_argument("--limit", type=int, default=10000, help="test images per dataset")
    parser.add_argument("--likelihood-k", type=int, help="override the checkpoint's likelihood_k")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(args.ckpt, device)
    if args.likelihood_k:
        model.likelihood_k = args.likelihood_k
    x, y = test_split(args.data, args.limit)
    observed = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= 0.5
    report: dict[str, object] = {"data": args.data, "n": len(x), "classify_k": model.classify_k}
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn, *tensors: torch.Tensor):
        wall, cpu = time.perf_counter(), time.process_time()
        out = batched(fn, *tensors, batch_size=500, device=device)
        timings[name] = [round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)]
        return out

    report["acc"] = (timed("classify", model.classify, x).argmax(1) == y).float().mean().item()
    report["acc_50pct_missing"] = (
        (timed("classify_missing", model.classify, x, observed).argmax(1) == y).float().mean().item()
    )
    filled = timed("impute", model.impute, x, observed)
    report["impute_mse_missing"] = (filled - x)[~observed].square().mean().item()
    report["nll_nats"] = -timed("log_likelihood", model.log_likelihood, x).mean().item()
    report["likelihood_protocol"] = model.likelihood_protocol
    ood, _ = test_split(OTHER[args.data], args.limit)
    scores_in, scores_out = (
        timed("anomaly_in", model.score_anomalies, x),
        timed("anomaly_out", model.score_anomalies, ood),
    )
    for name in scores_in:
        report[f"auroc_{args.data}_vs_{OTHER[args.data]}_{name}"] = ood_metrics(scores_in[name], scores_out[name])[
            "auroc"
        ]
    report["timings_wall_cpu_s"] = timings
    report["device"] = str(device)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
