"""Intervals and tests for the report: every headline number with its n and a 95 % interval.

* accuracies: the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it
  over the Wald interval, which fails near 0 and 1 — where a good classifier's accuracy sits);
* AUROC: DeLong et al.'s (1988) interval, from midranks (no resampling: instant at any n), and
  Newcombe's (2006) score interval where DeLong's collapses (AUROC 0 or 1); two detectors on the same
  images: DeLong's paired test; a mean AUROC over OOD sets: a percentile bootstrap over images;
* FID: a normal bootstrap over resamples of both feature sets (its sampling spread at this n);
* KID: the t-interval of independent unbiased estimates on disjoint subsets;
* two classifiers on the same images: McNemar's exact test on the discordant pairs (McNemar
  1947), the paired test for "is A's accuracy different from B's";
* two recipes over a few seeds each (learning-curve points): Welch's unequal-variance t-test
  (Welch 1947) on the per-seed accuracies, with the Welch–Satterthwaite degrees of freedom;
  one recipe over a few seeds: the t-interval of the per-seed values (``seed_mean``);
* a family of tests behind one verdict: Holm's (1979) step-down adjusted p-values (``holm``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
# Student's t 97.5 % quantiles for 1..30 degrees of freedom (for intervals from a few estimates).
T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def midranks(x: Tensor) -> Tensor:
    """1-based ranks of ``x`` (1-D) with ties given the mean of the positions they share."""
    order = x.argsort()
    sorted_x = x[order].contiguous()
    first = torch.searchsorted(sorted_x, sorted_x, right=False)
    last = torch.searchsorted(sorted_x, sorted_x, right=True)
    return torch.empty(len(x), dtype=torch.float64).scatter_(0, order, (first + last + 1).double() / 2)


def delong_components(in_scores: Tensor, out_scores: Tensor) -> tuple[Tensor, Tensor]:
    """DeLong et al.'s (1988) structural components, from midranks (Sun & Xu 2014):
    V10(out_i) = P(in < out_i) + P(in = out_i) / 2 for each outlier and V01(in_j) = P(out > in_j) +
    P(out = in_j) / 2 for each in-distribution input. Both average to the AUROC."""
    x, y = out_scores.double().flatten(), in_scores.double().flatten()
    m, n = len(x), len(y)
    combined = midranks(torch.cat([x, y]))
    return (combined[:m] - midranks(x)) / n, 1 - (combined[m:] - midranks(y)) / m


def _var(v: Tensor) -> float:
    return v.var().item() if len(v) > 1 else 0.0


def newcombe_score_interval(auc: float, n_in: int, n_out: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's (2006) score-type interval for the AUROC (Stat Med 25:559-573, "Confidence intervals for an
    effect size measure based on the Mann-Whitney statistic. Part 2: asymptotic methods and evaluation").

    The Wilson-like set {theta : |AUC - theta| <= z sqrt(V(theta))}, with Hanley & McNeil's (1982) variance
    under their exponential model in Newcombe's symmetric form (m - 1 and n - 1 replaced by N - 1,
    N = (m + n) / 2): V(theta) = theta (1 - theta) / (m n) [(2N - 1) - (3N - 3) / ((2 - theta)(1 + theta))].
    V vanishes only at theta = 0 and 1, so an AUROC of 1 gets a lower end below 1 (n = m = 100: 0.981).
    """
    big_n = (n_in + n_out) / 2

    def gap(theta: float) -> float:  # > 0 outside the interval
        v = theta * (1 - theta) / (n_in * n_out) * ((2 * big_n - 1) - (3 * big_n - 3) / ((2 - theta) * (1 + theta)))
        return (auc - theta) ** 2 - z * z * max(v, 0.0)

    def boundary(inside: float, outside: float) -> float:  # bisection between a point in and one out
        for _ in range(100):
            middle = (inside + outside) / 2
            inside, outside = (inside, middle) if gap(middle) > 0 else (middle, outside)
        return (inside + outside) / 2

    lo = 0.0 if gap(0.0) <= 0 or auc <= 0 else boundary(auc, 0.0)
    hi = 1.0 if gap(1.0) <= 0 or auc >= 1 else boundary(auc, 1.0)
    return (lo, hi)


def auroc_delong(in_scores: Tensor, out_scores: Tensor) -> dict[str, Any]:
    """AUROC (OOD = positive, higher = more anomalous) with DeLong et al.'s (1988) 95 % interval.

    AUROC = P(out > in) + P(out = in) / 2, from midranks (ties count one half, as in the ROC's
    trapezoid). Its variance is S10 / m + S01 / n, the variances of the structural components
    V10(out_i) = P(in < out_i) and V01(in_j) = P(out > in_j) (Sun & Xu 2014's midrank form).

    Where that variance is zero (every outlier above every input, AUROC 1; all below, 0; or every score
    tied) the Wald interval would collapse to a point, [1, 1]: there the interval is Newcombe's (2006)
    score-type interval (``newcombe_score_interval``), which does not (``ci_method`` says which). Elsewhere
    it is DeLong's, unchanged. Caveat: just inside the boundary (a few discordant pairs) DeLong's interval
    is still narrow; its coverage there is below 95 % (Newcombe 2006).
    """
    v10, v01 = delong_components(in_scores, out_scores)
    m, n = len(v10), len(v01)
    auc = v10.mean().item()
    variance = _var(v10) / m + _var(v01) / n
    if variance > 0:
        half = Z95 * math.sqrt(variance)
        ci, method = (max(0.0, auc - half), min(1.0, auc + half)), "delong"
    else:
        ci, method = newcombe_score_interval(auc, n, m), "newcombe_score"
    return {"auroc": auc, "ci": ci, "ci_method": method, "n_in": n, "n_out": m}


def _normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def delong_paired(
    in_a: dict[str, Tensor] | Tensor,
    out_a: dict[str, Tensor] | Tensor,
    in_b: dict[str, Tensor] | Tensor,
    out_b: dict[str, Tensor] | Tensor,
) -> dict[str, Any]:
    """DeLong et al.'s (1988) paired test of equal AUROC for two detectors scoring the SAME images,
    on one OOD set or on the mean AUROC over several sets that share their in-distribution images.

    With a difference D = mean_s (AUC_a,s - AUC_b,s) over the sets s, its variance is the sum of the
    variances of the averaged structural-component differences: for each set's outliers,
    var_i(V10_a,s,i - V10_b,s,i) / (k^2 m_s), and for the in-distribution images (the same j in every
    set), var_j(mean_s (V01_a,s,j - V01_b,s,j)) / n. z = D / sqrt(var); two-sided normal p-value.
    Images are paired by position: outliers of set s and in-distribution inputs, in the same order for
    both detectors. Zero variance (both detectors perfect, say) gives p = 1 if D = 0, else 0.

    ``in_*`` is the in-distribution scores (a tensor), ``out_*`` one tensor (one set) or {set: tensor}.
    """
    if isinstance(out_a, Tensor):
        out_a, out_b = {"set": out_a}, {"set": out_b}  # type: ignore[dict-item]
    assert isinstance(out_a, dict) and isinstance(out_b, dict) and out_a.keys() == out_b.keys()
    k = len(out_a)
    difference, variance, v01_difference = 0.0, 0.0, None
    for name in out_a:
        v10_a, v01_a = delong_components(in_a, out_a[name])  # type: ignore[arg-type]
        v10_b, v01_b = delong_components(in_b, out_b[name])  # type: ignore[arg-type]
        difference += (v10_a.mean() - v10_b.mean()).item() / k
        variance += _var(v10_a - v10_b) / (k * k * len(v10_a))
        step = (v01_a - v01_b) / k
        v01_difference = step if v01_difference is None else v01_difference + step
    assert v01_difference is not None
    variance += _var(v01_difference) / len(v01_difference)
    if variance <= 0:
        return {"difference": difference, "z": None, "p_value": 1.0 if difference == 0 else 0.0}
    z = difference / math.sqrt(variance)
    return {"difference": difference, "z": z, "p_value": _normal_two_sided_p(z)}


def holm(p_values: list[float] | dict[Any, float]) -> list[float] | dict[Any, float]:
    """Holm's (1979) step-down adjusted p-values for one family of tests (Holm, "A simple sequentially
    rejective multiple test procedure", Scand J Statist 6:65-70), controlling the family-wise error rate.

    Sorted ascending, p_(1) <= ... <= p_(K): adjusted p_(i) = max_{j <= i} min(1, (K - j + 1) p_(j)),
    monotone in the order of the raw p-values and capped at 1; rejecting where the adjusted p < alpha is
    Holm's procedure at level alpha. Takes a list (returns one in the same order) or a dict (returns one
    with the same keys): e.g. the McNemar tests of every pair of models, the paired DeLong tests of one
    OOD set, or the learning-curve comparisons behind one verdict.
    """
    if isinstance(p_values, dict):
        keys = list(p_values)
        return dict(zip(keys, holm([p_values[key] for key in keys]), strict=True))
    k = len(p_values)
    adjusted = [0.0] * k
    running = 0.0
    for rank, index in enumerate(sorted(range(k), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (k - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


BOOTSTRAP_REPLICATES = 1000  # percentile intervals need ~1 000 (Efron & Tibshirani 1993, section 19.3)


def mean_auroc_bootstrap(
    in_scores: Tensor,
    out_scores: dict[str, Tensor],
    groups: dict[str, list[str]],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals (Efron & Tibshirani 1993, ch. 13) on mean AUROCs over groups
    of OOD sets: {group: [low, high]} for each non-empty group of ``groups`` ({group: [set names]}).

    Each replicate resamples images with replacement within each sample: the in-distribution inputs once
    (every set is scored against the same inputs, so the sets' AUROCs share that noise and the replicate
    keeps it shared), and each set's outliers independently; it recomputes every set's AUROC and averages
    them per group. Draws from one seeded generator, in this order per replicate chunk: the inputs'
    indices, then each set's in ``out_scores`` order; ``replicates`` replicates (1 000 by default).

    Limitation: a set whose outliers all score above all inputs gives AUROC 1 in every replicate, so it
    adds no width (the bootstrap's version of DeLong's collapse); a group made only of such sets gets
    [1, 1]. Its sets' own intervals (``auroc_delong``, Newcombe's at 1) then say how far below 1 it may be.
    """
    generator = torch.Generator().manual_seed(seed)
    ins = in_scores.double().flatten()
    order = ins.argsort()
    in_sorted, position = ins[order], torch.empty_like(order).scatter_(0, order, torch.arange(len(ins)))
    # Each outlier's count of inputs below it (and at or below it), as positions in the sorted inputs:
    # a replicate's count is then the resampled inputs' cumulative count at that position (no re-sorting).
    outs = {name: o.double().flatten() for name, o in out_scores.items()}
    bounds = {
        name: (torch.searchsorted(in_sorted, o, right=False), torch.searchsorted(in_sorted, o, right=True))
        for name, o in outs.items()
    }
    groups = {g: sets for g, sets in groups.items() if sets}
    means: dict[str, list[Tensor]] = {g: [] for g in groups}
    for start in range(0, replicates, 250):  # chunks bound the memory: (250, n) indices at a time
        b = min(250, replicates - start)
        drawn = position[torch.randint(len(ins), (b, len(ins)), generator=generator)]
        counts = torch.zeros(b, len(ins) + 1, dtype=torch.float64).scatter_add_(
            1, drawn + 1, torch.ones(b, len(ins), dtype=torch.float64)
        )
        below = counts.cumsum(1)  # below[:, k]: resampled inputs among the k smallest
        per_set = {}
        for name, o in outs.items():
            pick = torch.randint(len(o), (b, len(o)), generator=generator)
            left, right = bounds[name]
            pairs = below.gather(1, left[pick]) + below.gather(1, right[pick])  # ties count one half
            per_set[name] = pairs.sum(1) / (2 * len(ins) * len(o))
        for g, sets in groups.items():
            means[g].append(torch.stack([per_set[s] for s in sets]).mean(0))
    quantiles = torch.tensor([0.025, 0.975], dtype=torch.float64)
    return {g: torch.quantile(torch.cat(v), quantiles).tolist() for g, v in means.items()}


def _log_binom_pmf(k: int, n: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)


def _t975(df: int) -> float:
    """Student's t 97.5 % quantile at ``df`` degrees of freedom (the table to 30, scipy beyond)."""
    if df <= len(T975):
        return T975[df - 1]
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, df))


def seed_mean(values: list[float]) -> dict[str, Any]:
    """Mean of one recipe's per-seed results with its 95 % t-interval (n - 1 degrees of freedom):
    the spread between seeds is the recipe's own; None for the interval below two seeds."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci": None, "n": n}
    half = _t975(n - 1) * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
    return {"mean": mean, "ci": [mean - half, mean + half], "n": n}


def welch(a: list[float], b: list[float]) -> dict[str, Any] | None:
    """mean(a) - mean(b) with its 95 % interval and the two-sided p-value of Welch's t-test; None
    when a side has fewer than two values or neither side varies (no test is possible)."""
    from scipy.stats import t as student_t

    if min(len(a), len(b)) < 2:
        return None
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((v - mean_a) ** 2 for v in a) / (len(a) - 1) / len(a)  # squared standard errors
    var_b = sum((v - mean_b) ** 2 for v in b) / (len(b) - 1) / len(b)
    if var_a + var_b == 0:
        return None
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    difference, half = mean_a - mean_b, float(student_t.ppf(0.975, df)) * se
    p_value = float(2 * student_t.sf(abs(difference) / se, df))
    return {"difference": difference, "ci": [difference - half, difference + half], "p_value": p_value, "df": df}


def mcnemar(correct_a: Tensor, correct_b: Tensor) -> dict[str, float | int]:
    """McNemar's exact (binomial) test of equal accuracy on the same images.

    Only the discordant pairs count: b = A right and B wrong, c = A wrong and B right; under the
    null each discordant pair goes either way with probability 1/2, so
    p = min(1, 2 P[Binomial(b + c, 1/2) <= min(b, c)]).
    """
    correct_a, correct_b = correct_a.bool(), correct_b.bool()
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    n = b + c
    if n == 0:
        return {"a_only": b, "b_only": c, "p_value": 1.0}
    tail = sum(math.exp(_log_binom_pmf(k, n)) for k in range(min(b, c) + 1))
    return {"a_only": b, "b_only": c, "p_value": min(1.0, 2 * tail)}


def _frechet(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), batched; tr (S1 S2)^(1/2) is the sum of the
    square roots of the eigenvalues of S1 S2 (real and >= 0 for covariance matrices)."""
    eigenvalues = torch.linalg.eigvals(cov1 @ cov2).real.clamp(min=0)
    trace_sqrt = eigenvalues.sqrt().sum(-1)
    return (
        ((mu1 - mu2) ** 2).sum(-1)
        + cov1.diagonal(dim1=-2, dim2=-1).sum(-1)
        + cov2.diagonal(dim1=-2, dim2=-1).sum(-1)
        - 2 * trace_sqrt
    )


def _moments(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance over the second-to-last dimension, batched."""
    mu = features.mean(-2)
    centred = features - mu.unsqueeze(-2)
    return mu, centred.transpose(-1, -2) @ centred / (features.shape[-2] - 1)


def fid(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance (Heusel et al. 2017) between two sets of features (N, d)."""
    return _frechet(*_moments(real.double()), *_moments(fake.double())).item()


def _cubic_kernel(a: Tensor, b: Tensor) -> Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2(k_rr: Tensor, k_ff: Tensor, k_rf: Tensor) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012) from the kernel matrices of two sets."""
    m, n = len(k_rr), len(k_ff)
    off = lambda k: (k.sum() - k.diagonal().sum()).item()  # noqa: E731
    return off(k_rr) / (m * (m - 1)) + off(k_ff) / (n * (n - 1)) - 2 * k_rf.mean().item()


def kid(real: Tensor, fake: Tensor) -> float:
    """Kernel inception distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic kernel
    k(x, y) = (x.y / d + 1)^3, on all pairs (no subsets)."""
    real, fake = real.double(), fake.double()
    return _mmd2(_cubic_kernel(real, real), _cubic_kernel(fake, fake), _cubic_kernel(real, fake))


def kid_interval(real: Tensor, fake: Tensor, subsets: int = 10, seed: int = 0) -> dict[str, Any]:
    """KID as the mean of ``subsets`` unbiased estimates on disjoint random subsets of both sets, and
    its 95 % t-interval: the estimates are independent, so their spread is the sampling error.

    m estimates give a mean +- t_{0.975, m - 1} s / sqrt(m): the sample sd s spends one of the m degrees
    of freedom on the mean (Student 1908), so the quantile is at m - 1 of them (10 subsets: 2.262, not 2.228)."""
    if subsets < 2:
        raise ValueError(f"kid_interval needs at least 2 subsets for an interval, got {subsets}")
    generator = torch.Generator().manual_seed(seed)
    real, fake = real.double(), fake.double()
    ir, jf = torch.randperm(len(real), generator=generator), torch.randperm(len(fake), generator=generator)
    values = torch.tensor(
        [
            _mmd2(_cubic_kernel(r, r), _cubic_kernel(f, f), _cubic_kernel(r, f))
            for r, f in zip(real[ir].chunk(subsets), fake[jf].chunk(subsets), strict=True)
        ],
        dtype=torch.float64,
    )
    mean, half = values.mean().item(), _t975(subsets - 1) * values.std().item() / math.sqrt(subsets)
    return {"kid": mean, "kid_ci": [mean - half, mean + half], "kid_subsets": subsets}


def fid_interval(real: Tensor, fake: Tensor, resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """FID on all features and a normal-bootstrap 95 % interval, FID ± 1.96 sd over resamples of both
    sets: the sampling spread at this n. FID is biased upward at finite n (the bias shrinks as 1/n),
    so a model is compared with the real-data floor measured at the same n, not with zero."""
    real, fake = real.double(), fake.double()
    generator = torch.Generator().manual_seed(seed)
    values = []
    for chunk in range(0, resamples, 50):
        r = min(50, resamples - chunk)
        ir = torch.randint(len(real), (r, len(real)), generator=generator)
        jf = torch.randint(len(fake), (r, len(fake)), generator=generator)
        values.append(_frechet(*_moments(real[ir]), *_moments(fake[jf])))
    value, half = fid(real, fake), Z95 * torch.cat(values).std().item()
    return {"fid": value, "fid_ci": [max(0.0, value - half), value + half]}
