"""Evaluate trained checkpoints side by side: ``python evaluate.py ckpts='[a.ckpt, runs/b]'``.

Every model runs every suite its capabilities allow (``dgbench.evaluation.suites``); the rest are reported
N/A. Writes report.json, report.md and figures to the run directory. Each (checkpoint, suite) result
is saved the moment it is finished and cached by what determines it (``dgbench.evaluation.records``):
an interrupted evaluation, re-run, continues where it stopped; an unchanged checkpoint is not
evaluated twice (``cache=false`` forces it); ``records='[<dir>, ...]'`` rebuilds or merges reports.
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from dgbench import DGBenchError, progress
from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model, resolve_checkpoint
from dgbench.cli import check_command_line
from dgbench.evaluation import metrics, stats
from dgbench.evaluation.features import feature_net_path, load_feature_net
from dgbench.evaluation.records import (
    RECORDS,
    RecordStore,
    file_digest,
    read_records,
    record_key,
    source_digest,
    tensor_digest,
)
from dgbench.evaluation.report import write_report
from dgbench.evaluation.suites import SUITES, Context, load_eval_data
from dgbench.evaluation.suites import common as suites_common
from dgbench.rundir import RunDir
from dgbench.runtime import environment, friendly_errors, quiet_third_party, register_resolvers

register_resolvers()
quiet_third_party()


def select_suites(requested: Any) -> tuple[list[str], bool]:
    if requested == "all":
        return list(SUITES), False
    names = [requested] if isinstance(requested, str) else list(requested)
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        raise DGBenchError(f"unknown suite(s) {unknown}: choose from {list(SUITES)} or 'all'")
    return names, True


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("records"):
        return rebuild_report(list(cfg.records), Path(cfg.paths.output_dir))
    paths = list(cfg.ckpts or [])
    if not paths:
        raise DGBenchError(
            "no checkpoints given: pass ckpts='[runs/<task>/<model>/<time>, ...]' (files or run directories)"
        )
    suites, explicit = select_suites(OmegaConf.to_object(cfg.suites) if OmegaConf.is_config(cfg.suites) else cfg.suites)
    auto_device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto_device if cfg.device == "auto" else cfg.device)
    checkpoints = [resolve_checkpoint(p) for p in paths]
    names = list(cfg.names or [])
    inference = OmegaConf.to_container(cfg.inference) if cfg.inference else {}
    models: dict[str, Any] = {}
    for i, ckpt in enumerate(checkpoints):
        model = load_model(ckpt, device)
        for key, value in inference.items():
            if hasattr(model, key):
                setattr(model, key, value)
        name = names[i] if i < len(names) else model.family
        models[name if name not in models else f"{name}#{i}"] = (model, ckpt)
    runnable = [s for s in suites if any(set(SUITES[s].needs) <= set(capabilities_of(m)) for m, _ in models.values())]
    for suite in suites if explicit else []:
        if suite not in runnable:
            raise DGBenchError(
                f"suite {suite!r} needs {SUITES[suite].needs}, which no given model can do: drop it from suites"
            )

    budget = dict(cfg.budget)
    data = load_eval_data(cfg.in_distribution, cfg.paths.data_dir, budget, cfg.seed)
    uses_feature_net = any(SUITES[s].uses_feature_net for s in runnable)
    feature_net = load_feature_net(cfg.feature_net, device) if uses_feature_net else None
    ctx = Context(data, budget, device, cfg.batch_size, cfg.seed, feature_net, cfg.paths.data_dir)
    out_dir = Path(cfg.paths.output_dir)
    store = RecordStore(cfg.records_dir or out_dir / RECORDS, cfg.cache_dir if cfg.cache else None)
    # Everything besides the checkpoint and the suite that determines a result (records.py).
    common_key = {
        "data": tensor_digest(*data.tensors()),
        "ood_sets": list(data.ood),
        "in_distribution": cfg.in_distribution,
        "seed": cfg.seed,
        "inference": inference,
        "batch_size": cfg.batch_size,
        "device": str(device),
        "torch": torch.__version__,
    }
    feature_digest = file_digest(feature_net_path(cfg.feature_net)) if uses_feature_net else None
    meta = {
        "in_distribution": cfg.in_distribution,
        "suites": suites,
        "budget": budget,
        "budget_policy": cfg.budget_policy,
        "seed": cfg.seed,
        **environment(),
        "eval_device": str(device),
    }
    store.save_meta(meta)
    results: dict[str, dict[str, Any]] = {}
    start, measured, reused = time.perf_counter(), 0, 0
    clock = lambda: f"[{time.perf_counter() - start:7.1f}s]"  # noqa: E731
    try:
        for index, (name, (model, ckpt)) in enumerate(models.items()):
            capabilities = capabilities_of(model)
            results[name] = {
                "family": model.family,
                "kind": model.kind,
                "learns": model.learns,
                "checkpoint": portable_path(ckpt),
                "sha256": file_digest(ckpt),
                "capabilities": capabilities,
                "training": portable_training(RunDir.of_checkpoint(ckpt).metrics()),
                "budget": budget,
                "suites": {},
            }
            model_ctx = replace(ctx, budget=model_budget(model, budget, cfg.budget_policy, name))
            results[name]["budget"] = model_ctx.budget
            store.save_model(index, name, {k: v for k, v in results[name].items() if k not in ("suites", "budget")})
            family_key = {"checkpoint": results[name]["sha256"], "family_code": family_code_digest(type(model))}
            for suite in suites:
                record = SUITES[suite]
                if not set(record.needs) <= set(capabilities):
                    results[name]["suites"][suite] = None
                    store.save(index, name, suite, None, None)
                    print(f"{clock()} {name}: {suite} N/A (needs {', '.join(record.needs)})", flush=True)
                    continue
                key = record_key(
                    **common_key,
                    **family_key,
                    suite=suite,
                    suite_code=suite_code_digest(record),
                    budget=[model_ctx.budget.get(b) for b in (suite, *record.extra_budgets)],
                    feature_net=feature_digest if record.uses_feature_net else None,
                )
                try:
                    results[name]["suites"][suite] = store.cached(key)
                    store.save(index, name, suite, key, results[name]["suites"][suite], cache=False)
                    reused += 1
                    print(f"{clock()} {name}: {suite} reused (cached: {key[:12]})", flush=True)
                    continue
                except KeyError:
                    pass
                t0 = time.perf_counter()
                # what shortens it, named in its time estimate (dgbench.progress)
                hint = " or ".join(f"budget.{b}=N" for b in (suite, *record.extra_budgets) if b in budget)
                with progress.suite(f"{name}: {suite}", hint):
                    result = {**record.run(model, model_ctx), "seconds": round(time.perf_counter() - t0, 2)}
                store.save(index, name, suite, key, result)
                results[name]["suites"][suite] = result
                measured += 1
                print(f"{clock()} {name}: {suite} done in {time.perf_counter() - t0:.1f}s", flush=True)
    except KeyboardInterrupt:
        missing = [f"{m}/{s}" for m in models for s in suites if s not in results.get(m, {}).get("suites", {})]
        command = "python " + " ".join(shlex.quote(arg) for arg in sys.argv)
        meta["incomplete"] = f"interrupted: {len(missing)} suite result(s) missing ({', '.join(missing)})"
        meta["complete_with"] = f"{command}   (re-uses every saved result)"
        write_report(results, meta, out_dir)
        print(f"\ninterrupted: partial report {out_dir / 'report.md'}; complete it with: {command}", file=sys.stderr)
        sys.exit(130)
    meta["wall_time_s"] = round(time.perf_counter() - start, 1)
    write_report(results, meta, out_dir)
    print(f"report: {out_dir / 'report.md'} ({measured} suite results measured, {reused} reused)")
    return results


def rebuild_report(record_dirs: list[str], out_dir: Path) -> dict[str, Any]:
    """report.json/report.md from the records of earlier evaluations alone: one evaluation's report
    rebuilt, or several (e.g. the jobs of a multirun, one checkpoint each) merged into one."""
    try:
        meta, results = read_records(record_dirs)
    except FileNotFoundError as err:
        raise DGBenchError(f"{err}: pass output directories of evaluate.py runs") from None
    meta["merged_from"] = [portable_path(d) for d in record_dirs]
    write_report(results, meta, out_dir)
    print(f"report: {out_dir / 'report.md'} (from the records of {len(record_dirs)} evaluation(s))")
    return results


def portable_path(path: str | Path) -> str:
    """A path as the command's working directory sees it: what a report names, on any machine."""
    return os.path.relpath(Path(path).resolve(), Path.cwd())


def portable_training(metrics: dict[str, Any]) -> dict[str, Any]:
    if metrics.get("ckpt_path"):
        metrics = {**metrics, "ckpt_path": portable_path(metrics["ckpt_path"])}
    return metrics


def family_code_digest(cls: type) -> str:
    """The source of the family's modules: its class, its bases and the modules and classes its
    module uses from models/ (networks, schedules, sampling loops)."""
    modules = {sys.modules[c.__module__] for c in cls.__mro__ if c.__module__.split(".")[0] in ("models", "dgbench")}
    for value in vars(sys.modules[cls.__module__]).values():
        module = value if inspect.ismodule(value) else sys.modules.get(getattr(value, "__module__", None) or "")
        if module is not None and module.__name__.split(".")[0] == "models":
            modules.add(module)
    return source_digest(*sorted(modules, key=lambda m: m.__name__))


def suite_code_digest(suite: Any) -> str:
    """The suite's module, the shared suite code and the metrics: changes when the definition does."""
    return source_digest(sys.modules[suite.run.__module__], suites_common, metrics, stats)


def model_budget(model: Any, budget: dict[str, int], policy: str, name: str) -> dict[str, int]:
    """The budgets ``model`` is evaluated with. ``first_look`` (the default) caps them at the family's
    ``first_look_budget``, what keeps one evaluation of it within ~15 min on a 2-core CPU; ``fixed``
    gives every family the budgets as configured (the benchmark's policy)."""
    if policy not in ("first_look", "fixed"):
        raise DGBenchError(f"budget_policy={policy!r}: choose first_look or fixed")
    caps = getattr(model, "first_look_budget", None) or {}
    capped = {k: min(v, caps[k]) if policy == "first_look" and k in caps else v for k, v in budget.items()}
    if capped != budget:
        lowered = ", ".join(f"{k}={capped[k]}" for k in budget if capped[k] != budget[k])
        print(f"{name}: a first look: {lowered} (budget_policy=fixed for the configured budgets)", flush=True)
    return capped


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
@friendly_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    check_command_line("evaluate")  # a bad override: one line, before Hydra's dozen
    main()
