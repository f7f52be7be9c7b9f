"""The findings rule (dgbench/evaluation/findings.py) on hand-made reports whose verdicts are known."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from dgbench.evaluation import findings as f
from dgbench.evaluation.curves import spectrum_tests


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


def test_the_spectrum_is_decided_on_holm_adjusted_p_over_all_its_comparisons() -> None:
    a, b, c = [0.80, 0.81, 0.82], [0.70, 0.74, 0.76], [0.78, 0.79, 0.815]  # hybrid, discriminative, generative
    points = [
        {"family": family, "kind": kind, "train_size": 100, "seed": seed, "test_acc": acc}
        for family, kind, accs in (("h", "hybrid", a), ("d", "discriminative", b), ("g", "generative", c))
        for seed, acc in enumerate(accs)
    ]
    p_d = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue  # Welch, computed independently
    p_g = scipy_stats.ttest_ind(a, c, equal_var=False).pvalue
    small, large = sorted([p_d, p_g])
    holm = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}  # Holm by hand for K = 2
    tests = {t["rival"]: t for t in spectrum_tests(points)}
    assert tests["d"]["p_value"] == pytest.approx(p_d) and tests["d"]["p_holm"] == pytest.approx(holm[p_d])
    assert tests["g"]["p_value"] == pytest.approx(p_g) and tests["g"]["p_holm"] == pytest.approx(holm[p_g])
    row = f.spectrum_row(points)
    expected = f.HOLDS if max(holm.values()) < 0.05 else f.EVEN
    assert row.verdict == expected and f"Holm {holm[p_d]:.3f}" in row.numbers


def test_findings_json_keeps_the_verdicts_of_the_run_it_replaces(tmp_path, monkeypatch) -> None:
    import json

    verdicts = iter([f.HOLDS, f.HOLDS, f.EVEN, f.EVEN])  # four runs: the first two agree, then one changes
    monkeypatch.setattr(
        f, "findings", lambda report, curves, seeds: [f.Finding("a claim", next(verdicts), "1 vs 2", "r.md")]
    )
    (tmp_path / "report.json").write_text(json.dumps({"models": {}}))
    assert f.write_findings(tmp_path)["previous"] is None  # the first run: nothing to compare with
    assert f.write_findings(tmp_path)["previous"] is None  # a rerun with the same verdicts keeps what it had
    changed = f.write_findings(tmp_path)
    assert changed["previous"] == {"a claim": f.HOLDS}
    assert f.since(f.Finding(**changed["rows"][0]), changed["previous"]) == f"was: {f.HOLDS}"
    again = f.write_findings(tmp_path)  # reproduced: what the run before said is not erased
    assert again["previous"] == {"a claim": f.HOLDS}
    assert f.since(f.Finding("new", f.EVEN, "", ""), again["previous"]) == "new claim"
    assert f.since(f.Finding("a claim", f.HOLDS, "", ""), again["previous"]) == "unchanged"


def test_a_claim_the_report_cannot_decide_is_left_out() -> None:
    # two classifiers and no curves: no generative sampler, no masks, no outlier scores, no hybrid
    models = {"d": model("discriminative", 0.9, (0.88, 0.92)), "g": model("generative", 0.8, (0.78, 0.82))}
    claims = [r.claim for r in f.findings({"models": models}, None)]
    assert claims == ["they learn different things", "discriminative models classify more accurately"]


def test_mask_trained_models_are_known_by_what_the_report_says_not_by_name() -> None:
    def with_missing(kind: str, acc: float, ci: tuple, masks: bool | None) -> dict:
        m = model(kind, acc, ci)
        m["suites"]["missing_features"] = {"n": 1000, "random_50": {"accuracy": acc, "accuracy_ci": list(ci)}}
        return m if masks is None else {**m, "trained_on_missing_pixels": masks}

    models = {
        "plain": with_missing("discriminative", 0.80, (0.78, 0.82), False),
        "robust": with_missing("discriminative", 0.95, (0.94, 0.96), True),  # no "_masked" in its name
        "legacy": with_missing("discriminative", 0.90, (0.89, 0.91), None),  # a report from before the key
    }
    assert f.best(models, ("discriminative",), f.missing, masked=True).model == "robust"
    assert f.best(models, ("discriminative",), f.missing, masked=False).model == "legacy"
    renamed = {("legacy_masked" if k == "legacy" else k): v for k, v in models.items()}  # the old name rule
    masked = [n for n, m in renamed.items() if f.missing(n, m, masked=True)]
    assert sorted(masked) == ["legacy_masked", "robust"]


def test_a_family_at_several_seeds_is_one_cell_with_seed_and_evaluation_spread() -> None:
    accs, cis = [0.90, 0.92, 0.94], [(0.88, 0.91), (0.90, 0.93), (0.92, 0.95)]  # each 0.02 below, 0.01 above
    seeds = {"models": {name: model("discriminative", acc, ci)
                        for name, acc, ci in zip(["d", "d@s43", "d@s44"], accs, cis, strict=True)}}  # fmt: skip
    report = {"models": {"d": model("discriminative", 0.90, (0.88, 0.91)), "g": model("generative", 0.5, (0.45, 0.55))}}
    seed_half = scipy_stats.t.ppf(0.975, 2) * 0.02 / 3**0.5  # sd of 0.90, 0.92, 0.94 is 0.02
    rows = {r.claim: r for r in f.findings(report, None, seeds)}
    row = rows["discriminative models classify more accurately"]
    low, high = 0.92 - (seed_half**2 + 0.02**2) ** 0.5, 0.92 + (seed_half**2 + 0.01**2) ** 0.5
    assert f"d 92.0 [{100 * low:.1f}, {100 * high:.1f}] % (n = 1000, 3 seeds)" in row.numbers
    assert row.verdict == f"{f.HOLDS}, conditional on one checkpoint of g"  # g was trained once
    assert "conditional" not in f.findings({"models": {k: report["models"]["d"] for k in ("d",)} | {
        "g": report["models"]["g"]}}, None, {"models": {**seeds["models"], "g": report["models"]["g"],
        "g@s43": report["models"]["g"]}})[1].verdict  # fmt: skip


def test_side_by_side_marks_a_verdict_that_flips_and_ignores_the_checkpoint_caveat() -> None:
    hour = [
        f.Finding("a", f.HOLDS, "1", "r.md"),
        f.Finding("b", f"{f.EVEN}, conditional on one checkpoint of g", "2", "r.md"),
    ]
    reference = [f.Finding("a", f.EVEN, "3", "r.md"), f.Finding("b", f.EVEN, "4", "r.md")]
    lines = f.side_by_side(hour, reference, ("h", "r"))
    assert "**flips**" in lines[2] and "[holds](h/r.md)" in lines[2] and "[not distinguishable](r/r.md)" in lines[2]
    assert "**flips**" not in lines[3]  # the same verdict, one of them conditional on one checkpoint
    assert "not run" in f.side_by_side(hour, [], ("h", "r"))[2]
