"""DDIM vs DPM-Solver++(2M) on one diffusion checkpoint: FID and images/s at each step count.

    nice -n 19 python benchmarks/probes/diffusion_samplers.py [RUN_OR_CKPT] [--n 1000] [--dpm-steps 10 15 20]
        [--ddim-steps 50] [--out results/diffusion_samplers]

The FID is sample_quality's (dgbench/evaluation/suites/sample_quality.py): the shipped feature
classifier's features of n class-balanced samples against the same n training images the suite uses
(``load_eval_data`` with evaluate.yaml's budget and seed), with the normal-bootstrap 95 % interval of
``stats.fid_interval``. Every sampler gets the same seed, so the same x_T and labels; guidance is
the checkpoint's own. images/s is wall-clock over sampling alone; ``cpu_s`` (process CPU time) is
reported beside it because wall time on a shared machine depends on the load. Writes OUT.json and
OUT.md, updated after each sampler so that an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from dgbench.checkpoint import load_model, resolve_checkpoint
from dgbench.datasets import default_data_root
from dgbench.evaluation import stats
from dgbench.evaluation.features import load_feature_net
from dgbench.evaluation.suites import batched, load_eval_data
from dgbench.runtime import environment, fast_bf16, write_json

ROOT = Path(__file__).resolve().parents[2]

BATCH = 500  # evaluate.yaml's batch_size: sample_quality samples in chunks of this many


def measure(model: Any, sampler: str, steps: int, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, float, float]:
    model.sampler, model.sample_steps = sampler, steps
    generator = torch.Generator().manual_seed(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        chunks = [model.sample(len(y), labels=y, generator=generator).float().cpu() for y in labels.split(BATCH)]
    return torch.cat(chunks).clamp(0, 1), time.perf_counter() - wall, time.process_time() - cpu


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Diffusion samplers: DDIM vs DPM-Solver++(2M)",
        "",
        f"Checkpoint `{payload['ckpt']}`, guidance w = {payload['guidance_scale']}, n = {payload['n']} class-balanced "
        f"samples per sampler (seed {payload['seed']}, the same x_T and labels for all), FID of the shipped feature "
        f"classifier against {payload['n_reference']} training images (sample_quality's reference) with its 95 % "
        f"bootstrap interval. Device: {payload['device']}; torch {payload['torch_version']}; {payload['threads']} threads; "
        f"network in bf16 autocast: {payload.get('bf16_network')}.",
        "",
        "| sampler | steps (network evaluations) | FID [95 % interval] | images/s | images per CPU s | wall s | CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        lo, hi = r["fid_ci"]
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['fid']:.2f} [{lo:.2f}, {hi:.2f}] | {r['images_per_s']:.2f} | "
            f"{r['images_per_cpu_s']:.2f} | "
            f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} |"
        )
    floor = payload.get("floor")
    if floor:
        lines += ["", f"Real-data floor (held-out test images, same n): FID {floor['fid']:.2f}."]
    if payload.get("verdict"):
        lines += ["", payload["verdict"]]
    lines += ["", f"Command: `{payload['command']}`", ""]
    return "\n".join(lines)


def verdict(runs: list[dict[str, Any]]) -> str | None:
    base = next((r for r in runs if r["sampler"] == "ddim"), None)
    fast = sorted((r for r in runs if r["sampler"] == "dpmpp_2m"), key=lambda r: r["steps"])
    if base is None or not fast:
        return None
    # Speed by process CPU time: on a shared machine wall time measures the neighbours' load too.
    ok = [
        r
        for r in fast
        if r["fid"] <= 1.1 * base["fid"]
        and r["images_per_cpu_s"] >= 3 * base["images_per_cpu_s"]
        and 10 <= r["steps"] <= 20
    ]
    target = (
        f"target (FID within 10 % of DDIM-{base['steps']}'s {base['fid']:.2f}, >= 3x its images per CPU second, "
        "10-20 steps)"
    )
    if not ok:
        return f"No DPM-Solver++ step count meets the {target}."
    r = ok[0]
    return (
        f"Smallest DPM-Solver++ step count meeting the {target}: **{r['steps']}** "
        f"(FID {r['fid']:.2f}, {r['images_per_cpu_s'] / base['images_per_cpu_s']:.1f}x the images per CPU second, "
        f"{r['images_per_s'] / base['images_per_s']:.1f}x by wall clock)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", nargs="?", default="runs/primer_cpu/diffusion/checkpoints/best.ckpt")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--dpm-steps", type=int, nargs="+", default=[10, 15, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/diffusion_samplers")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = resolve_checkpoint(args.ckpt)
    model = load_model(ckpt, "cpu")
    config = OmegaConf.load(ROOT / "configs" / "evaluate.yaml")
    budget = {**OmegaConf.to_container(config.budget), "sample_quality": args.n}
    data = load_eval_data("mnist", str(default_data_root()), budget, config.seed)
    feature_net = load_feature_net(None, "cpu")
    embed = lambda x: batched(feature_net.features, x, batch_size=BATCH, device=torch.device("cpu"))  # noqa: E731
    real = embed(data.train_images)
    labels = torch.arange(10).repeat(args.n // 10 + 1)[: args.n]
    payload: dict[str, Any] = {
        "ckpt": str(Path(args.ckpt)),
        "command": "python " + " ".join(sys.argv),
        "n": args.n,
        "n_reference": len(real),
        "seed": args.seed,
        "guidance_scale": model.guidance_scale,
        "default_sampler": f"{model.sampler}-{model.sample_steps}",
        # bf16 autocast of the network where the CPU computes bf16 natively (the family's bf16_inference)
        "bf16_network": bool(getattr(model, "bf16_inference", False) and fast_bf16(torch.device("cpu"))),
        **environment(),
        "threads": torch.get_num_threads(),
        "floor": stats.fid_interval(real, embed(data.heldout_images), seed=args.seed),
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for sampler, steps in [("ddim", args.ddim_steps), *(("dpmpp_2m", s) for s in args.dpm_steps)]:
        samples, wall, cpu = measure(model, sampler, steps, labels, args.seed)
        run = {"sampler": sampler, "steps": steps, **stats.fid_interval(real, embed(samples), seed=args.seed)}
        run.update(images_per_s=args.n / wall, wall_s=wall, cpu_s=cpu, images_per_cpu_s=args.n / cpu)
        payload["runs"].append(run)
        payload["verdict"] = verdict(payload["runs"])
        write_json(out.with_suffix(".json"), payload)
        out.with_suffix(".md").write_text(markdown(payload))
        print(
            f"{sampler}-{steps}: FID {run['fid']:.2f} {run['fid_ci']}, {run['images_per_s']:.2f} images/s", flush=True
        )


if __name__ == "__main__":
    main()
