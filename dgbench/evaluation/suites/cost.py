"""Cost: size, training time and inference throughput."""

from __future__ import annotations

import time
from typing import Any

from dgbench.capabilities import capabilities_of
from dgbench.evaluation.suites.common import Context, Results, Suite, batched

# Capabilities that take a batch of images and nothing else, so one throughput figure each.
PER_IMAGE = ("classify", "score_anomalies", "log_likelihood")


def cost(model: Any, ctx: Context) -> dict[str, Any]:
    """Size, training time (from the run's metrics.json) and inference throughput per capability."""
    images = ctx.data.test_images[: ctx.budget["cost"]]
    throughput: dict[str, float] = {}
    for capability in capabilities_of(model):
        if capability in PER_IMAGE:
            start = time.perf_counter()
            batched(getattr(model, capability), images, batch_size=ctx.batch_size, device=ctx.device)
            throughput[f"{capability}_images_per_s"] = len(images) / (time.perf_counter() - start)
    return {"parameters": model.num_parameters, **throughput}


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table = {"parameters": {m: (r or {}).get("parameters") for m, r in results.items()}}
    table["train time (s)"] = {m: record["training"].get("train_time_s") for m, record in records.items()}
    table["trained on"] = {m: record["training"].get("device") for m, record in records.items()}
    for m, r in results.items():
        for key, value in (r or {}).items():
            if key.endswith("_per_s"):
                table.setdefault(key.replace("_", " "), {})[m] = value
    return table


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, str | None]:
    """Training time and device, and the parameter count where the suite ran (None = N/A)."""
    train_time = record["training"].get("train_time_s")
    if not train_time:
        return {"Training cost": None}
    cell = f"{train_time:.0f} s on {record['training'].get('device', '?')}"
    params = (result or {}).get("parameters")
    return {"Training cost": f"{cell}, {params:,} params" if params else cell}


SUITE = Suite(name="cost", needs=(), run=cost, title="Cost", rows=rows, summary=summary, summary_rank=5)
