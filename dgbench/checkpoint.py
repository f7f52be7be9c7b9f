"""Loading checkpoints safely: ``weights_only=True`` always, and only classes of this project.

A dgbench checkpoint is a Lightning checkpoint plus a ``dgbench`` entry (written by
``FamilyModule.on_save_checkpoint``) naming the family's class. The module is rebuilt from that
class and the saved hyper-parameters, then the weights are loaded: nothing is unpickled.

``python -m dgbench.checkpoint export SOURCE.ckpt DESTINATION.ckpt`` writes the slim copy that
``export_weights`` makes (how dgbench/assets/feature_net.ckpt was made).
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dgbench import DGBenchError
from dgbench.family import CHECKPOINT_FORMAT, FamilyModule
from dgbench.rundir import RunDir
from dgbench.runtime import atomic_save


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best/last checkpoint, else metrics.json's ``ckpt_path``)."""
    path = Path(path)
    if path.is_dir():
        checkpoint = RunDir(path).evaluated_checkpoint()
        if checkpoint is not None:
            return checkpoint
        raise DGBenchError(f"run directory {path} has no checkpoints/best.ckpt or last.ckpt: pass a .ckpt file")
    if not path.is_file():
        raise DGBenchError(
            f"checkpoint {path} does not exist: pass a .ckpt file or a run directory written by train.py"
        )
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for every way a file can be wrong."""
    path = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else "unsupported global"
        raise DGBenchError(
            f"{path} contains pickled Python objects that weights-only loading refuses ({reason}); "
            "dgbench never unpickles code: use a checkpoint written by train.py"
        ) from None
    except Exception as err:  # noqa: BLE001 - zip/EOF/format errors all mean "not a checkpoint"
        raise DGBenchError(
            f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}): pass a .ckpt written by train.py"
        ) from None
    meta = checkpoint.get("dgbench") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "class_path" not in meta:
        raise DGBenchError(f"{path} is not a dgbench checkpoint (no 'dgbench' entry): pass a .ckpt written by train.py")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise DGBenchError(f"{path} has checkpoint format {meta.get('format')}, this dgbench reads {CHECKPOINT_FORMAT}")
    return checkpoint


# Class paths that checkpoints written before a family's file was renamed to the family's name record,
# and the class each names now. A decision tree saved as ``models.forest.RandomForest`` (before
# models/decision_tree.py) loads as the one-tree RandomForest it is and reports ``random_forest``.
MOVED_CLASSES = {
    "models.forest.RandomForest": "models.random_forest.RandomForest",
    "models.finetuned.FinetunedVAEClassifier": "models.vae_finetuned.FinetunedVAEClassifier",
}


def family_class(class_path: str) -> type[FamilyModule]:
    """Import a family class by dotted path (or its new path, ``MOVED_CLASSES``), refusing anything that
    is not a FamilyModule."""
    module_name, _, class_name = MOVED_CLASSES.get(class_path, class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise DGBenchError(
            f"checkpoint names an unknown family class {class_path!r}: is its model file missing from models/?"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, FamilyModule)):
        raise DGBenchError(f"checkpoint names {class_path!r}, which is not a dgbench model family")
    return cls


def load_model(path: str | Path, device: str | torch.device = "cpu") -> FamilyModule:
    """Rebuild a trained family from its checkpoint, in eval mode on ``device``."""
    checkpoint = read_checkpoint(path)
    cls = family_class(checkpoint["dgbench"]["class_path"])
    try:
        model = cls(**checkpoint.get("hyper_parameters", {}))
        model.load_state_dict(checkpoint["state_dict"])
        model.validation_split = checkpoint["dgbench"].get("validation")
    except (TypeError, RuntimeError) as err:  # renamed arguments, changed layers
        reason = str(err).strip().splitlines()[0][:160]
        raise DGBenchError(
            f"{path} was written by an incompatible version of {cls.__name__} ({reason}): retrain it with this code"
        ) from None
    return model.to(device).eval()


def export_weights(source: str | Path, destination: str | Path) -> None:
    """Keep only what ``load_model`` needs (metadata, hyper-parameters, weights): a small file to ship."""
    checkpoint = read_checkpoint(source)
    slim = {k: checkpoint[k] for k in ("dgbench", "hyper_parameters", "state_dict") if k in checkpoint}
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, destination)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic (:func:`dgbench.runtime.atomic_save`): Lightning
    writes the target file in place, so a run killed during a save could leave a corrupt last.ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_save(checkpoint, path)


def latest_checkpoint(trainer: Any) -> str:
    """The newest checkpoint any ModelCheckpoint of ``trainer`` wrote: where a resume should start.

    (``trainer.checkpoint_callback`` is only the first callback, here the best-model one.) On a tie
    the one named ``last`` wins: it is written after best.ckpt at the same step.
    """
    paths = {
        path
        for callback in trainer.checkpoint_callbacks
        for path in (callback.last_model_path, callback.best_model_path)
        if path and Path(path).is_file()
    }
    return max(paths, key=lambda p: (os.path.getmtime(p), Path(p).stem == "last"), default="")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "export":
        sys.exit("usage: python -m dgbench.checkpoint export SOURCE.ckpt DESTINATION.ckpt")
    export_weights(sys.argv[2], sys.argv[3])
