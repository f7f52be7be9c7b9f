"""dgbench.evaluation.stats: multiplicity, AUROC intervals at the boundary, paired AUROC tests and the
mean-AUROC bootstrap, each against numbers worked out here from the definition (by hand or by brute force)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dgbench.evaluation import stats

Z = 1.959963984540054


# --- Holm's step-down adjusted p-values ---------------------------------------------------------------
def test_holm_adjusted_p_values_worked_by_hand() -> None:
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> the running max 0.06).
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.02 x3 = 0.06, 0.3 x2 = 0.6, 0.5 x1 = 0.5 -> 0.6 (monotone: never below an earlier step).
    assert stats.holm([0.5, 0.3, 0.02]) == pytest.approx([0.6, 0.6, 0.06])
    # Capped at 1: 0.6 x2 = 1.2 -> 1, and 0.7 -> 1 by monotonicity.
    assert stats.holm([0.7, 0.6]) == pytest.approx([1.0, 1.0])
    # One test: unadjusted. None: nothing.
    assert stats.holm([0.04]) == pytest.approx([0.04]) and stats.holm([]) == []
    # Bonferroni would give 0.12 to the smallest of three 0.04s; Holm's steps give each 0.12, 0.08 -> 0.12, 0.04 -> 0.12.
    assert stats.holm([0.04, 0.04, 0.04]) == pytest.approx([0.12, 0.12, 0.12])


def test_holm_keeps_the_keys_of_a_dict_and_rejects_what_the_procedure_rejects() -> None:
    p = {("a", "b"): 0.001, ("a", "c"): 0.02, ("b", "c"): 0.04}
    adjusted = stats.holm(p)
    assert isinstance(adjusted, dict) and list(adjusted) == list(p)
    # 0.001 x3 = 0.003; 0.02 x2 = 0.04; 0.04 x1 = 0.04: all three rejected at 0.05 (Holm's sequence:
    # 0.001 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1).
    assert adjusted == pytest.approx({("a", "b"): 0.003, ("a", "c"): 0.04, ("b", "c"): 0.04})


# --- AUROC intervals that do not collapse at 0 or 1 -----------------------------------------------------
def _newcombe_variance(theta: float, m: int, n: int) -> float:
    big_n = (m + n) / 2
    return theta * (1 - theta) / (m * n) * ((2 * big_n - 1) - (3 * big_n - 3) / ((2 - theta) * (1 + theta)))


def test_perfect_separation_gets_a_score_interval_below_one() -> None:
    ins, outs = torch.arange(100.0), torch.arange(100.0) + 1000  # every outlier above every input
    result = stats.auroc_delong(ins, outs)
    assert result["auroc"] == 1.0 and result["ci_method"] == "newcombe_score"
    lo, hi = result["ci"]
    assert 0.9 < lo < 1 and hi == 1.0
    # The lower end solves 1 - theta = z sqrt(V(theta)) (Newcombe 2006, Hanley-McNeil variance with
    # N = (m + n) / 2); near theta = 1, V ~ (1 - theta)(N + 1) / (2 m n), so 1 - theta ~ z^2 (N + 1) / (2 m n).
    assert 1 - lo == pytest.approx(Z * math.sqrt(_newcombe_variance(lo, 100, 100)), rel=1e-6)
    assert 1 - lo == pytest.approx(Z**2 * 101 / 2 / 10_000, rel=0.05)  # 0.0194
    # All below: the mirror image, [0, 1 - lo].
    mirrored = stats.auroc_delong(outs, ins)
    assert mirrored["auroc"] == 0.0 and mirrored["ci"] == pytest.approx((0.0, 1 - lo), abs=1e-9)
    # More images, a narrower interval that still does not reach 1.
    lo_1000 = stats.auroc_delong(torch.arange(1000.0), torch.arange(1000.0) + 5000)["ci"][0]
    assert lo < lo_1000 < 1


def test_all_scores_tied_get_an_interval_around_one_half() -> None:
    result = stats.auroc_delong(torch.zeros(50), torch.zeros(50))
    lo, hi = result["ci"]
    assert result["auroc"] == 0.5 and result["ci_method"] == "newcombe_score"
    assert 0.3 < lo < 0.5 < hi < 0.7 and lo == pytest.approx(1 - hi, abs=1e-9)
    assert 0.5 - lo == pytest.approx(Z * math.sqrt(_newcombe_variance(lo, 50, 50)), rel=1e-6)


def test_away_from_the_boundary_the_interval_is_delongs_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    ins, outs = torch.randn(200, generator=generator), torch.randn(150, generator=generator) + 1.0
    psi = (outs[:, None] > ins[None]).double() + 0.5 * (outs[:, None] == ins[None]).double()
    v10, v01 = psi.mean(1), psi.mean(0)
    auc = psi.mean().item()
    half = Z * math.sqrt(v10.var().item() / 150 + v01.var().item() / 200)
    result = stats.auroc_delong(ins, outs)
    assert result["ci_method"] == "delong"
    assert result["ci"] == pytest.approx((auc - half, auc + half), abs=1e-12)


# --- DeLong's paired test of two detectors on the same images -------------------------------------------
def _psi(ins: list[float], outs: list[float]) -> list[list[float]]:
    return [[1.0 if o > i else 0.5 if o == i else 0.0 for i in ins] for o in outs]


def _sample_var(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _brute_paired(in_a, outs_a, in_b, outs_b) -> tuple[float, float]:  # noqa: ANN001
    """D = mean_s (AUC_a,s - AUC_b,s); var = sum_s var_i(dV10_s,i) / (k^2 m_s) + var_j(mean_s dV01_s,j) / n."""
    k, n = len(outs_a), len(in_a)
    difference, variance, dv01 = 0.0, 0.0, [0.0] * n
    for oa, ob in zip(outs_a, outs_b, strict=True):
        pa, pb = _psi(in_a, oa), _psi(in_b, ob)
        dv10 = [sum(ra) / n - sum(rb) / n for ra, rb in zip(pa, pb, strict=True)]
        difference += sum(dv10) / len(dv10) / k
        variance += _sample_var(dv10) / (k * k * len(dv10))
        for j in range(n):
            dv01[j] += (sum(row[j] for row in pa) - sum(row[j] for row in pb)) / len(oa) / k
    variance += _sample_var(dv01) / n
    return difference, variance


def test_paired_delong_test_on_one_set_by_brute_force() -> None:
    generator = torch.Generator().manual_seed(1)
    ins = torch.randint(0, 6, (30,), generator=generator).float()  # ties on purpose
    outs = torch.randint(2, 9, (20,), generator=generator).float()
    # Detector b: a noisier view of the same images (correlated with a, which the paired test uses).
    in_b = ins + torch.randint(-2, 3, (30,), generator=generator).float()
    out_b = outs + torch.randint(-3, 3, (20,), generator=generator).float()
    difference, variance = _brute_paired(ins.tolist(), [outs.tolist()], in_b.tolist(), [out_b.tolist()])
    result = stats.delong_paired(ins, outs, in_b, out_b)
    assert result["difference"] == pytest.approx(difference, abs=1e-12)
    assert result["z"] == pytest.approx(difference / math.sqrt(variance), rel=1e-9)
    assert result["p_value"] == pytest.approx(math.erfc(abs(difference) / math.sqrt(2 * variance)), rel=1e-9)
    swapped = stats.delong_paired(in_b, out_b, ins, outs)
    assert swapped["difference"] == pytest.approx(-difference) and swapped["p_value"] == pytest.approx(
        result["p_value"]
    )
    # A detector against itself: no difference, no variance, p = 1.
    assert stats.delong_paired(ins, outs, ins, outs)["p_value"] == 1.0


def test_paired_delong_test_on_a_mean_over_sets_shares_the_in_distribution_images() -> None:
    generator = torch.Generator().manual_seed(2)
    ins, in_b = torch.randn(25, generator=generator), torch.randn(25, generator=generator)
    outs = {"x": torch.randn(15, generator=generator) + 1, "y": torch.randn(10, generator=generator) + 0.5}
    outs_b = {"x": torch.randn(15, generator=generator) + 0.8, "y": torch.randn(10, generator=generator) + 1.2}
    difference, variance = _brute_paired(
        ins.tolist(), [o.tolist() for o in outs.values()], in_b.tolist(), [o.tolist() for o in outs_b.values()]
    )
    result = stats.delong_paired(ins, outs, in_b, outs_b)
    assert result["difference"] == pytest.approx(difference, abs=1e-12)
    assert result["z"] == pytest.approx(difference / math.sqrt(variance), rel=1e-9)


# --- the bootstrap interval on a mean AUROC -------------------------------------------------------------
def _brute_auroc(ins: list[float], outs: list[float]) -> float:
    return sum(1.0 if o > i else 0.5 if o == i else 0.0 for o, i in itertools.product(outs, ins)) / (
        len(ins) * len(outs)
    )


def test_mean_auroc_bootstrap_matches_a_loop_over_replicates() -> None:
    """The documented scheme, replayed with loops: per replicate, the inputs' indices then each set's,
    from one seeded generator; each set's AUROC over all pairs; the mean per group; 2.5 / 97.5 % quantiles."""
    generator = torch.Generator().manual_seed(3)
    ins = torch.randint(0, 5, (12,), generator=generator).float()
    outs = {s: torch.randint(1, 7, (n,), generator=generator).float() for s, n in (("a", 9), ("b", 7), ("c", 5))}
    groups = {"all": ["a", "b", "c"], "near": ["a", "c"], "far": ["b"], "none": []}
    result = stats.mean_auroc_bootstrap(ins, outs, groups, replicates=40, seed=11)
    assert set(result) == {"all", "near", "far"}  # an empty group has no mean

    g = torch.Generator().manual_seed(11)
    in_idx = torch.randint(12, (40, 12), generator=g)
    out_idx = {s: torch.randint(len(o), (40, len(o)), generator=g) for s, o in outs.items()}
    for group in ("all", "near", "far"):
        means = []
        for r in range(40):
            resampled_in = ins[in_idx[r]].tolist()
            aurocs = [_brute_auroc(resampled_in, outs[s][out_idx[s][r]].tolist()) for s in groups[group]]
            means.append(sum(aurocs) / len(aurocs))
        expected = torch.quantile(
            torch.tensor(means, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64)
        )
        assert result[group] == pytest.approx(expected.tolist(), abs=1e-12)


def test_mean_auroc_bootstrap_covers_the_estimate_and_shrinks_with_n() -> None:
    def interval(n: int) -> tuple[float, list[float]]:
        generator = torch.Generator().manual_seed(4)
        ins = torch.randn(n, generator=generator)
        outs = {"near": torch.randn(n, generator=generator) + 0.5, "far": torch.randn(n, generator=generator) + 2}
        point = sum(_brute_auroc(ins.tolist(), o.tolist()) for o in outs.values()) / 2 if n <= 200 else None
        return point, stats.mean_auroc_bootstrap(ins, outs, {"all": ["near", "far"]}, seed=0)["all"]

    point, small = interval(100)
    assert small[0] < point < small[1]
    _, large = interval(1600)
    # 16 times the images: about a quarter of the width (the standard error goes as 1 / sqrt(n)).
    ratio = (large[1] - large[0]) / (small[1] - small[0])
    assert 0.17 < ratio < 0.35


def test_mean_auroc_bootstrap_on_a_case_with_a_binomial_bootstrap_distribution() -> None:
    """Inputs all 0; of 200 outliers, 40 tied with them at 0 and 160 at 1: a replicate's AUROC is
    1 - K / 400 with K ~ Binomial(200, 0.2) the resampled tied outliers (resampling the constant inputs
    changes nothing). The percentile interval is then [1 - q(0.975) / 400, 1 - q(0.025) / 400] for the
    binomial's quantiles q, up to one step of 1 / 400 (a Monte Carlo quantile of a discrete distribution)."""
    from scipy.stats import binom

    ins = torch.zeros(100)
    outs = {"s": torch.cat([torch.zeros(40), torch.ones(160)])}
    lo, hi = stats.mean_auroc_bootstrap(ins, outs, {"all": ["s"]}, replicates=4000, seed=5)["all"]
    assert lo == pytest.approx(1 - binom.ppf(0.975, 200, 0.2) / 400, abs=1 / 400 + 1e-9)
    assert hi == pytest.approx(1 - binom.ppf(0.025, 200, 0.2) / 400, abs=1 / 400 + 1e-9)


# --- where the suites apply them: McNemar and paired-DeLong families with Holm's adjustment -------------
def _holm_by_hand(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    steps = [min(1.0, (len(p) - r) * p[i]) for r, i in enumerate(order)]
    running = [max(steps[: r + 1]) for r in range(len(steps))]
    return [running[order.index(i)] for i in range(len(p))]


def test_classification_rows_adjust_every_pairwise_mcnemar_test_over_all_pairs() -> None:
    from scipy.stats import binomtest

    from dgbench.evaluation.suites import classification

    # Per image right/wrong for three models on 40 images; c is also scored on only 30 (paired on the first 30).
    a = torch.tensor([1] * 30 + [0] * 10, dtype=torch.bool)
    b = torch.tensor([1] * 22 + [0] * 8 + [1] * 4 + [0] * 6, dtype=torch.bool)
    c = torch.tensor([1] * 12 + [0] * 18, dtype=torch.bool)
    results = {
        m: {"n": len(v), "_correct": v, "accuracy": v.float().mean().item(), "accuracy_ci": [0.0, 1.0]}
        for m, v in (("a", a), ("b", b), ("c", c))
    }
    tests = classification.pairwise_mcnemar(results)
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    raw = []
    for x, y in pairs:
        k = min(len(results[x]["_correct"]), len(results[y]["_correct"]))
        cx, cy = results[x]["_correct"][:k], results[y]["_correct"][:k]
        only_x, only_y = int((cx & ~cy).sum()), int((~cx & cy).sum())
        raw.append(binomtest(only_x, only_x + only_y, 0.5).pvalue)
        assert (tests[x, y]["a_only"], tests[x, y]["b_only"], tests[x, y]["n"]) == (only_x, only_y, k)
        assert (tests[y, x]["a_only"], tests[y, x]["b_only"]) == (only_y, only_x)
    assert [tests[p]["p_value"] for p in pairs] == pytest.approx(raw)
    assert [tests[p]["p_holm"] for p in pairs] == pytest.approx(_holm_by_hand(raw))
    assert [tests[y, x]["p_holm"] for x, y in pairs] == pytest.approx(_holm_by_hand(raw))
    table = classification.rows(results, {})
    assert f"({tests['a', 'c']['p_holm']:.2g})" in table["vs c: McNemar p (Holm)"]["a"]


class ShiftScorer:
    """Anomaly score = mean pixel plus a per-model amount of image-dependent noise (same images, different
    detectors); ``primary_score`` is the noisy one."""

    primary_score = "noisy"

    def __init__(self, noise: float) -> None:
        self.noise = noise

    def score_anomalies(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = x.flatten(1).mean(1)
        wobble = torch.sin(x.flatten(1).sum(1) * 37.0)  # a deterministic function of the image
        return {"noisy": mean + self.noise * wobble, "clean": mean}


def _ood_results(n: int = 60) -> dict[str, dict]:
    from dgbench.evaluation.suites import ood as ood_suite
    from dgbench.evaluation.suites.common import NEAR_OOD, Context, EvalData

    generator = torch.Generator().manual_seed(0)

    def images(low: float, high: float) -> torch.Tensor:  # mean pixel ~ U(low, high) / 2: overlapping sets
        brightness = low + (high - low) * torch.rand(n, 1, 1, 1, generator=generator)
        return torch.rand(n, 1, 28, 28, generator=generator) * brightness

    digits = images(0.2, 0.6)
    sets = {"fashion_mnist": images(0.4, 0.9), **{name: images(0.3, 0.7) for name in NEAR_OOD}}
    data = EvalData("mnist", digits, torch.zeros(n, dtype=torch.long), digits, digits, sets)
    ctx = Context(data, {"ood": n}, torch.device("cpu"), 16, 0, None)
    return {m: ood_suite.ood(ShiftScorer(noise), ctx) for m, noise in (("x", 0.0), ("y", 0.01), ("z", 0.03))}


def test_ood_suite_reports_bootstrap_intervals_on_every_mean_auroc() -> None:
    from dgbench.evaluation.suites import ood as ood_suite

    result = _ood_results()["y"]
    assert result["bootstrap_replicates"] == stats.BOOTSTRAP_REPLICATES
    for score in ("noisy", "clean"):
        per_set = result["scores"][score]
        assert set(per_set["mean_auroc_ci"]) == set(per_set["mean_auroc"]) == {"all", "near", "far"}
        for group, (lo, hi) in per_set["mean_auroc_ci"].items():
            assert lo <= per_set["mean_auroc"][group] <= hi and hi - lo > 0
        assert "mean_auroc_ci" not in ood_suite._sets(per_set) and "mean_auroc" not in ood_suite._sets(per_set)
    (cell,) = ood_suite.summary(result, {}).values()
    lo, hi = result["scores"]["noisy"]["mean_auroc_ci"]["near"]
    assert f"near {result['scores']['noisy']['mean_auroc']['near']:.3f} [{lo:.3f}, {hi:.3f}]" in cell


def test_ood_rows_compare_primary_scores_by_paired_delong_with_holm_per_set() -> None:
    from dgbench.evaluation.suites import ood as ood_suite

    results = _ood_results()
    tests = ood_suite.pairwise_auroc(results)
    assert set(tests) == {"fashion_mnist", *ood_suite.NEAR_OOD, "mean, all sets", "mean, near sets", "mean, far sets"}
    pairs = [("x", "y"), ("x", "z"), ("y", "z")]
    for row, family in tests.items():
        members = [row] if not row.startswith("mean") else None
        raw = []
        for a, b in pairs:
            sa, sb = results[a]["_primary_scores"], results[b]["_primary_scores"]
            if members is not None:
                expected = stats.delong_paired(sa["in"], sa["out"][row], sb["in"], sb["out"][row])
                assert family[a, b]["difference"] == pytest.approx(expected["difference"])
                assert family[a, b]["p_value"] == pytest.approx(expected["p_value"])
            assert family[b, a]["difference"] == pytest.approx(-family[a, b]["difference"])
            raw.append(family[a, b]["p_value"])
        assert [family[p]["p_holm"] for p in pairs] == pytest.approx(_holm_by_hand(raw))
    near = [s for s in results["x"]["near"]]
    sa, sb = results["x"]["_primary_scores"], results["z"]["_primary_scores"]
    expected = stats.delong_paired(sa["in"], {s: sa["out"][s] for s in near}, sb["in"], {s: sb["out"][s] for s in near})
    assert tests["mean, near sets"]["x", "z"]["p_value"] == pytest.approx(expected["p_value"])
    table = ood_suite.rows(results, {})
    label = "primary score vs others, mean, near sets: AUROC difference, paired DeLong p (Holm)"
    assert f"({tests['mean, near sets']['x', 'z']['p_holm']:.2g})" in table[label]["x"]
    # A record made before the new keys (no interval, no per-image scores) still renders.
    old = {m: {k: v for k, v in r.items() if k != "_primary_scores"} for m, r in results.items()}
    for r in old.values():
        for per_set in r["scores"].values():
            per_set.pop("mean_auroc_ci")
    assert "mean AUROC, near sets" in ood_suite.rows(old, {}) and ood_suite.summary(old["x"], {})
