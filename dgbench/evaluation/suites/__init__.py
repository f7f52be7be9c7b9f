"""Evaluation suites. Each takes a model and the evaluation data and uses only the capability
protocol (``dgbench.capabilities``): a suite runs on every model that has what it requires and is
N/A (``None``) for the others. No suite knows which family it is measuring.

A suite is one module here ending in a ``Suite`` record (``common.Suite``): its measurement, its
table, its rows in the head-to-head table and its figures. ``SUITES`` registers them; evaluate.py
and the report only loop over it, so adding a suite is its module plus one line below. The order
is the run order and the order of the report's tables."""

from __future__ import annotations

from dgbench.evaluation.suites import classification, cost, interpretability, missing_features, ood, sample_quality
from dgbench.evaluation.suites.common import Context, EvalData, Suite, autocast, batched, load_eval_data

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        classification.SUITE,
        ood.SUITE,
        missing_features.SUITE,
        sample_quality.SUITE,
        cost.SUITE,
        interpretability.SUITE,
    )
}

__all__ = ["SUITES", "Context", "EvalData", "Suite", "autocast", "batched", "load_eval_data"]
