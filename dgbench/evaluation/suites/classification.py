"""Accuracy, NLL and calibration on the test set."""

from __future__ import annotations

from typing import Any

from dgbench.evaluation import metrics
from dgbench.evaluation.suites.common import Context, Results, Suite, batched


def classification(model: Any, ctx: Context) -> dict[str, Any]:
    n = ctx.budget["classification"]
    log_probs = batched(model.classify, ctx.data.test_images[:n], batch_size=ctx.batch_size, device=ctx.device)
    return {"n": n, **metrics.classification_metrics(log_probs, ctx.data.test_labels[:n])}


def rows(results: Results, records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {metric: {m: (r or {}).get(metric) for m, r in results.items()} for metric in ("accuracy", "nll", "ece")}


def summary(result: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    return {"Test accuracy": f"{result['accuracy']:.4f}"} if result else {}


SUITE = Suite(
    name="classification",
    needs=("classify",),
    run=classification,
    title="Classification (test set)",
    rows=rows,
    summary=summary,
    summary_rank=1,
)
