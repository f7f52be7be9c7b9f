"""The findings rule (dgbench/evaluation/findings.py) on hand-made reports whose verdicts are known."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from dgbench.evaluation import findings as f


def model(kind: str, acc: float, ci: tuple[float, float]) -> dict:
    return {"kind": kind, "learns": kind, "capabilities": ["classify"], "suites": {"classification": {
        "accuracy": acc, "accuracy_ci": list(ci), "n": 1000}}}  # fmt: skip


@pytest.mark.parametrize(
    ("disc", "gen", "expected"),
    [
        ((0.99, (0.98, 0.995)), (0.95, (0.94, 0.96)), f.HOLDS),  # intervals apart, discriminative ahead
        ((0.95, (0.94, 0.96)), (0.99, (0.98, 0.995)), f.CONTRADICTED),
        ((0.96, (0.95, 0.97)), (0.965, (0.955, 0.975)), f.EVEN),  # overlapping intervals
    ],
)
def test_accuracy_verdict_follows_the_intervals(disc: tuple, gen: tuple, expected: str) -> None:
    models = {"d": model("discriminative", *disc), "d_worse": model("discriminative", 0.5, (0.4, 0.6)),
              "g": model("generative", *gen)}  # fmt: skip
    a, b = f.best(models, ("discriminative",), f.accuracy), f.best(models, ("generative",), f.accuracy)
    assert (a.model, b.model) == ("d", "g")  # the best of each kind, not the first
    assert f.verdict(f.order(a, b)) == expected


def test_lower_is_better_picks_the_smallest() -> None:
    models = {name: {"kind": "generative", "suites": {"sample_quality": {"fid": v, "fid_ci": [v - 0.1, v + 0.1], "n": 9}}}
              for name, v in {"a": 2.0, "b": 0.5, "c": 1.0}.items()}  # fmt: skip
    assert f.best(models, ("generative",), f.fid, lowest=True).model == "b"


def test_claims_resting_on_several_tests_are_holm_adjusted() -> None:
    a, b, c = [0.80, 0.81, 0.82], [0.70, 0.74, 0.76], [0.78, 0.79, 0.815]
    p_ab = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue  # Welch, computed independently
    p_ac = scipy_stats.ttest_ind(a, c, equal_var=False).pvalue
    small, large = sorted([p_ab, p_ac])
    holm = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}  # Holm by hand for K = 2
    rows = f.welch_rows((("a", a), ("b", b)), (("a", a), ("c", c)))
    for (verdict, text), p in zip(rows, (p_ab, p_ac), strict=True):
        assert f"Welch p = {p:.3f} (Holm {holm[p]:.3f})" in text
        assert verdict == (f.HOLDS if holm[p] < 0.05 else f.EVEN)
    [(single, text)] = f.welch_rows((("a", a), ("b", b)))  # one test: nothing to adjust
    assert "Holm" not in text and single == (f.HOLDS if p_ab < 0.05 else f.EVEN)
