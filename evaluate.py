"""Evaluate trained checkpoints side by side: ``python evaluate.py ckpts='[a.ckpt, runs/b]'``.

Every model runs every suite its capabilities allow (``dgbench.evaluation.suites``); the rest are reported
N/A. Writes report.json, report.md and figures to the run directory. Each (checkpoint, suite) result
is saved the moment it is finished and cached by what determines it (``dgbench.evaluation.records``):
an interrupted evaluation, re-run, continues where it stopped; an unchanged checkpoint is not
evaluated twice (``cache=false`` forces it); ``records='[<dir>, ...]'`` rebuilds or merges reports.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from dgbench import DGBenchError
from dgbench.capabilities import capabilities_of
from dgbench.checkpoint import load_model, resolve_checkpoint
from dgbench.cli import check_command_line
from dgbench.evaluation import records
from dgbench.evaluation.features import feature_net_path, load_feature_net
from dgbench.evaluation.report import write_report
from dgbench.evaluation.suites import SUITES, Context, load_eval_data
from dgbench.runtime import environment, friendly_errors, quiet_third_party, register_resolvers
from dgbench.settings import apply_settings

register_resolvers()
quiet_third_party()


def load_models(cfg: DictConfig, device: torch.device) -> tuple[dict[str, tuple[Any, Path]], dict, dict]:
    """{display name: (model, checkpoint)}, the ``inference`` settings and which model got which: every
    setting is checked, and set on the models that have it, before anything is written (dgbench.settings)."""
    paths = list(cfg.ckpts or [])
    if not paths:
        raise DGBenchError(
            "no checkpoints given: pass ckpts='[runs/<task>/<model>/<time>, ...]' (files or run directories)"
        )
    checkpoints, names = [resolve_checkpoint(p) for p in paths], list(cfg.names or [])
    models: dict[str, tuple[Any, Path]] = {}
    for i, ckpt in enumerate(checkpoints):
        model = load_model(ckpt, device)
        name = names[i] if i < len(names) else model.family
        models[name if name not in models else f"{name}#{i}"] = (model, ckpt)
    inference = OmegaConf.to_container(cfg.inference) if cfg.inference else {}
    applied = apply_settings({name: model for name, (model, _) in models.items()}, inference)
    return models, inference, applied


def select_suites(requested: Any, models: dict[str, tuple[Any, Path]]) -> tuple[list[str], list[str]]:
    """The suites asked for (``all`` or names) and those some model can run; a suite asked for by
    name that no model can run is an error."""
    requested = OmegaConf.to_object(requested) if OmegaConf.is_config(requested) else requested
    names = list(SUITES) if requested == "all" else [requested] if isinstance(requested, str) else list(requested)
    if unknown := sorted(set(names) - set(SUITES)):
        raise DGBenchError(f"unknown suite(s) {unknown}: choose from {list(SUITES)} or 'all'")
    runnable = [s for s in names if any(set(SUITES[s].needs) <= set(capabilities_of(m)) for m, _ in models.values())]
    for suite in names if requested != "all" else []:
        if suite not in runnable:
            raise DGBenchError(
                f"suite {suite!r} needs {SUITES[suite].needs}, which no given model can do: drop it from suites"
            )
    return names, runnable


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("records"):
        return records.rebuild_report(list(cfg.records), Path(cfg.paths.output_dir))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    models, inference, applied = load_models(cfg, device)
    suites, runnable = select_suites(cfg.suites, models)
    uses_feature_net = any(SUITES[s].uses_feature_net for s in runnable)
    budget, out_dir = dict(cfg.budget), Path(cfg.paths.output_dir)
    data = load_eval_data(cfg.in_distribution, cfg.paths.data_dir, budget, cfg.seed)
    feature_net = load_feature_net(cfg.feature_net, device) if uses_feature_net else None
    ctx = Context(data, budget, device, cfg.batch_size, cfg.seed, feature_net, cfg.paths.data_dir)
    store = records.RecordStore(cfg.records_dir or out_dir / records.RECORDS, cfg.cache_dir if cfg.cache else None)
    feature_digest = records.file_digest(feature_net_path(cfg.feature_net)) if uses_feature_net else None
    settings = dict(in_distribution=cfg.in_distribution, seed=cfg.seed, inference=inference, batch_size=cfg.batch_size)
    keys = records.ResultKeys(data, feature_digest, **settings, device=str(device))
    meta = {"in_distribution": cfg.in_distribution, "suites": suites, "budget": budget}
    meta |= {"budget_policy": cfg.budget_policy, "seed": cfg.seed, **environment(), "eval_device": str(device)}
    meta |= {"inference_applied": applied} if inference else {}  # which model got which setting
    store.save_meta(meta)
    run, results = records.SuiteRunner(store, keys, time.perf_counter()), {}
    try:
        for index, (name, (model, ckpt)) in enumerate(models.items()):
            model_ctx = replace(ctx, budget=model_budget(model, budget, cfg.budget_policy, name))
            results[name] = entry = records.model_record(model, ckpt, model_ctx.budget)
            store.save_model(index, name, {k: v for k, v in entry.items() if k not in ("suites", "budget")})
            for suite in suites:
                entry["suites"][suite] = run.suite(index, name, model, entry["sha256"], suite, model_ctx)
    except KeyboardInterrupt:
        interrupted(results, meta, models, suites, out_dir)
    meta["wall_time_s"] = round(time.perf_counter() - run.start, 1)
    write_report(results, meta, out_dir)
    print(f"report: {out_dir / 'report.md'} ({run.measured} suite results measured, {run.reused} reused)")
    return results


def interrupted(results: dict[str, Any], meta: dict[str, Any], models: Any, suites: list[str], out_dir: Path) -> None:
    """Ctrl-C: a partial report naming what is missing and the command that completes it; exit 130."""
    missing = [f"{m}/{s}" for m in models for s in suites if s not in results.get(m, {}).get("suites", {})]
    command = "python " + " ".join(shlex.quote(arg) for arg in sys.argv)
    meta["incomplete"] = f"interrupted: {len(missing)} suite result(s) missing ({', '.join(missing)})"
    meta["complete_with"] = f"{command}   (re-uses every saved result)"
    write_report(results, meta, out_dir)
    print(f"\ninterrupted: partial report {out_dir / 'report.md'}; complete it with: {command}", file=sys.stderr)
    sys.exit(130)


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
