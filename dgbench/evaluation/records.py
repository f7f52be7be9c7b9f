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
Here too: the keys (:class:`ResultKeys`, with the code digests), the running of one (model, suite)
(:class:`SuiteRunner`: N/A, reused or measured, then saved) and the report rebuilt from records.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgbench import DGBenchError, progress
from dgbench.capabilities import capabilities_of
from dgbench.evaluation import metrics, stats
from dgbench.evaluation.report import write_report
from dgbench.evaluation.suites import SUITES, Context
from dgbench.evaluation.suites import common as suites_common
from dgbench.rundir import RunDir
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


class ResultKeys:
    """The cache keys of one evaluation's results: everything besides the checkpoint and the suite
    that determines a result is fixed here once (the evaluation data's digest, the OOD sets, seed,
    inference settings, batch size, device, torch version, the feature network's digest)."""

    def __init__(self, data: Any, feature_digest: str | None, **settings: Any) -> None:
        self.common = {"data": tensor_digest(*data.tensors()), "ood_sets": list(data.ood), **settings}
        self.common["torch"] = torch.__version__
        self.feature_digest = feature_digest

    def of(self, model: Any, checkpoint_sha256: str, suite_name: str, suite: Any, budget: dict[str, int]) -> str:
        """The key of ``model`` (whose checkpoint has ``checkpoint_sha256``) under ``suite`` (``SUITES[suite_name]``)."""
        return record_key(
            **self.common,
            checkpoint=checkpoint_sha256,
            family_code=family_code_digest(type(model)),
            suite=suite_name,
            suite_code=suite_code_digest(suite),
            budget=[budget.get(b) for b in (suite_name, *suite.extra_budgets)],
            feature_net=self.feature_digest if suite.uses_feature_net else None,
        )


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


def portable_path(path: str | Path) -> str:
    """A path as the command's working directory sees it: what a report names, on any machine."""
    return os.path.relpath(Path(path).resolve(), Path.cwd())


def portable_training(training: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics.json with its checkpoint path made portable."""
    if training.get("ckpt_path"):
        training = {**training, "ckpt_path": portable_path(training["ckpt_path"])}
    return training


def model_record(model: Any, ckpt: Path, budget: dict[str, int]) -> dict[str, Any]:
    """A model's entry in the report, before its suites run."""
    return {
        "family": model.family,
        "kind": model.kind,
        "learns": model.learns,
        "checkpoint": portable_path(ckpt),
        "sha256": file_digest(ckpt),
        "capabilities": capabilities_of(model),
        "trained_on_missing_pixels": model.trained_on_missing_pixels,
        "training": portable_training(RunDir.of_checkpoint(ckpt).metrics()),
        "budget": budget,
        "suites": {},
    }


@dataclass
class SuiteRunner:
    """Runs one (model, suite) at a time: N/A (saved as None), reused from the cache, or measured and
    saved at once; prints one line each, with the time since ``start``, and counts what it measured and reused."""

    store: RecordStore
    keys: ResultKeys
    start: float
    measured: int = 0
    reused: int = 0

    def say(self, line: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {line}", flush=True)

    def suite(self, index: int, name: str, model: Any, sha256: str, suite: str, ctx: Context) -> dict[str, Any] | None:
        record = SUITES[suite]
        if not set(record.needs) <= set(capabilities_of(model)):
            self.store.save(index, name, suite, None, None)
            self.say(f"{name}: {suite} N/A (needs {', '.join(record.needs)})")
            return None
        key = self.keys.of(model, sha256, suite, record, ctx.budget)
        try:
            result = self.store.cached(key)
            self.store.save(index, name, suite, key, result, cache=False)
            self.reused += 1
            self.say(f"{name}: {suite} reused (cached: {key[:12]})")
            return result
        except KeyError:
            pass
        t0 = time.perf_counter()
        # what shortens it, named in its time estimate (dgbench.progress)
        hint = " or ".join(f"budget.{b}=N" for b in (suite, *record.extra_budgets) if b in ctx.budget)
        with progress.suite(f"{name}: {suite}", hint):
            result = {**record.run(model, ctx), "seconds": round(time.perf_counter() - t0, 2)}
        self.store.save(index, name, suite, key, result)
        self.measured += 1
        self.say(f"{name}: {suite} done in {time.perf_counter() - t0:.1f}s")
        return result


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
        applied = {name: values for m in metas for name, values in m.get("inference_applied", {}).items()}
        if applied:  # which inference settings each model got (evaluate.py), over every evaluation merged
            meta["inference_applied"] = applied
    return meta, results


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
