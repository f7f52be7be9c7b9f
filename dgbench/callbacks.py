"""Callbacks that serve every family through the capability protocol."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchvision.utils import save_image

from dgbench import DGBenchError
from dgbench.capabilities import Sampler
from dgbench.checkpoint import latest_checkpoint
from dgbench.rundir import ROLES, RunDir
from dgbench.runtime import atomic_file


class SampleGrid(L.Callback):
    """Save a fixed-noise class-conditional sample grid (one row per class) every few epochs.

    The generator is re-seeded each time, so grids from different epochs show the same noise and
    are directly comparable. Families that cannot sample are skipped.
    """

    def __init__(self, run_dir: str, per_class: int = 8, every_n_epochs: int = 1, seed: int = 0) -> None:
        self.dirpath = RunDir(run_dir).samples
        self.per_class, self.every_n_epochs, self.seed = per_class, every_n_epochs, seed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, Sampler) or not trainer.is_global_zero:
            return
        # The last epoch always gets a grid. Not via ``trainer.fit_loop.done``: reading it in the last
        # epoch-end hook advances ``trainer.current_epoch`` early (Lightning sets completed = processed).
        epoch = trainer.current_epoch + 1
        last = (trainer.max_epochs is not None and epoch >= trainer.max_epochs) or (
            trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        )
        if epoch % self.every_n_epochs and not last:
            return
        labels = torch.arange(10, device=pl_module.device).repeat_interleave(self.per_class)
        was_training = pl_module.training
        pl_module.eval()
        images = pl_module.sample(len(labels), labels=labels, generator=torch.Generator().manual_seed(self.seed))
        pl_module.train(was_training)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(images.float().cpu(), self.dirpath / f"epoch_{trainer.current_epoch:03d}.png", nrow=self.per_class)


class RNGState(L.Callback):
    """Carry the torch random-number states in checkpoints, so a resumed run draws the same noise.

    Lightning restores weights, optimiser and schedule but not the global RNG, which the generative
    families draw from every step (noise, timesteps, binarization); without this, a resumed run
    would diverge from the uninterrupted one. States are uint8 tensors: weights-only loading holds.
    """

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["cpu"])
        if state_dict["cuda"] and torch.cuda.device_count() == len(state_dict["cuda"]):
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class FiniteGuard(L.Callback):
    """Stop training at the first non-finite loss or weight, naming the step; keep the good checkpoints.

    Checking costs no device sync per step: the index of the first bad batch since the last check
    is kept on the device (the batch positions on the host) and read every ``check_every_n_steps``
    batches and before each validation, i.e. before any checkpoint of a poisoned model could be
    written (checkpoint callbacks run after this one). The loss is checked where the family
    returns one (a bad weight makes it non-finite at once); otherwise (manual optimisation
    returning nothing) the weights are.
    """

    def __init__(self, check_every_n_steps: int = 50) -> None:
        self.check_every_n_steps = check_every_n_steps
        self.positions: list[tuple[int, int, int]] = []  # (epoch, batch, step) since the last check
        self.first_bad: torch.Tensor | None = None  # index into positions, -1 while all is finite

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            finite = loss.detach().isfinite().all()
        else:
            norms = torch._foreach_norm([p.detach() for p in pl_module.parameters()])  # inf/nan if any entry is
            finite = torch.stack(norms).isfinite().all()
        if self.first_bad is None or self.first_bad.device != finite.device:
            self.first_bad = torch.full((), -1, device=finite.device)
        self.positions.append((trainer.current_epoch, batch_idx, trainer.global_step))
        # A Python scalar is a kernel argument: no host-to-device copy, so no sync.
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, len(self.positions) - 1, self.first_bad)
        if (batch_idx + 1) % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        first_bad = -1 if self.first_bad is None else int(self.first_bad)
        if first_bad < 0:
            self.positions.clear()
            return
        epoch, batch, step = self.positions[first_bad]
        last = latest_checkpoint(trainer)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise DGBenchError(
            f"training stopped: the loss or weights became nan/inf at step {step} (epoch {epoch}, batch {batch}); "
            f"{kept}; lower model.optimizer.lr or set trainer.gradient_clip_val"
        )


class EpochLine(L.Callback):
    """One progress line per epoch when the progress bar is off (logs, batch jobs, benchmarks)."""

    def __init__(self) -> None:
        self.start = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.progress_bar_callback is not None or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics  # what the family logged: its train loss and validation metrics
        shown = " ".join(f"{k}={float(v):.4g}" for k, v in metrics.items() if k == "train/loss" or k.startswith("val/"))
        of_max = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""  # -1: step-bounded
        print(
            f"[{pl_module.family}] epoch {trainer.current_epoch + 1}{of_max} "
            f"step {trainer.global_step} {time.perf_counter() - self.start:.0f}s {shown}",
            flush=True,
        )


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that keeps its record when a run resumes in a new directory.

    Every Hydra run writes to its own directory, and Lightning forgets the best score when the
    directory changes: the resumed run's first epoch would be "best" whatever came before, and
    testing "the best checkpoint" would differ from an uninterrupted run. Here the earlier run's
    checkpoints are copied into the new directory and the record (scores, paths) is kept.
    """

    def __init__(self, run_dir: str, role: str, **kwargs: Any) -> None:
        if role not in ROLES:
            raise DGBenchError(f"checkpoint role {role!r} is not one of {ROLES}: fix callbacks.*.role")
        super().__init__(dirpath=RunDir(run_dir).checkpoints, filename=role, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if old_dir and self.dirpath and Path(old_dir).resolve() != Path(self.dirpath).resolve():
            paths = [state_dict.get(k) for k in ("best_model_path", "kth_best_model_path", "last_model_path")]
            paths += list(state_dict.get("best_k_models", {}))
            if all(Path(p).is_file() for p in paths if p):  # else Lightning's fallback: start the record afresh
                state_dict = self._adopt(state_dict, Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _adopt(self, state_dict: dict[str, Any], new_dir: Path) -> dict[str, Any]:
        def copy(path: str) -> str:
            if not path:
                return path
            target = new_dir / Path(path).name
            with open(path, "rb") as source, atomic_file(target) as file:  # whole or absent, also if
                shutil.copyfileobj(source, file)  # several processes (DDP ranks) copy at once
            return str(target)

        return {
            **state_dict,
            "dirpath": self.dirpath,
            "best_model_path": copy(state_dict["best_model_path"]),
            "kth_best_model_path": copy(state_dict.get("kth_best_model_path", "")),
            "last_model_path": copy(state_dict.get("last_model_path", "")),
            "best_k_models": {copy(p): score for p, score in state_dict.get("best_k_models", {}).items()},
        }
