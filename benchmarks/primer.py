"""The primer, measured: one command trains every family, evaluates them side by side, writes results/.

    python benchmarks/primer.py                        # the hour on 2 CPU cores -> results/primer_cpu
    python benchmarks/primer.py --preset cpu_full      # every *_cpu preset at full length (~3 h)
    python benchmarks/primer.py --preset gpu           # GPU presets (*_gpu) -> results/primer_gpu
    python benchmarks/primer.py --preset tiny          # seconds: what the test runs
    python benchmarks/primer.py --stages curves
    python benchmarks/primer.py --jobs 1               # one run at a time, on every core
    python benchmarks/primer.py --preset reference --families vae,gan   # one part of a benchmark run in parts

Stages (presets in configs/benchmark.yaml):
  train     every run the selected stages need (the families' presets, the curves' subsets, the
            Fashion-MNIST runs) in one pool of --jobs workers, most expensive first
  evaluate  evaluate.py on all families: report.json/.md, ROC, missing-feature and sample figures
  curves    data efficiency: each classifier trained on 100 / 1k / 10k / all labels, test accuracy
            on the full test set (Ng & Jordan 2001's experiment), curves.json/.md, learning_curves.png;
            a point at n reads exactly n labels (no validation, fixed steps, last checkpoint), once
            per seed (each its own subset), shown as mean ± sd (dgbench/evaluation/curves.py)
            (the preset's ``seeds``: the families named there are also trained and evaluated with
            the extra seeds on the suites that decide verdicts, a report in <out>/seeds; the findings
            combine a family's seeds into one cell with an interval over seeds and images)
  fashion   the hard OOD direction: families trained on Fashion-MNIST, MNIST as the OOD set
``--families`` runs a part: those families' runs, evaluations, curves and Fashion-MNIST runs. Every
family's evaluation records are kept in <out>/records and the report is rebuilt from all of them, so the
parts of a benchmark can run on different machines and days and merge through the committed records
(dgbench/evaluation/parts.py); without ``--families`` the records of families the preset no longer
names are dropped. A run whose metrics.json says complete is reused, so an interrupted benchmark goes on where it
stopped, and a stage run on its own trains what it lacks. Each stage prints a progress line;
benchmark.json records stage times and the machine.
``--jobs N`` (default: the preset's ``jobs``, else 1) trains N runs at once in worker processes
with cores // N torch threads each. The cpu preset uses two one-thread workers: the diffusion model,
half of the benchmark's training, runs on one core (1.08 s per step; 0.58 s on two threads,
``benchmarks/probes/diffusion_speed.py``) while the other core works through every other run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dgbench import DGBenchError
from dgbench.evaluation.curves import Job, curve_jobs, write_curves
from dgbench.evaluation.findings import write_findings
from dgbench.evaluation.parts import KEPT, keep_records, kept_records, merge_points, select_part
from dgbench.evaluation.suites import SUITES
from dgbench.rundir import RunDir
from dgbench.runtime import CONFIG_DIR, compose_config, environment, exit_with, write_json
from evaluate import evaluate
from train import train

ROOT = Path(__file__).resolve().parents[1]
START = time.perf_counter()
STAGES = ("train", "evaluate", "curves", "fashion")
SUITE_NAMES = list(SUITES)


def say(message: str) -> None:
    elapsed = int(time.perf_counter() - START)
    print(f"[primer {elapsed // 3600:d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def train_run(name: str, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train one configuration into ``run_dir`` unless a complete run is already there."""
    metrics = RunDir(run_dir).finished()
    if metrics:
        say(f"  {name}: reusing {run_dir}")
    else:
        say(f"  {name}: training ({' '.join(overrides)})")
        metrics = train(compose_config([*overrides, "trainer.enable_progress_bar=false"], run_dir))
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
    say(f"  {name}: done, trained in {metrics['train_time_s']:.0f} s; {shown}")
    return metrics


def _worker_init(start: float, threads: int) -> None:
    global START
    START = start  # progress lines keep counting from the benchmark's start
    import torch

    torch.set_num_threads(threads)


Task = tuple[str, Callable[..., Any], tuple[Any, ...], str | None]  # (name, function, arguments, after)


def run_tasks(tasks: list[Task], workers: int) -> dict[str, Any]:
    """Run every task, ``workers`` at a time; a task starts once the task named in its ``after`` is
    done. A worker that frees up takes the first ready dependent task (an evaluation of a finished
    training: the critical path), else the first ready task in list order. Returns {name: result}."""
    if workers <= 1:
        return {name: fn(*args) for name, fn, args, _ in tasks}  # list order respects ``after``
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked Lightning / OpenMP state
    pool = ProcessPoolExecutor(workers, context, initializer=_worker_init, initargs=(START, threads))
    pending, running, results = list(tasks), {}, {}
    try:
        while pending or running:
            ready = [t for t in pending if t[3] is None or t[3] in results]
            for task in sorted(ready, key=lambda t: t[3] is None)[: workers - len(running)]:  # stable sort
                pending.remove(task)
                running[pool.submit(task[1], *task[2])] = task[0]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                results[running.pop(future)] = future.result()
        return results
    finally:  # on an error (or Ctrl-C) the queued runs are dropped, the running ones finish or die with us
        pool.shutdown(cancel_futures=True)


def train_runs(jobs: list[Job], workers: int, then: list[Task] = ()) -> list[dict[str, Any]]:
    """``train_run`` for every job, ``workers`` at a time, in the order given; results in that order.
    ``then``: tasks to run as soon as the training they name in ``after`` (a run directory) is done.

    Workers take jobs in list order, so callers list the most expensive first: longest first is
    the best simple packing of a few long runs and many short ones.
    """
    todo = sum(not RunDir(run_dir).finished() for _, _, run_dir in jobs) + len(then)
    tasks = [(str(job[2]), train_run, job, None) for job in jobs] + list(then)
    results = run_tasks(tasks, workers if todo > 1 else 1)  # nothing to share out: no worker start-up
    return [results[str(job[2])] for job in jobs]


# The runs of each stage. Presets list families cheapest first, so [::-1] puts the longest first.
def family_jobs(preset: Any, common: list[str], runs: Path) -> list[Job]:
    return [(family, [*common, *overrides], runs / family) for family, overrides in preset.families.items()]


def seed_jobs(preset: Any, common: list[str], runs: Path) -> list[Job]:
    """The extra training seeds behind the head-to-head's cells (the preset's ``seeds``): each named
    family's own overrides with another seed, into <runs>/seeds/<family>@s<seed>."""
    spec = preset.get("seeds") or {}
    return [
        (f"{family}@s{seed}", [*common, *preset.families[family], f"seed={seed}"], runs / "seeds" / f"{family}@s{seed}")
        for seed in spec.get("values") or []
        for family in spec.get("families") or []
    ]


def fashion_jobs(preset: Any, common: list[str], runs: Path) -> list[Job]:
    return [
        (f"{family} on fashion", [*common, *preset.families[family], "data=fashion_mnist"], runs / "fashion" / family)
        for family in preset.fashion.families
    ]


def stage_train(preset: Any, common: list[str], runs: Path, workers: int, stages: list[str]) -> None:
    """Train every run the selected stages need in one pool, so no core idles between stages."""
    jobs = family_jobs(preset, common, runs)[::-1]
    longest = list(preset.get("longest_first") or [])  # a preset that lists families in report order
    jobs.sort(key=lambda job: longest.index(job[0]) if job[0] in longest else len(longest))
    if "evaluate" in stages:
        jobs += seed_jobs(preset, common, runs)[::-1]
    if "fashion" in stages:
        jobs += fashion_jobs(preset, common, runs)[::-1]
    if "curves" in stages:
        jobs += [job for job, _, _ in curve_jobs(preset, common, runs)[::-1]]
    unique: dict[Path, Job] = {}
    for job in jobs:  # the curves' "all" points are the families' own runs: trained once
        unique.setdefault(job[2], job)
    # Each family is evaluated as soon as it is trained, while the other worker still trains: the
    # evaluate stage then finds every result in the evaluation cache and only writes the report.
    # A family named in ``evaluate_per_suite`` is evaluated one suite per task, so that both
    # workers share its evaluation.
    split = set(preset.get("evaluate_per_suite") or [])
    evaluations = [
        (f"evaluate {family} {suite or ''}", evaluate_family, (preset, family, runs, suite), str(runs / family))
        for family in (preset.families if "evaluate" in stages else [])
        for suite in (SUITE_NAMES if family in split else [None])
    ]
    seed_suites = list((preset.get("seeds") or {}).get("suites") or [])
    evaluations += [
        (f"evaluate {name}", evaluate_family, (preset, name, runs, seed_suites), str(run_dir))
        for name, _, run_dir in (seed_jobs(preset, common, runs) if "evaluate" in stages else [])
    ]
    say(f"  {len(unique)} runs, {len(evaluations)} evaluations, {workers} at a time")
    train_runs(list(unique.values()), workers, evaluations)


def evaluation_cache(runs: Path) -> Path:
    """The benchmark's evaluation cache: beside its runs, shared by every stage and task."""
    return runs / "evaluate" / "cache"


def merged_report(evaluations: list[Path], folder: Path, order: list[str], part: bool) -> None:
    """Keep the records of ``evaluations`` (evaluate.py output folders) in <folder>/records and write
    <folder>/report.* from every family's records kept there (``order``: the preset's families). A whole
    run (not ``part``) first drops what earlier runs kept, so no family the preset dropped survives."""
    if not part:
        shutil.rmtree(folder / KEPT, ignore_errors=True)
    keep_records(evaluations, folder / KEPT)
    if kept := kept_records(folder / KEPT, order):
        evaluate(compose_config([f"records=[{','.join(str(d) for d in kept)}]"], folder, config_name="evaluate"))


def evaluate_family(preset: Any, family: str, runs: Path, suite: str | list[str] | None = None) -> Path:
    """evaluate.py on one family (every suite, or only ``suite``: one or a list) with the preset's budgets,
    and the family's own where the preset sets them (``evaluate_families``); its records go to
    <runs>/evaluate/families/<family>, its results to the shared cache. ``family`` may name an extra
    seed's run, ``<family>@s<seed>`` (:func:`seed_jobs`), evaluated as its family is."""
    tag = "" if suite is None else f".{suite}" if isinstance(suite, str) else ".seeds"  # a list: the seeds' suites
    out = runs / "evaluate" / "families" / f"{family}{tag}"
    run_dir = runs / "seeds" / family if "@" in family else runs / family
    overrides = [f"ckpts=[{run_dir}]", f"names=[{family}]", *preset.evaluate]
    overrides += list((preset.get("evaluate_families") or {}).get(family.split("@")[0]) or [])
    suites = [suite] if isinstance(suite, str) else list(suite or [])
    overrides += [f"suites=[{','.join(suites)}]"] if suites else []
    shown = f" ({', '.join(suites)})" if suites else ""
    say(f"  evaluating {family}{shown}")
    evaluate(compose_config([*overrides, f"cache_dir={evaluation_cache(runs)}"], out, config_name="evaluate"))
    say(f"  evaluated {family}{shown}")
    return out


def stage_evaluate(preset: Any, runs: Path, out: Path, order: list[str], part: bool) -> None:
    """Every family evaluated on its own (results the train stage already measured come from the
    cache), its records kept in <out>/records, then one report from every family's kept records (this
    part's and the earlier parts'; ``order``: the preset's families), evaluate.py records=[...]."""
    say(f"  evaluating {len(preset.families)} families -> {out}")
    seeds = preset.get("seeds") or {}
    for folder, names, suites in (
        (out, list(preset.families), None),  # the head-to-head, every suite
        # every seed of the seeded families on the deciding suites: <out>/seeds
        (out / "seeds", [*seeds.get("families", []), *(n for n, _, _ in seed_jobs(preset, [], runs))], seeds.get("suites")),
    ):  # fmt: skip
        evaluations = [evaluate_family(preset, name, runs, suites and list(suites)) for name in names]
        merged_report(evaluations, folder, order, part)


def stage_curves(preset: Any, common: list[str], runs: Path, out: Path, workers: int, full: Any, part: bool) -> None:
    """The curves' runs and curves.json; a part keeps the earlier parts' points of the other families
    (``full``: the whole preset, whose steps and settings the curves' tables show)."""
    if not preset.curves.families:
        return
    jobs, sizes, seeds = zip(*curve_jobs(preset, common, runs), strict=True)
    points = [
        {
            "family": job[0].split(" n=")[0],  # the preset's name ("gpt_probe"), not only the class's family
            "kind": metrics["kind"],
            "train_size": size,
            "seed": seed,
            "test_acc": metrics.get("test/acc"),
            "train_time_s": metrics["train_time_s"],
            "global_step": metrics["global_step"],
            "train_loss_last": metrics.get("train_loss_last"),
        }
        for job, size, seed, metrics in zip(jobs, sizes, seeds, train_runs(list(jobs), workers), strict=True)
    ]
    if part and (out / "curves.json").is_file():
        points = merge_points(json.loads((out / "curves.json").read_text())["points"], points)
    steps = {f: spec.steps for f, spec in full.curves.families.items()}
    settings = {f: list(spec.get("overrides") or []) for f, spec in full.curves.families.items()}
    write_curves(points, out, steps, settings)


def stage_fashion(preset: Any, common: list[str], runs: Path, out: Path, workers: int, full: Any, part: bool) -> None:
    """The hard direction, one evaluation per family (records kept in <out>/fashion/records, as the
    evaluate stage keeps them), then one report from every family's kept records."""
    train_runs(fashion_jobs(preset, common, runs)[::-1], workers)
    say(f"  evaluating OOD: Fashion-MNIST in distribution, MNIST out -> {out / 'fashion'}")
    evaluations = []
    for family in preset.fashion.families:
        folder = runs / "evaluate" / "fashion" / family
        overrides = [f"ckpts=[{runs / 'fashion' / family}]", f"names=[{family}]", "in_distribution=fashion_mnist"]
        overrides += ["suites=[ood]", *preset.fashion.evaluate, f"cache_dir={evaluation_cache(runs)}"]
        evaluate(compose_config(overrides, folder, config_name="evaluate"))
        evaluations.append(folder)
    merged_report(evaluations, out / "fashion", list(full.fashion.families), part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="cpu, cpu_full, gpu or tiny (configs/benchmark.yaml)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--jobs", type=int, help="runs trained at once, cores // jobs threads each (default: preset's)")
    parser.add_argument("--runs", type=Path, help="run directories (default runs/primer_<preset>)")
    parser.add_argument("--out", type=Path, help="results directory (default results/primer_<preset>)")
    parser.add_argument("--families", help="comma-separated part of the preset's families (default: every one)")
    args = parser.parse_args()

    presets = OmegaConf.load(CONFIG_DIR / "benchmark.yaml")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.preset not in presets or not set(stages) <= set(STAGES):
        raise DGBenchError(f"choose --preset from {list(presets)} and --stages from {','.join(STAGES)}")
    full = presets[args.preset]
    part = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    preset = select_part(full, part) if part else full
    common = list(preset.get("common", []))
    jobs = args.jobs or preset.get("jobs", 1)
    runs, out = (args.runs or ROOT / f"runs/primer_{args.preset}"), (args.out or ROOT / f"results/primer_{args.preset}")
    timings: dict[str, float] = {}
    for stage in stages:
        say(f"stage {stage} ({args.preset} preset)")
        started = time.perf_counter()
        if stage == "train":
            stage_train(preset, common, runs, jobs, stages)
        elif stage == "evaluate":
            stage_evaluate(preset, runs, out, list(full.families), bool(part))
        elif stage == "curves":
            stage_curves(preset, common, runs, out, jobs, full, bool(part))
        else:
            stage_fashion(preset, common, runs, out, jobs, full, bool(part))
        timings[stage] = round(time.perf_counter() - started, 1)
        say(f"stage {stage} done in {timings[stage]:.0f} s")
    # benchmark.json: stage times of this and earlier invocations (a stage run alone keeps the others)
    previous = json.loads((out / "benchmark.json").read_text()) if (out / "benchmark.json").is_file() else {}
    record = {"preset": args.preset, "command": " ".join(sys.argv), **environment()}
    record["stages_s"] = {**previous.get("stages_s", {}), **timings}
    write_json(out / "benchmark.json", record)
    if (out / "report.json").is_file():
        write_findings(out)  # the verdicts, and those of the run this one replaces (README's findings table)
    say(f"results in {out}")


if __name__ == "__main__":
    try:
        main()
    except DGBenchError as err:  # the one-line errors of train.py and evaluate.py
        exit_with(err)
