"""The benchmark's data-efficiency curves (Ng & Jordan 2001's experiment): which runs make each point,
and the statistics and figure benchmarks/primer.py's curves stage writes from them.

A point at n labelled images is one training run per seed; below the full set it reads exactly n labels
(``curve_jobs``: no validation split, a fixed number of steps, the last checkpoint tested). ``write_curves``
gives each point as mean ± sample sd over seeds and tests each hybrid family against the best purely
discriminative and purely generative family at the same n by Welch's t-test (``hybrid_comparisons``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgbench.evaluation.stats import holm, welch
from dgbench.runtime import environment, write_json

Job = tuple[str, list[str], Path]  # (name, train.py overrides, run directory)

# The learning curves' protocol: below the full set a point at n reads exactly n labelled images.
# data.val_size=0 carves no validation split out of the training images (the data module holds the
# n training images and nothing else labelled) and trainer.limit_val_batches=0 runs no validation
# loop; with nothing to choose a checkpoint on, the best-checkpoint callback goes and the last
# checkpoint (monitor None: the latest state) is what train.py tests. Steps and hyper-parameters
# are the preset's (configs/benchmark.yaml, curves), the same at every size and seed.
NO_VALIDATION = ["data.val_size=0", "trainer.limit_val_batches=0", "~callbacks.model_checkpoint"]
# At n=100 an epoch is one step: no per-epoch progress line or sample grid (thousands, unused).
QUIET = ["~callbacks.epoch_line", "~callbacks.sample_grid"]


def curve_jobs(preset: Any, common: list[str], runs: Path) -> list[tuple[Job, int | str, int]]:
    """(job, labelled images, seed) for every run of the data-efficiency curves.

    Equal effort at every point: each size, the full set (``null``: all 60 000 training images)
    included, runs once per ``curves.seeds`` (or the family's own ``seeds``) with the same protocol and
    the same optimisation budget, the family's ``steps`` (and the ``step_overrides`` that go with
    them), so that two points of a family differ only in the labels they read. The seed draws the
    stratified subset (data.seed follows seed) and the training noise.
    """
    curves = preset.curves
    jobs: list[tuple[Job, int | str, int]] = []
    for family, spec in curves.families.items():
        extra = list(spec.get("overrides") or [])  # the family's curve-wide settings (NB's alpha)
        seeds = spec.get("seeds") or curves.seeds  # a family may run fewer where each run costs minutes
        for size in curves.sizes:
            for seed in seeds:
                overrides = [*common, *preset.families[family], *extra, f"seed={seed}", *NO_VALIDATION, *QUIET]
                if size is not None:
                    # semi-supervised families keep every training image and see only `size` labels
                    overrides.append(f"{spec.get('size_setting') or 'data.train_size'}={size}")
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
                run_dir = runs / "curves" / f"{family}_{label}_s{seed}"
                jobs.append(((f"{family} n={label} seed={seed}", overrides, run_dir), label, seed))
    return jobs


FULL_SET = 60_000  # "all": every training image, labelled, no validation split (the same protocol as every n)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single run)."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var**0.5


def accuracies(points: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """Test accuracy in percent per (family, n as a string: "100", ..., "all"), one value per seed."""
    accs: dict[tuple[str, str], list[float]] = {}
    for p in points:
        if p.get("test_acc") is not None:
            accs.setdefault((p["family"], str(p["train_size"])), []).append(100 * p["test_acc"])
    return accs


def spectrum_tests(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spectrum claim's family of tests: at every n, every hybrid against the best (highest mean)
    purely discriminative and purely generative family there, by Welch's t-test over the seeds (each
    seed its own subset), differences in accuracy points; p Holm-adjusted over the whole family
    (``p_holm``), since the claim rests on all of them together."""
    accs, kinds = accuracies(points), {p["family"]: p["kind"] for p in points}
    sizes = sorted({s for _, s in accs}, key=lambda s: float("inf") if s == "all" else int(s))
    tests = []
    for size in sizes:
        for hybrid in (f for f, k in kinds.items() if k == "hybrid" and len(accs.get((f, size), [])) > 1):
            for kind in ("discriminative", "generative"):
                rivals = [f for f, k in kinds.items() if k == kind and len(accs.get((f, size), [])) > 1]
                best = max(rivals, key=lambda f: mean_sd(accs[f, size])[0], default=None)
                test = welch(accs[hybrid, size], accs[best, size]) if best else None
                if test:
                    tests.append({"hybrid": hybrid, "size": size, "kind": kind, "rival": best, **test})
    adjusted = holm([t["p_value"] for t in tests]) if tests else []
    return [{**t, "p_holm": p} for t, p in zip(tests, adjusted, strict=True)]


def hybrid_comparisons(points: list[dict[str, Any]]) -> list[str]:
    """curves.md's table of :func:`spectrum_tests`: difference [95 %], p and Holm's p per comparison."""
    tests = spectrum_tests(points)
    if not tests:
        return []
    rows = {}
    for t in tests:
        cell = (
            f"{t['difference']:+.1f} [{t['ci'][0]:+.1f}, {t['ci'][1]:+.1f}] vs {t['rival']}, "
            f"p = {t['p_value']:.3f} (Holm {t['p_holm']:.3f})"
        )
        rows.setdefault((t["hybrid"], t["size"]), {})[t["kind"]] = cell
    return [
        "",
        "The spectrum: each hybrid against the best purely discriminative and the best purely generative "
        f"family at the same n (highest mean), Welch's t-test over seeds: difference in accuracy points "
        f"[95 % interval], two-sided p, and p Holm-adjusted over all {len(tests)} comparisons (the claim's "
        "family of tests).",
        "",
        "| hybrid | n | vs best discriminative | vs best generative |",
        "|---|---|---|---|",
        *(
            f"| {h} | {n} | {cells.get('discriminative', '–')} | {cells.get('generative', '–')} |"
            for (h, n), cells in rows.items()
        ),
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
    accs = accuracies(points)

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
        "Protocol: a point at n reads exactly n labelled images: a class-stratified subset of the 60 000 "
        "training images drawn by the run's seed (which also seeds training; the full set is all of them), "
        "no validation split and no checkpoint selection: the same number of optimiser steps at every n, "
        "written in the preset, and the last checkpoint is tested (each point's steps and final training "
        "loss are in curves.json). Cells: mean ± sample sd over seeds (runs in brackets)."
    )
    text = [
        "Test accuracy (all 10 000 MNIST test images) by labelled images.",
        "",
        protocol,
        *(["", "At every n (configs/benchmark.yaml, curves): " + "; ".join(per_family) + "."] if steps else []),
        "",
        *lines,
        *hybrid_comparisons(points),
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
    ax.set(xscale="log", xlabel="labelled images (all = 60 000)", ylabel="test accuracy (%)")
    ax.set_title("Data efficiency (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    plt.close(fig)
