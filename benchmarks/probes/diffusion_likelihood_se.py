"""How many timesteps the diffusion model's class-marginal bound needs: its per-image standard error by T.

    OMP_NUM_THREADS=1 python benchmarks/probes/diffusion_likelihood_se.py RUN_OR_CKPT [--images 200]
        [--timesteps 2 4 8 16 32] [--out results/cpu/diffusion_likelihood_se]

On the first ``--images`` images of the checkpoint's own validation split (never test or OOD images),
for each T: the class-marginal bound log p(x) >= log Σ_y p(y) exp(-L_vlb(x|y)) (``log_likelihood``)
and its per-image Monte-Carlo standard error over the T stratified timesteps
(``log_likelihood_standard_error``: delta method through the class softmax, collapsed strata), with
the CPU seconds per image. results/protocol.md picks the smallest T whose median error is <= 5 nats.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dgbench.checkpoint import load_model
from dgbench.data import held_out_validation, to_float
from dgbench.runtime import environment, write_json
from dgbench.settings import apply_settings

RULE_NATS = 5.0  # results/protocol.md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a diffusion run directory or checkpoint")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--spacing", default="uniform", help="the strata of the timesteps: uniform or quadratic")
    parser.add_argument("--out", type=Path, default=Path("results/cpu/diffusion_likelihood_se"))
    args = parser.parse_args()

    model = load_model(args.ckpt)
    split = model.validation_split
    if not split:
        raise SystemExit(f"error: {args.ckpt} records no validation split: train it with train.py")
    images = to_float(held_out_validation(split["dataset"], split["val_size"], split["seed"])[0][: args.images])
    rows = []
    for steps in args.timesteps:
        apply_settings({"diffusion": model}, {"likelihood_timesteps": steps, "likelihood_spacing": args.spacing})
        start = time.process_time()
        log_px, se = model.log_likelihood(images), model.log_likelihood_standard_error(images)
        seconds = (time.process_time() - start) / len(images)
        rows.append(
            {
                "timesteps": steps,
                "mean_log_px": log_px.mean().item(),
                "median_se": se.median().item(),
                "p90_se": se.quantile(0.9).item(),
                "cpu_s_per_image": round(seconds, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    chosen = next((r["timesteps"] for r in rows if r["median_se"] <= RULE_NATS), max(args.timesteps))
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"ckpt": str(args.ckpt), "images": len(images), "spacing": args.spacing, "rule_nats": RULE_NATS}
    record |= {"chosen": chosen, "rows": rows, **environment(), "threads": torch.get_num_threads()}
    write_json(args.out / f"se_by_timesteps_{args.spacing}.json", record)
    lines = [
        f"# Class-marginal bound: standard error by timesteps, {args.spacing} strata ({len(images)} validation images)",
        "",
        f"`python benchmarks/probes/diffusion_likelihood_se.py <run> --images {args.images} --spacing {args.spacing}`",
        "",
        "| T | mean log p(x) (nats) | median SE | 90th pct SE | CPU s / image (both the bound and its SE) |",
        "|---|---|---|---|---|",
        *(
            f"| {r['timesteps']} | {r['mean_log_px']:.1f} | {r['median_se']:.2f} | {r['p90_se']:.2f} | "
            f"{r['cpu_s_per_image']} |"
            for r in rows
        ),
        "",
        f"Rule (results/protocol.md): the smallest T with median SE <= {RULE_NATS} nats: **T = {chosen}**.",
    ]
    (args.out / f"{args.spacing}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
