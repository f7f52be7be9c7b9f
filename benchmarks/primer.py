"""The primer, measured: one command trains every family, evaluates them side by side, writes results/.

    python benchmarks/primer.py                        # the hour on 2 CPU cores -> results/primer_cpu
    python benchmarks/primer.py --preset cpu_full      # every *_cpu preset at full length (~3 h)
    python benchmarks/primer.py --preset gpu           # GPU presets (*_gpu) -> results/primer_gpu
    python benchmarks/primer.py --preset tiny          # seconds: what the test runs
    python benchmarks/primer.py --stages curves
    python benchmarks/primer.py --jobs 1               # one run at a time, on every core

Stages (presets in configs/benchmark.yaml):
  train     every run the selected stages need (the families' presets, the curves' subsets, the
            Fashion-MNIST runs) in one pool of --jobs workers, most expensive first
  evaluate  evaluate.py on all families: report.json/.md, ROC, missing-feature and sample figures
  curves    data efficiency: each classifier trained on 100 / 1k / 10k / all labels, test accuracy
            on the full test set (Ng & Jordan 2001's experiment), curves.json/.md, learning_curves.png;
            a point at n reads exactly n labels (no validation, fixed steps, last checkpoint), once
            per seed (each its own subset), shown as mean ± sd
  fashion   the hard OOD direction: families trained on Fashion-MNIST, MNIST as the OOD set
A run whose metrics.json says complete is reused, so an interrupted benchmark goes on where it
stopped, and a stage run on its own trains what it lacks. Each stage prints a progress line;
benchmark.json records stage times and the machine.
``--jobs N`` (default: the preset's ``jobs``, else 1) trains N runs at once in worker processes
with cores // N torch threads each. The cpu preset uses two one-thread workers: the diffusion model,
half of the benchmark's training, runs on one core (1.08 s per step; 0.58 s on two threads,
``benchmarks/diffusion_speed.py``) while the other core works through every other run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dgbench import DGBenchError  # noqa: E402
from dgbench.evaluation.stats import welch  # noqa: E402
from dgbench.evaluation.suites import SUITES  # noqa: E402
from dgbench.rundir import RunDir  # noqa: E402
from dgbench.runtime import compose_config, environment, exit_with, write_json  # noqa: E402
from evaluate import evaluate  # noqa: E402
from train import train  # noqa: E402

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


Job = tuple[str, list[str], Path]  # (name, train.py overrides, run directory)


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


# The learning curves' protocol: below the full set a point at n reads exactly n labelled images.
# data.val_size=0 carves no validation split out of the training images (the data module holds the
# n training images and nothing else labelled) and trainer.limit_val_batches=0 runs no validation
# loop; with nothing to choose a checkpoint on, the best-checkpoint callback goes and the last
# checkpoint (monitor None: the latest state) is what train.py tests. Steps and hyper-parameters
# are the preset's (configs/benchmark.yaml, curves), the same at every size and seed.
NO_VALIDATION = ["data.val_size=0", "trainer.limit_val_batches=0", "~callbacks.model_checkpoint"]
# At n=100 an epoch is one step: no per-epoch progress line or sample grid (thousands, unused).
QUIET = ["~callbacks.epoch_line", "~callbacks.sample_grid"]
PRESET_SEED = OmegaConf.load(ROOT / "configs" / "train.yaml").seed  # the seed of the families' own runs


def curve_jobs(preset: Any, common: list[str], runs: Path) -> list[tuple[Job, int | str, int]]:
    """(job, labelled images, seed) for every run of the data-efficiency curves.

    Below the full set each size runs once per ``curves.seeds`` (or the family's own ``seeds``):
    the seed draws the stratified subset (data.seed follows seed) and the training noise. The full
    set runs once per ``curves.full_set_seeds`` as the family's preset with its validation split;
    at the families' own seed and without curve-specific overrides that is the train stage's run.
    A family's ``steps`` (and the ``step_overrides`` that go with them) apply below the full set only.
    """
    curves = preset.curves
    jobs: list[tuple[Job, int | str, int]] = []
    for family, spec in curves.families.items():
        extra = list(spec.get("overrides") or [])  # the family's curve-wide settings (NB's alpha)
        seeds = spec.get("seeds") or curves.seeds  # a family may run fewer where each run costs minutes
        for size in curves.sizes:
            for seed in seeds if size is not None else curves.full_set_seeds:
                overrides = [*common, *preset.families[family], *extra, f"seed={seed}"]
                if size is not None:
                    # semi-supervised families keep every training image and see only `size` labels
                    overrides += [f"{spec.get('size_setting') or 'data.train_size'}={size}", *NO_VALIDATION, *QUIET]
                    if spec.steps is not None:  # a fixed number of updates; the last one is saved
                        overrides += [  # (an epoch may be one step: no epoch-based schedule)
                            "trainer.max_epochs=-1",
                            f"trainer.max_steps={spec.steps}",
                            "trainer.check_val_every_n_epoch=null",
                            f"trainer.val_check_interval={spec.steps}",
                            f"+callbacks.last_checkpoint.every_n_train_steps={spec.steps}",
                            *(spec.get("step_overrides") or []),  # what goes with that count (a stage's length)
                        ]
                    else:  # the preset's epochs (naive Bayes: one counting pass); saved at epoch end
                        overrides.append("+callbacks.last_checkpoint.save_on_train_epoch_end=true")
                label = size or "all"
                if size is None and seed == PRESET_SEED and not extra:
                    run_dir = runs / family  # the train stage's run of the family's preset
                else:
                    run_dir = runs / "curves" / f"{family}_{label}_s{seed}"
                jobs.append(((f"{family} n={label} seed={seed}", overrides, run_dir), label, seed))
    return jobs


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
    say(f"  {len(unique)} runs, {len(evaluations)} evaluations, {workers} at a time")
    train_runs(list(unique.values()), workers, evaluations)


def evaluation_cache(runs: Path) -> Path:
    """The benchmark's evaluation cache: beside its runs, shared by every stage and task."""
    return runs / "evaluate" / "cache"


def run_evaluate(overrides: list[str], out: Path, runs: Path) -> None:
    """evaluate.py into ``out``; its records and cache stay with the runs, so an interrupted
    benchmark loses no finished evaluation and results/ gets only the report and figures."""
    records = [f"records_dir={runs / 'evaluate' / out.name}", f"cache_dir={evaluation_cache(runs)}"]
    evaluate(compose_config([*overrides, *records], out, config_name="evaluate"))


def evaluate_family(preset: Any, family: str, runs: Path, suite: str | None = None) -> Path:
    """evaluate.py on one family (every suite, or only ``suite``) with the preset's budgets, and the
    family's own where the preset sets them (``evaluate_families``); its records go to
    <runs>/evaluate/families/<family>, its results to the shared cache."""
    out = runs / "evaluate" / "families" / (family if suite is None else f"{family}.{suite}")
    overrides = [f"ckpts=[{runs / family}]", f"names=[{family}]", *preset.evaluate]
    overrides += list((preset.get("evaluate_families") or {}).get(family) or [])
    overrides += [f"suites=[{suite}]"] if suite else []
    say(f"  evaluating {family}{f' ({suite})' if suite else ''}")
    evaluate(compose_config([*overrides, f"cache_dir={evaluation_cache(runs)}"], out, config_name="evaluate"))
    say(f"  evaluated {family}{f' ({suite})' if suite else ''}")
    return out


def stage_evaluate(preset: Any, runs: Path, out: Path) -> None:
    """Every family evaluated on its own (results the train stage already measured come from the
    cache), then one report from their records: evaluate.py records=[...]."""
    say(f"  evaluating {len(preset.families)} families -> {out}")
    dirs = [evaluate_family(preset, family, runs) for family in preset.families]
    evaluate(compose_config([f"records=[{','.join(str(d) for d in dirs)}]"], out, config_name="evaluate"))


def stage_curves(preset: Any, common: list[str], runs: Path, out: Path, workers: int) -> None:
    jobs, sizes, seeds = zip(*curve_jobs(preset, common, runs), strict=True)
    points = [
        {
            "family": metrics["family"],
            "kind": metrics["kind"],
            "train_size": size,
            "seed": seed,
            "test_acc": metrics.get("test/acc"),
            "train_time_s": metrics["train_time_s"],
            "global_step": metrics["global_step"],
        }
        for size, seed, metrics in zip(sizes, seeds, train_runs(list(jobs), workers), strict=True)
    ]
    steps = {f: spec.steps for f, spec in preset.curves.families.items()}
    settings = {f: list(spec.get("overrides") or []) for f, spec in preset.curves.families.items()}
    write_curves(points, out, steps, settings)


FULL_SET = 60_000  # "all": the preset's 55 000 training images + the 5 000 validation images that pick its checkpoint


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single run)."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var**0.5


def hybrid_comparisons(
    points: list[dict[str, Any]], accs: dict[tuple[str, str], list[float]], sizes: list[str]
) -> list[str]:
    """curves.md's test of the spectrum claim: at each n below the full set, every hybrid against the
    best (highest mean) purely discriminative and purely generative family there, by Welch's t-test
    over the seeds (each seed its own subset): difference in points [95 %], p."""
    kinds = {p["family"]: p["kind"] for p in points}
    hybrids = [f for f, k in kinds.items() if k == "hybrid"]
    rows = []
    for size in (s for s in sizes if s != "all"):
        for hybrid in hybrids:
            cells = []
            for kind in ("discriminative", "generative"):
                rivals = [f for f, k in kinds.items() if k == kind and len(accs.get((f, size), [])) > 1]
                best = max(rivals, key=lambda f: mean_sd(accs[f, size])[0], default=None)
                test = welch(accs.get((hybrid, size), []), accs[best, size]) if best else None
                cells.append(
                    f"{test['difference']:+.1f} [{test['ci'][0]:+.1f}, {test['ci'][1]:+.1f}] vs {best}, "
                    f"p = {test['p_value']:.3f}"
                    if test
                    else "–"
                )
            rows.append(f"| {hybrid} | {size} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "",
        "The spectrum: each hybrid against the best purely discriminative and the best purely generative "
        "family at the same n (highest mean), Welch's t-test over seeds: difference in accuracy points "
        "[95 % interval], two-sided p.",
        "",
        "| hybrid | n | vs best discriminative | vs best generative |",
        "|---|---|---|---|",
        *rows,
    ]


def write_curves(
    points: list[dict[str, Any]],
    out: Path,
    steps: dict[str, int | None] | None = None,
    settings: dict[str, list[str]] | None = None,
) -> None:
    """curves.json (every run), curves.md (mean ± sd per point, runs in brackets), learning_curves.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "curves.json", {"points": points, **environment()})
    sizes = sorted({str(p["train_size"]) for p in points}, key=lambda s: float("inf") if s == "all" else int(s))
    families = list(dict.fromkeys(p["family"] for p in points))
    accs: dict[tuple[str, str], list[float]] = {}
    for p in points:
        if p["test_acc"] is not None:
            accs.setdefault((p["family"], str(p["train_size"])), []).append(100 * p["test_acc"])

    def cell(values: list[float] | None) -> str:
        if not values:
            return "–"
        mean, sd = mean_sd(values)
        return f"{mean:.1f} ± {sd:.1f}% ({len(values)})" if len(values) > 1 else f"{mean:.1f}% (1)"

    header = [f"n={FULL_SET} (all)" if s == "all" else f"n={s}" for s in sizes]
    lines = ["| family | kind | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(sizes)]
    for family in families:
        kind = next(p["kind"] for p in points if p["family"] == family)
        lines.append(f"| {family} | {kind} | " + " | ".join(cell(accs.get((family, s))) for s in sizes) + " |")
    per_family = []
    for family, n in (steps or {}).items():
        training = "its preset's epochs" if n is None else f"{n} steps"
        extra = " ".join((settings or {}).get(family, []))
        per_family.append(f"{family} {training}" + (f" ({extra} at every size)" if extra else ""))
    protocol = (
        "Protocol: below the full set, a point at n reads exactly n labelled images: a class-stratified "
        "subset of the 60 000 training images drawn by the run's seed (which also seeds training), no "
        "validation split and no checkpoint selection: the fixed number of optimiser steps written in "
        "the preset, and the last checkpoint is tested. The full set is the "
        "family's preset, 55 000 training images plus the 5 000 validation images that pick its "
        "checkpoint: n = 60 000 labels. Cells: mean ± sample sd over seeds (runs in brackets)."
    )
    text = [
        "Test accuracy (all 10 000 MNIST test images) by labelled images.",
        "",
        protocol,
        *(["", "Below the full set (configs/benchmark.yaml, curves): " + "; ".join(per_family) + "."] if steps else []),
        "",
        *lines,
        *hybrid_comparisons(points, accs, sizes),
    ]
    (out / "curves.md").write_text("\n".join(text) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in families:
        mine = [s for s in sizes if accs.get((family, s))]
        if not mine:
            continue
        kind = next(p["kind"] for p in points if p["family"] == family)
        stats = [mean_sd(accs[family, s]) for s in mine]
        xs = [FULL_SET if s == "all" else int(s) for s in mine]
        ax.errorbar(
            xs,
            [m for m, _ in stats],
            yerr=[sd for _, sd in stats],
            fmt={"discriminative": "-o", "generative": "--o"}.get(kind, ":o"),  # hybrids dotted
            capsize=3,
            label=f"{family} ({kind})",
        )
    ax.set(xscale="log", xlabel="labelled images (all = 55 000 train + 5 000 val)", ylabel="test accuracy (%)")
    ax.set_title("Data efficiency (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    plt.close(fig)


def stage_fashion(preset: Any, common: list[str], runs: Path, out: Path, workers: int) -> None:
    train_runs(fashion_jobs(preset, common, runs)[::-1], workers)
    ckpts = ",".join(str(runs / "fashion" / family) for family in preset.fashion.families)
    say(f"  evaluating OOD: Fashion-MNIST in distribution, MNIST out -> {out / 'fashion'}")
    overrides = [f"ckpts=[{ckpts}]", "in_distribution=fashion_mnist", "suites=[ood]", *preset.fashion.evaluate]
    run_evaluate(overrides, out / "fashion", runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="cpu, cpu_full, gpu or tiny (configs/benchmark.yaml)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--jobs", type=int, help="runs trained at once, cores // jobs threads each (default: preset's)")
    parser.add_argument("--runs", type=Path, help="run directories (default runs/primer_<preset>)")
    parser.add_argument("--out", type=Path, help="results directory (default results/primer_<preset>)")
    args = parser.parse_args()

    presets = OmegaConf.load(ROOT / "configs" / "benchmark.yaml")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.preset not in presets or not set(stages) <= set(STAGES):
        raise DGBenchError(f"choose --preset from {list(presets)} and --stages from {','.join(STAGES)}")
    preset = presets[args.preset]
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
            stage_evaluate(preset, runs, out)
        elif stage == "curves":
            stage_curves(preset, common, runs, out, jobs)
        else:
            stage_fashion(preset, common, runs, out, jobs)
        timings[stage] = round(time.perf_counter() - started, 1)
        say(f"stage {stage} done in {timings[stage]:.0f} s")
    # benchmark.json: stage times of this and earlier invocations (a stage run alone keeps the others)
    previous = json.loads((out / "benchmark.json").read_text()) if (out / "benchmark.json").is_file() else {}
    record = {"preset": args.preset, "command": " ".join(sys.argv), **environment()}
    record["stages_s"] = {**previous.get("stages_s", {}), **timings}
    write_json(out / "benchmark.json", record)
    say(f"results in {out}")


if __name__ == "__main__":
    try:
        main()
    except DGBenchError as err:  # the one-line errors of train.py and evaluate.py
        exit_with(err)
