"""dgbench.evaluation.metrics against values worked out by hand (or by brute force) on small inputs.

Each expected value is computed here from the metric's definition, never read off the implementation:
a wrong binning, tie rule, threshold convention, kernel or normalisation gives a different number.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dgbench.evaluation import metrics, stats


# --- classification: accuracy, NLL, ECE ----------------------------------------------------------
def top_label_log_probs(confidence: float, predicted: int) -> list[float]:
    """log p over 10 classes: ``confidence`` on ``predicted``, the rest spread evenly over the other 9."""
    p = [(1 - confidence) / 9] * 10
    p[predicted] = confidence
    return [math.log(v) for v in p]


# (confidence of the top class, predicted class, true class)
PREDICTIONS = [(0.95, 3, 3), (0.95, 1, 7), (0.55, 0, 0), (0.55, 2, 2), (0.30, 4, 9)]


def test_accuracy_nll_and_ece_of_a_hand_worked_case() -> None:
    log_probs = torch.tensor([top_label_log_probs(c, pred) for c, pred, _ in PREDICTIONS])
    labels = torch.tensor([true for _, _, true in PREDICTIONS])
    result = metrics.classification_metrics(log_probs, labels)

    assert result["accuracy"] == pytest.approx(3 / 5)  # two of the five are wrong
    # NLL: mean -log p(true class); a wrong prediction's true class has (1 - confidence) / 9.
    p_true = [0.95, 0.05 / 9, 0.55, 0.55, 0.70 / 9]
    assert result["nll"] == pytest.approx(-sum(math.log(p) for p in p_true) / 5, rel=1e-6)
    # ECE with 15 equal-width confidence bins (width 1/15): 0.95 falls in [14/15, 1], 0.55 in
    # [8/15, 9/15), 0.30 in [4/15, 5/15). ECE = sum_b |B_b|/N |acc_b - conf_b|:
    #   bin 0.95: acc 1/2, conf 0.95; bin 0.55: acc 1, conf 0.55; bin 0.30: acc 0, conf 0.30.
    # (Signed differences would give 0.06, one pooled bin |0.6 - 0.66| = 0.06 too.)
    expected_ece = 2 / 5 * abs(0.5 - 0.95) + 2 / 5 * abs(1.0 - 0.55) + 1 / 5 * abs(0.0 - 0.30)
    assert expected_ece == pytest.approx(0.42)
    assert result["ece"] == pytest.approx(expected_ece, abs=1e-6)


def test_a_perfectly_calibrated_bin_has_no_calibration_error() -> None:
    # Ten predictions at confidence 0.8, eight right: accuracy = confidence in the only bin.
    log_probs = torch.tensor([top_label_log_probs(0.8, 5)] * 10)
    labels = torch.tensor([5] * 8 + [6, 7])
    result = metrics.classification_metrics(log_probs, labels)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["ece"] == pytest.approx(0.0, abs=1e-6)
    assert result["nll"] == pytest.approx(-(8 * math.log(0.8) + 2 * math.log(0.2 / 9)) / 10, rel=1e-6)


# --- OOD detection: AUROC, AUPR, FPR@95 (OOD = positive class; higher score = more anomalous) -------
def brute_force_auroc(in_scores: list[float], out_scores: list[float]) -> float:
    """P(score_ood > score_in) + 1/2 P(tie), over every (ood, in) pair."""
    wins = sum((o > i) + 0.5 * (o == i) for o, i in itertools.product(out_scores, in_scores))
    return wins / (len(in_scores) * len(out_scores))


def test_auroc_counts_ties_as_one_half() -> None:
    ins, outs = [0.1, 0.5, 0.5, 0.9], [0.5, 0.7, 0.95]
    # Pairs won by the OOD score: 0.5 -> 1 win + 2 ties; 0.7 -> 3 wins; 0.95 -> 4 wins: (1 + 1 + 3 + 4) / 12.
    assert brute_force_auroc(ins, outs) == pytest.approx(9 / 12)
    result = metrics.ood_metrics(torch.tensor(ins), torch.tensor(outs))
    assert result["auroc"] == pytest.approx(9 / 12)  # ties as 0 would give 8/12, as 1 10/12


def test_auroc_matches_brute_force_on_random_scores_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    ins = torch.randint(0, 8, (37,), generator=generator).float()  # few distinct values: many ties
    outs = torch.randint(2, 10, (23,), generator=generator).float()
    expected = brute_force_auroc(ins.tolist(), outs.tolist())
    assert metrics.ood_metrics(ins, outs)["auroc"] == pytest.approx(expected, abs=1e-6)
    # Only the order matters: the same scores on a nats scale (hundreds) give the same AUROC.
    assert metrics.ood_metrics(ins * 40 + 300, outs * 40 + 300)["auroc"] == pytest.approx(expected, abs=1e-6)


def test_scores_in_the_hundreds_do_not_saturate_into_ties() -> None:
    # torchmetrics would squash scores outside [0, 1] with a sigmoid: 300 and 310 both become 1.0.
    ins, outs = torch.linspace(300, 309, 10), torch.linspace(310, 319, 10)
    result = metrics.ood_metrics(ins, outs)
    assert (result["auroc"], result["aupr"], result["fpr95"]) == (pytest.approx(1.0), pytest.approx(1.0), 0.0)
    assert metrics.ood_metrics(outs, ins)["auroc"] == pytest.approx(0.0)


def test_aupr_is_average_precision_over_the_ranking() -> None:
    ins, outs = [0.1, 0.4, 0.35, 0.8], [0.9, 0.5, 0.3]
    # Ranked by score: 0.9 (OOD, precision 1/1), 0.8 (in), 0.5 (OOD, 2/3), 0.4, 0.35 (in), 0.3 (OOD, 3/6), 0.1.
    # AP = mean precision at each positive = (1 + 2/3 + 1/2) / 3; the trapezoid PR-AUC would differ.
    expected = (1 + 2 / 3 + 1 / 2) / 3
    assert metrics.ood_metrics(torch.tensor(ins), torch.tensor(outs))["aupr"] == pytest.approx(expected, abs=1e-6)


def test_fpr95_is_the_share_of_ood_accepted_at_95_percent_of_in_distribution_accepted() -> None:
    """The convention of Liang et al. 2018 (ODIN), the one metrics.py documents: a threshold tau accepts
    an input when its score <= tau; tau is the smallest that accepts >= 95% of in-distribution inputs;
    FPR@95 is the share of OOD inputs it accepts. (The other convention in the literature, 95% of OOD
    detected and the share of in-distribution inputs flagged, would give 14/20 = 0.7 here.)"""
    ins = torch.arange(20.0)  # 0..19: tau = 18 accepts 19/20 = 95%
    outs = torch.tensor([5.5, 17.5, 18.5, 30.0, 40.0])  # accepted at tau = 18: 5.5 and 17.5
    assert metrics.ood_metrics(ins, outs)["fpr95"] == pytest.approx(2 / 5)  # tau=17 gives 1/5, tau=19 3/5
    # With 10 in-distribution inputs 95% cannot be hit exactly: 9/10 is not enough, tau must accept all 10.
    ins10 = torch.arange(10.0)  # tau = 9
    outs10 = torch.tensor([3.5, 8.5, 9.5, 12.0])  # 3.5 and 8.5 accepted; 9.5 and 12 rejected
    assert metrics.ood_metrics(ins10, outs10)["fpr95"] == pytest.approx(2 / 4)


def test_roc_curve_has_ood_as_the_positive_class() -> None:
    fpr, tpr = metrics.roc_curve(torch.tensor([0.0, 1.0]), torch.tensor([2.0]))
    # Thresholds from the top: only the OOD input flagged (fpr 0, tpr 1), then one and both in-distribution.
    points = sorted(zip(fpr.tolist(), tpr.tolist()))
    assert (0.0, 1.0) in points and (1.0, 1.0) in points and all(t in (0.0, 1.0) for _, t in points)


# --- sample quality: k-NN precision / recall, FID, KID -------------------------------------------
def brute_force_precision_recall(real: list[float], fake: list[float], k: int) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019 on 1-d points, by sorting distances by hand."""

    def radii(points: list[float]) -> list[float]:
        return [sorted(abs(p - q) for j, q in enumerate(points) if j != i)[k - 1] for i, p in enumerate(points)]

    def share_inside(points: list[float], centres: list[float]) -> float:
        r = radii(centres)
        return sum(any(abs(p - c) <= rc for c, rc in zip(centres, r)) for p in points) / len(points)

    return share_inside(fake, real), share_inside(real, fake)


def column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values)[:, None]


def test_knn_precision_recall_on_points_with_hand_computed_radii() -> None:
    real, fake = [-30.0, 0.0, 1.0, 2.0, 10.0], [0.5, 5.0, 13.0, 19.0, 40.0]
    # k = 1. Real radii: -30 -> 30, 0 -> 1, 1 -> 1, 2 -> 1, 10 -> 8. Fakes inside: 0.5 (near 0), 5 and 13
    # (within 8 of 10); 19 (9 from 10, 49 from -30) and 40 are not: precision 3/5.
    # Fake radii: 0.5 -> 4.5, 5 -> 4.5, 13 -> 6, 19 -> 6, 40 -> 21. Reals inside: 0, 1, 2 (near 0.5), 10
    # (3 from 13); -30 is 30.5 from 0.5: recall 4/5.
    result = metrics.knn_precision_recall(column(real), column(fake), k=1)
    assert result == {"precision": pytest.approx(3 / 5), "recall": pytest.approx(4 / 5)}
    assert brute_force_precision_recall(real, fake, 1) == pytest.approx((3 / 5, 4 / 5))
    # k = 2: the radii grow (real 10 -> 9, so 19 is now on its ball's boundary: inside): precision 4/5.
    expected = brute_force_precision_recall(real, fake, 2)
    assert expected == pytest.approx((4 / 5, 4 / 5))
    assert tuple(metrics.knn_precision_recall(column(real), column(fake), k=2).values()) == pytest.approx(expected)


def test_knn_balls_are_closed_and_exclude_the_point_itself() -> None:
    # Real 0 and 4: each one's nearest neighbour is the other (radius 4), not itself (radius 0).
    # A fake exactly on the boundary (8 = 4 + 4) counts as inside; one just beyond does not.
    real = column([0.0, 4.0])
    assert metrics.knn_precision_recall(real, column([8.0, 8.01, -4.0]), k=1)["precision"] == pytest.approx(2 / 3)


def test_knn_precision_recall_in_two_dimensions_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(1)
    real, fake = torch.randn(12, 2, generator=generator), torch.randn(9, 2, generator=generator) + 2.0

    def brute(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
        radius = [
            sorted(math.dist(p, q) for j, q in enumerate(b.tolist()) if j != i)[k - 1] for i, p in enumerate(b.tolist())
        ]
        return sum(any(math.dist(p, c) <= r for c, r in zip(b.tolist(), radius)) for p in a.tolist()) / len(a)

    result = metrics.knn_precision_recall(real, fake, k=3)
    assert result["precision"] == pytest.approx(brute(fake, real, 3))
    assert result["recall"] == pytest.approx(brute(real, fake, 3))
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1  # not a degenerate case


def test_fid_equals_the_closed_form_for_diagonal_gaussians() -> None:
    """FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with S the sample covariance (n - 1).

    Points (+-a, 0), (0, +-b) around a centre have mean = centre and covariance diag(2a^2/3, 2b^2/3)
    exactly (n = 4), so for diagonal S the closed form is ||mu1 - mu2||^2 + sum_i (s1_i - s2_i)^2.
    """

    def cross(centre: tuple[float, float], a: float, b: float) -> torch.Tensor:
        offsets = torch.tensor([[a, 0.0], [-a, 0.0], [0.0, b], [0.0, -b]], dtype=torch.float64)
        return offsets + torch.tensor(centre, dtype=torch.float64)

    real, fake = cross((0.0, 0.0), 1.5, 0.6), cross((0.3, -0.4), 0.9, 1.2)
    std_real = [math.sqrt(2 * 1.5**2 / 3), math.sqrt(2 * 0.6**2 / 3)]
    std_fake = [math.sqrt(2 * 0.9**2 / 3), math.sqrt(2 * 1.2**2 / 3)]
    expected = 0.3**2 + 0.4**2 + sum((s - t) ** 2 for s, t in zip(std_real, std_fake))
    assert stats.fid(real, fake) == pytest.approx(expected, rel=1e-6)
    assert stats.fid(real, real) == pytest.approx(0.0, abs=1e-9)
    assert stats.fid_interval(real, fake)["fid"] == pytest.approx(expected, rel=1e-6)


def _brute_force_kid(x: list[list[float]], y: list[list[float]], d: int) -> float:
    def k(u: list[float], v: list[float]) -> float:
        return (sum(a * b for a, b in zip(u, v)) / d + 1) ** 3

    m, n = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return within_x + within_y - 2 * sum(k(u, v) for u in x for v in y) / (m * n)


def test_kid_is_the_unbiased_mmd_with_the_cubic_polynomial_kernel() -> None:
    """KID (Binkowski et al. 2018): MMD^2_u with k(x, y) = (x.y / d + 1)^3,
    1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)."""
    generator = torch.Generator().manual_seed(2)
    d = 3
    real = torch.rand(5, d, generator=generator, dtype=torch.float64)
    fake = torch.rand(7, d, generator=generator, dtype=torch.float64) * 1.5 + 0.2
    assert stats.kid(real, fake) == pytest.approx(_brute_force_kid(real.tolist(), fake.tolist(), d), rel=1e-9)


def test_kid_interval_averages_disjoint_subsets_and_is_reproducible() -> None:
    """The reported KID is the mean of unbiased estimates on disjoint subsets (brute force on each),
    and the same sets give the same interval whatever the global RNG state."""
    generator = torch.Generator().manual_seed(3)
    real = torch.rand(40, 2, generator=generator, dtype=torch.float64)
    fake = torch.rand(40, 2, generator=generator, dtype=torch.float64) + 0.1
    torch.manual_seed(0)
    first = stats.kid_interval(real, fake, subsets=4, seed=5)
    torch.manual_seed(1)
    assert stats.kid_interval(real, fake, subsets=4, seed=5) == first
    g = torch.Generator().manual_seed(5)
    ir, jf = torch.randperm(40, generator=g), torch.randperm(40, generator=g)
    parts = [
        _brute_force_kid(r.tolist(), f.tolist(), 2) for r, f in zip(real[ir].chunk(4), fake[jf].chunk(4), strict=True)
    ]
    assert first["kid"] == pytest.approx(sum(parts) / 4, rel=1e-9)
    assert first["kid_ci"][0] < first["kid"] < first["kid_ci"][1]


def test_kid_interval_is_a_t_interval_with_one_degree_of_freedom_less_than_subsets() -> None:
    """m disjoint-subset estimates: mean +- t_{0.975, m-1} s / sqrt(m), s the sample sd (m - 1 in its
    denominator). The quantile comes from scipy here; t at m degrees of freedom (the old bug) is narrower."""
    from scipy.stats import t as student_t

    generator = torch.Generator().manual_seed(4)
    real = torch.rand(60, 2, generator=generator, dtype=torch.float64)
    fake = torch.rand(60, 2, generator=generator, dtype=torch.float64) * 1.2
    for m in (3, 5, 10):
        g = torch.Generator().manual_seed(7)
        ir, jf = torch.randperm(60, generator=g), torch.randperm(60, generator=g)
        parts = [
            _brute_force_kid(r.tolist(), f.tolist(), 2)
            for r, f in zip(real[ir].chunk(m), fake[jf].chunk(m), strict=True)
        ]
        mean = sum(parts) / m
        sd = math.sqrt(sum((v - mean) ** 2 for v in parts) / (m - 1))
        half = float(student_t.ppf(0.975, m - 1)) * sd / math.sqrt(m)
        result = stats.kid_interval(real, fake, subsets=m, seed=7)
        assert result["kid"] == pytest.approx(mean, rel=1e-9)
        assert result["kid_ci"] == pytest.approx([mean - half, mean + half], rel=1e-3)
        too_narrow = float(student_t.ppf(0.975, m)) * sd / math.sqrt(m)
        assert result["kid_ci"][1] - mean > too_narrow * (1 + 1e-3)
    with pytest.raises(ValueError, match="at least 2 subsets"):
        stats.kid_interval(real, fake, subsets=1)


def test_wilson_interval_matches_its_closed_form_and_known_values() -> None:
    """Wilson (1927): (p + z^2/2n ± z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n); 95/100 -> [0.8882, 0.9785]
    (Brown, Cai & DasGupta 2001, table values), and 0/n still has a positive upper end."""
    lo, hi = stats.wilson(95, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.8882, 0.9785)
    lo, hi = stats.wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (20 + 1.959964**2), rel=1e-6)  # z^2 / (n + z^2)


def test_delong_auroc_and_variance_by_brute_force() -> None:
    """AUROC = mean over (out, in) pairs of 1[out > in] + 1/2 1[out = in]; DeLong's variance is
    var(V10)/m + var(V10)/n with V10_i = mean_j psi(out_i, in_j), V01_j = mean_i psi(out_i, in_j)."""
    ins = torch.tensor([0.1, 0.4, 0.4, 0.2, 0.9, 0.3])
    outs = torch.tensor([0.4, 0.8, 0.35, 0.95, 0.4])
    psi = [[1.0 if o > i else 0.5 if o == i else 0.0 for i in ins.tolist()] for o in outs.tolist()]
    v10 = torch.tensor([sum(row) / len(ins) for row in psi], dtype=torch.float64)
    v01 = torch.tensor([sum(col) / len(outs) for col in zip(*psi)], dtype=torch.float64)
    auc = v10.mean().item()
    half = 1.959963984540054 * math.sqrt(v10.var().item() / len(outs) + v01.var().item() / len(ins))
    result = stats.auroc_delong(ins, outs)
    assert result["auroc"] == pytest.approx(auc) and result["auroc"] == pytest.approx(
        metrics.ood_metrics(ins, outs)["auroc"]
    )
    assert result["ci"][0] == pytest.approx(max(0.0, auc - half)) and result["ci"][1] == pytest.approx(
        min(1.0, auc + half)
    )


def test_mcnemar_exact_test_on_the_discordant_pairs() -> None:
    """Only discordant pairs count; p = 2 P[Binom(b + c, 1/2) <= min(b, c)]: b = 5, c = 1 gives
    2 (1 + 6) / 64 = 0.21875; no discordant pair gives p = 1."""
    a = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 1, 1], dtype=torch.bool)
    b = torch.tensor([0, 0, 0, 0, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    result = stats.mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (5, 1)
    assert result["p_value"] == pytest.approx(0.21875)
    assert stats.mcnemar(a, a)["p_value"] == 1.0


def test_welch_t_test_against_the_closed_form_for_four_degrees_of_freedom() -> None:
    # a = 1, 2, 3 and b = 4, 5, 6: difference -3, se^2 = 1/3 + 1/3, Welch-Satterthwaite df exactly 4,
    # where Student's t has a closed-form CDF: F(t) = 1/2 + (3/4) x (1 - x^2 / 3), x = t / sqrt(t^2 + 4).
    result = stats.welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    se = math.sqrt(2 / 3)
    x = (3 / se) / math.sqrt((3 / se) ** 2 + 4)
    assert result["df"] == pytest.approx(4.0)
    assert result["difference"] == pytest.approx(-3.0)
    assert result["p_value"] == pytest.approx(1 - 1.5 * x * (1 - x**2 / 3), rel=1e-6)  # 0.0213
    assert result["ci"] == pytest.approx([-3 - stats.T975[3] * se, -3 + stats.T975[3] * se], abs=1e-3)
    assert stats.welch([1.0], [2.0, 3.0]) is None and stats.welch([1.0, 1.0], [2.0, 2.0]) is None


def test_seed_mean_is_the_t_interval_with_n_minus_one_degrees_of_freedom() -> None:
    # 1, 2, 3: mean 2, sample sd 1, se 1/sqrt(3); Student's t 97.5 % quantile at 2 df is
    # sqrt(2) * q / sqrt(1 - q^2) with q = 2 * 0.975 - 1 (the closed-form t CDF at 2 df).
    q = 0.95
    t2 = math.sqrt(2) * q / math.sqrt(1 - q**2)  # 4.3027
    result = stats.seed_mean([1.0, 2.0, 3.0])
    assert result["mean"] == pytest.approx(2.0) and result["n"] == 3
    assert result["ci"] == pytest.approx([2 - t2 / math.sqrt(3), 2 + t2 / math.sqrt(3)], abs=1e-3)
    assert stats.seed_mean([5.0]) == {"mean": 5.0, "ci": None, "n": 1}
