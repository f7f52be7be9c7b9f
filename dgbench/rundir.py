"""The run directory, defined once: what ``train.py`` writes and everything else reads.

    <run>/
      checkpoints/best.ckpt    the best validation score: what is tested and evaluated
      checkpoints/last.ckpt    the latest state, written every epoch: what ``ckpt_path=`` resumes from
      metrics.json             train.py's record: test metrics, time, machine, ``complete``, ``status``
      samples/epoch_NNN.png    sample grids, for families that can sample

The configs reach it through ``RunCheckpoint(run_dir=..., role=best|last)`` and
``SampleGrid(run_dir=...)`` (configs/callbacks/default.yaml), so no path is spelled twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("best", "last")  # checkpoint file stems, in the order a run directory is resolved


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run that wrote ``checkpoint`` (``<run>/checkpoints/<role>.ckpt``)."""
        return cls(Path(checkpoint).resolve().parent.parent)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, role: str) -> Path:
        return self.checkpoints / f"{role}.ckpt"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def metrics(self) -> dict[str, Any]:
        """The run's metrics.json, or {} where there is none (a checkpoint outside a run directory)."""
        return json.loads(self.metrics_path.read_text()) if self.metrics_path.is_file() else {}

    def finished(self) -> dict[str, Any] | None:
        """metrics.json if the run's training completed, else None."""
        metrics = self.metrics()
        return metrics if metrics.get("complete") else None

    def evaluated_checkpoint(self) -> Path | None:
        """The checkpoint an evaluation of this run uses: best, else last, else metrics.json's ``ckpt_path``."""
        for role in ROLES:
            if self.checkpoint(role).is_file():
                return self.checkpoint(role)
        recorded = self.metrics().get("ckpt_path")
        return Path(recorded) if recorded and Path(recorded).is_file() else None
