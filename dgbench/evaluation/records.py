"""Evaluation records: every (checkpoint, suite) result saved the moment it is finished.

An evaluation on a CPU is long, so nothing measured may be lost or measured twice:

* **Save as it goes.** Each suite result is written atomically (``dgbench.runtime.atomic_save``)
  to ``<output_dir>/records/<NN>_<model>/<suite>.pt`` as soon as it exists, beside the model's
  ``model.pt`` (family, checkpoint, capabilities, training record) and the evaluation's
  ``meta.pt``; ``report.json``/``report.md`` are built from these files and can be rebuilt from
  them alone (``python evaluate.py records='[<output_dir>, ...]'``).
* **Re-use.** The same result also goes to a content-addressed cache (``cache_dir``), keyed by
  everything that determines it: the checkpoint's content hash, the family's source code, the
  suite, its code version, its budget, the seed, the evaluation data (a hash of the tensors), the
  feature network, the inference settings, the batch size and the device. A second evaluation of
  an unchanged checkpoint runs no suite; a changed one (one weight differs) runs again; an
  interrupted evaluation, re-run, continues where it stopped and gives the same report.
* **Never trusted blindly.** A record that does not load, or whose stored key differs from the one
  asked for, gets one line on stderr and is recomputed.

Records hold tensors and plain containers only, and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgbench.runtime import atomic_save

RECORDS = "records"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: a checkpoint's identity (one changed weight changes it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_digest(*tensors: Tensor) -> str:
    """sha256 over the shapes, dtypes and bytes of ``tensors`` (the evaluation data's identity)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def source_digest(*objects: Any) -> str:
    """sha256 of the source code of modules or functions: changes when their definition does."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:16]


def record_key(**parts: Any) -> str:
    """One key for everything that determines a result (JSON of ``parts``, sorted, hashed)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _load(path: Path, key: str | None = None) -> dict[str, Any] | None:
    """A record, or None (with one line on stderr) when it is unreadable or not the one asked for."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, foreign or pickled: all mean "recompute"
        print(
            f"warning: evaluation record {path} is unreadable ({type(err).__name__}): recomputing it", file=sys.stderr
        )
        return None
    if not isinstance(record, dict) or (key is not None and record.get("key") != key):
        print(f"warning: evaluation record {path} does not hold the expected result: recomputing it", file=sys.stderr)
        return None
    return record


class RecordStore:
    """The records of one evaluation (``records_dir``) backed by a shared cache (``cache_dir``, or None)."""

    def __init__(self, records_dir: str | Path, cache_dir: str | Path | None) -> None:
        self.out_dir = Path(records_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def model_dir(self, index: int, name: str) -> Path:
        return self.out_dir / f"{index:02d}_{name.replace('/', '_')}"

    def save_meta(self, meta: dict[str, Any]) -> None:
        atomic_save(meta, self.out_dir / "meta.pt")

    def save_model(self, index: int, name: str, entry: dict[str, Any]) -> None:
        atomic_save({"name": name, **entry}, self.model_dir(index, name) / "model.pt")

    def cached(self, key: str) -> Any:
        """The cached result for ``key``; raises KeyError when there is none to trust."""
        path = self.cache_dir / f"{key}.pt" if self.cache_dir else None
        record = _load(path, key) if path is not None and path.is_file() else None
        if record is None:
            raise KeyError(key)
        return record["result"]

    def save(self, index: int, name: str, suite: str, key: str | None, result: Any, cache: bool = True) -> None:
        """The result into this evaluation's records and, unless it came from there, the cache."""
        record = {"key": key, "suite": suite, "result": result}
        atomic_save(record, self.model_dir(index, name) / f"{suite}.pt")
        if cache and key is not None and self.cache_dir is not None:
            atomic_save(record, self.cache_dir / f"{key}.pt")


def read_records(out_dirs: list[str | Path]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The meta and per-model results (``evaluate``'s shape) saved under each evaluation directory
    (its ``records/``, or a records directory itself), in order: the report of several evaluations merged, or of one rebuilt from its records alone."""
    metas: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    for out_dir in out_dirs:
        root = Path(out_dir) if (Path(out_dir) / "meta.pt").is_file() else Path(out_dir) / RECORDS
        meta = _load(root / "meta.pt") if (root / "meta.pt").is_file() else None
        if meta is None:
            raise FileNotFoundError(f"{out_dir} holds no evaluation records ({RECORDS}/meta.pt)")
        metas.append(meta)
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            entry = _load(model_dir / "model.pt")
            if entry is None:
                continue
            name = entry.pop("name")
            suites = {}
            for suite in meta["suites"]:
                record = _load(model_dir / f"{suite}.pt") if (model_dir / f"{suite}.pt").is_file() else None
                if record is not None:
                    suites[suite] = record["result"]
            name = name if name not in results else f"{name}#{len(results)}"
            results[name] = {**entry, "budget": meta["budget"], "suites": suites}  # budgets may differ by source
    meta = dict(metas[0])
    if len(metas) > 1:
        meta["suites"] = list(dict.fromkeys(s for m in metas for s in m["suites"]))
    return meta, results
