"""Train one model family: ``python train.py [experiment=NAME] [group=option] [key=value ...]``.

seed -> data, model, callbacks, loggers, trainer -> fit (``ckpt_path=`` resumes) -> test the best
checkpoint -> ``metrics.json`` in the run directory. Configs live in ``configs/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig, OmegaConf

from dgbench import DGBenchError
from dgbench.checkpoint import latest_checkpoint
from dgbench.cli import check_command_line
from dgbench.family import FamilyModule
from dgbench.rundir import RunDir
from dgbench.runtime import environment, friendly_errors, quiet_third_party, register_resolvers, write_json

register_resolvers()
quiet_third_party()  # no advertisements, configuration echoes or library-internal deprecations


def build_callbacks(cfg: DictConfig, model: FamilyModule) -> list[L.Callback]:
    """Instantiate ``cfg.callbacks``; a checkpoint callback without a monitor uses the family's."""
    callbacks = []
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        if name == "progress_bar" and not cfg.trainer.get("enable_progress_bar", True):
            continue  # trainer.enable_progress_bar=false alone switches the bar off
        if name == "model_checkpoint" and callback_cfg.get("monitor") is None:
            callback_cfg = OmegaConf.merge(callback_cfg, dict(zip(("monitor", "mode"), model.monitor)))
        callbacks.append(instantiate(callback_cfg))
    return callbacks


def train(cfg: DictConfig) -> dict[str, Any]:
    if RunDir(cfg.paths.output_dir).finished():
        raise DGBenchError(
            f"{cfg.paths.output_dir} holds a finished run: choose another hydra.run.dir (nothing was changed)"
        )
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    datamodule = instantiate(cfg.data)
    model: FamilyModule = instantiate(cfg.model, _convert_="all")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg, model), logger=loggers or False)

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except BaseException as err:  # Ctrl-C (Lightning exits with SystemExit), the nan guard, a crash
        status = "interrupted" if isinstance(err, KeyboardInterrupt | SystemExit) else f"failed: {err}"
        record(cfg, model, trainer, time.perf_counter() - start, latest_checkpoint(trainer), {}, status)
        raise
    train_time_s, train_loss = time.perf_counter() - start, last_train_loss(trainer)  # before test() resets it

    checkpoint = trainer.checkpoint_callback
    ckpt_path = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint else ""
    best_val = best_validation(model, trainer)
    test_metrics: dict[str, float] = {}
    if cfg.get("test") and is_overridden("test_step", model):
        results = trainer.test(
            model, datamodule=datamodule, ckpt_path=ckpt_path or None, weights_only=True, verbose=False
        )
        test_metrics = {k: float(v) for k, v in results[0].items()} if results else {}
    fitted = {**best_val, **test_metrics, "train_loss_last": train_loss}
    metrics = record(cfg, model, trainer, train_time_s, ckpt_path, fitted, "complete")
    finish_loggers(loggers)
    if trainer.is_global_zero:
        print(" ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()) or "no test metrics")
        print(f"checkpoint: {metrics['ckpt_path']}")
    return metrics


def best_validation(model: FamilyModule, trainer: L.Trainer) -> dict[str, float]:
    """``{"<monitor>_best": value}``: the family's validation metric at its best checkpoint (e.g.
    ``val/acc_best``), what a hyper-parameter search optimises (``optimized_metric``)."""
    monitor, mode = model.monitor
    checkpoint = trainer.checkpoint_callback
    score = getattr(checkpoint, "best_model_score", None) if checkpoint is not None else None
    if score is None or getattr(checkpoint, "monitor", None) != monitor:
        score = trainer.callback_metrics.get(monitor)  # no checkpoint callback: the last validation
    return {f"{monitor}_best": float(score)} if score is not None else {}


def finish_loggers(loggers: list[Any]) -> None:
    """Close what Lightning leaves open: a wandb run is only complete on disk after ``finish()``."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The number a sweeper (``hparams_search=``) minimises or maximises: ``metrics[cfg.optimized_metric]``."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics or not isinstance(metrics[name], int | float):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, float) and "/" in k)
        raise DGBenchError(f"optimized_metric={name} was not measured by this run: choose one of {numeric}")
    return float(metrics[name])


def record(
    cfg: DictConfig,
    model: FamilyModule,
    trainer: L.Trainer,
    train_time_s: float,
    ckpt_path: str,
    test_metrics: dict[str, float],
    status: str,
) -> dict[str, Any]:
    """The run's metrics.json: what was trained, how it scored, where it is, on what, and whether it finished.

    An interrupted run is recorded too (``complete: false``) with the checkpoint to resume from.
    """
    metrics = {
        "family": model.family,
        "kind": model.kind,
        **test_metrics,
        "train_time_s": round(train_time_s, 2),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "num_parameters": model.num_parameters,
        "ckpt_path": str(Path(ckpt_path).resolve()) if ckpt_path else None,
        "seed": cfg.seed,
        **environment(),
        "precision": getattr(trainer.precision_plugin, "label", str(trainer.precision)),  # dgbench.precision
        "complete": status == "complete",
        "status": status,
    }
    if trainer.is_global_zero:
        write_json(RunDir(cfg.paths.output_dir).metrics_path, metrics)
    return metrics


def last_train_loss(trainer: L.Trainer) -> float | None:
    """The last training loss the family logged (``train/loss`` of the last step's batch), or None for a
    family fitted without a loss (naive Bayes counts): the learning curves record it beside the steps."""
    value = trainer.callback_metrics.get("train/loss")
    return None if value is None else round(float(value), 6)


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))  # what hydra's Optuna sweeper optimises


if __name__ == "__main__":
    check_command_line("train")  # a bad override: one line, before Hydra's dozen
    main()
