"""The primer's claims, one row each, decided from a benchmark's report.json and curves.json.

Every verdict is computed here from the numbers, by one rule written down before the numbers are
read (results/protocol.md): the best model of one kind against the best of the other, and a
difference counts only where its 95 % intervals do not overlap (Wilson for accuracies, DeLong for
AUROC, bootstrap for FID and the deletion gain) or, for the learning curves, where Welch's test over
seeds rejects at 0.05. Otherwise the verdict is "not distinguishable". README's findings table is
this module's output (``python benchmarks/readme_tables.py --readme README.md``), never typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dgbench.evaluation.stats import holm, welch

HOLDS, CONTRADICTED, EVEN = "holds", "contradicted", "not distinguishable"
MASKED = "_masked"  # the benchmark's name for a discriminative preset trained with the VAE's masks


@dataclass(frozen=True)
class Finding:
    claim: str  # the primer's claim, in its direction ("generative models need less data")
    verdict: str
    numbers: str  # the deciding numbers with their intervals and n
    link: str  # where the numbers are (relative to the results folder)


@dataclass(frozen=True)
class Cell:
    model: str
    value: float
    ci: tuple[float, float] | None
    n: int | None = None

    def text(self, fmt: Callable[[float], str], unit: str = "") -> str:
        ci = f" [{fmt(self.ci[0])}, {fmt(self.ci[1])}]" if self.ci else ""
        n = f" (n = {self.n})" if self.n else ""
        return f"{self.model} {fmt(self.value)}{ci}{unit}{n}"


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def num(v: float) -> str:
    return f"{v:.3f}"


def order(a: Cell, b: Cell, higher_is_better: bool = True) -> str:
    """'>' where a is better than b beyond both intervals, '<' where worse, '~' otherwise."""
    if a.ci is None or b.ci is None:
        return "~"
    sign = 1 if higher_is_better else -1
    if a.ci[0] > b.ci[1]:
        return ">" if sign > 0 else "<"
    if a.ci[1] < b.ci[0]:
        return "<" if sign > 0 else ">"
    return "~"


def verdict(relation: str) -> str:
    return {">": HOLDS, "<": CONTRADICTED}.get(relation, EVEN)


def best(
    models: dict[str, Any], kinds: tuple[str, ...], cell: Callable[..., Cell | None], lowest: bool = False, **kw: Any
) -> Cell:
    """The kind's best cell: the highest value, or the lowest where lower is better (FID)."""
    cells = [c for name, m in models.items() if m["kind"] in kinds and (c := cell(name, m, **kw)) is not None]
    return (min if lowest else max)(cells, key=lambda c: c.value)


def accuracy(name: str, m: dict[str, Any]) -> Cell | None:
    c = m["suites"].get("classification")
    return Cell(name, c["accuracy"], tuple(c["accuracy_ci"]), c["n"]) if c else None


def missing(name: str, m: dict[str, Any], masked: bool | None = None) -> Cell | None:
    mf = m["suites"].get("missing_features")
    if not mf or (masked is not None and name.endswith(MASKED) != masked):
        return None
    r = mf["random_50"]
    return Cell(name, r["accuracy"], tuple(r["accuracy_ci"]), mf["n"])


def deletion_gain(name: str, m: dict[str, Any]) -> Cell | None:
    i = m["suites"].get("interpretability")
    return Cell(name, i["deletion_gain_auc"], tuple(i["deletion_gain_auc_ci"]), i["n"]) if i else None


def fid(name: str, m: dict[str, Any]) -> Cell | None:
    q = m["suites"].get("sample_quality")
    return Cell(name, q["fid"], tuple(q["fid_ci"]), q["n"]) if q else None


def ood(name: str, m: dict[str, Any], group: str) -> Cell | None:
    """The declared score's AUROC on the group's deciding set: the mean over the group's sets where the
    report gives it an interval, else the set with an interval that stands for the group (the other
    dataset for far, the letters for near)."""
    o = m["suites"].get("ood")
    if not o:
        return None
    score = o["scores"][o["primary_score"]]
    interval = (score.get("mean_auroc_ci") or {}).get(group)
    if interval:
        return Cell(f"{name} (mean of {group} sets)", score["mean_auroc"][group], tuple(interval), o["n"])
    ood_set = "letters" if group == "near" else next(k for k in o["far"] if "noise" not in k)
    s = score[ood_set]
    return Cell(f"{name} (vs {ood_set})", s["auroc"], tuple(s["auroc_ci"]), s.get("n_out"))


def curve(points: list[dict[str, Any]], kinds: tuple[str, ...], size: int) -> tuple[str, list[float]]:
    """The kind's family with the highest mean accuracy at ``size`` labels, and its per-seed values."""
    by: dict[str, list[float]] = {}
    for p in points:
        if p["kind"] in kinds and p["train_size"] == size:
            by.setdefault(p["family"], []).append(p["test_acc"])
    family = max(by, key=lambda f: sum(by[f]) / len(by[f]))
    return family, by[family]


def welch_rows(*pairs: tuple[tuple[str, list[float]], tuple[str, list[float]]]) -> list[tuple[str, str]]:
    """(verdict, text) per pair from Welch's test over seeds; with several pairs (one claim resting on
    several tests) the p-values are Holm-adjusted within the claim before they are compared with 0.05."""
    tests = [welch(a[1], b[1]) for a, b in pairs]
    raw = {i: t["p_value"] for i, t in enumerate(tests) if t is not None}
    adjusted = holm(raw) if len(raw) > 1 else raw
    mean = lambda v: 100 * sum(v) / len(v)  # noqa: E731
    rows = []
    for i, ((a, b), test) in enumerate(zip(pairs, tests, strict=True)):
        text = f"{a[0]} {mean(a[1]):.1f} % vs {b[0]} {mean(b[1]):.1f} % ({len(a[1])} vs {len(b[1])} seeds)"
        if test is None:
            rows.append((EVEN, text))
            continue
        d, ci = 100 * test["difference"], test["ci"]
        text += f": {d:+.1f} points [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}], Welch p = {raw[i]:.3f}"
        text += f" (Holm {adjusted[i]:.3f})" if len(raw) > 1 else ""
        rows.append(((verdict(">" if d > 0 else "<") if adjusted[i] < 0.05 else EVEN), text))
    return rows


def findings(report: dict[str, Any], curves: dict[str, Any] | None) -> list[Finding]:
    models = report["models"]
    gen, disc, hyb = ("generative",), ("discriminative",), ("hybrid",)
    rows: list[Finding] = []

    kinds = sorted({m["kind"] for m in models.values()})
    learns = "; ".join(
        f"{k}: {next(m['learns'] for m in models.values() if m['kind'] == k)} "
        f"({sum(m['kind'] == k for m in models.values())} models)"
        for k in kinds
    )
    rows.append(Finding("they learn different things", f"{HOLDS} (by construction)", learns, "report.md"))

    samplers = {
        k: sorted(n for n, m in models.items() if m["kind"] == k and "sample" in m["capabilities"]) for k in kinds
    }
    all_gen = all("sample" in m["capabilities"] for m in models.values() if m["kind"] == "generative")
    g = best(models, gen + hyb, fid, lowest=True)
    rows.append(
        Finding(
            "only generative models generate",
            HOLDS if all_gen and not samplers.get("discriminative") else CONTRADICTED,
            f"{len(samplers.get('generative', []))} of {sum(m['kind'] == 'generative' for m in models.values())} "
            f"generative models sample, {len(samplers.get('discriminative', []))} discriminative; "
            f"best FID {g.text(lambda v: f'{v:.2f}')}",
            "report.md",
        )
    )

    a, b = best(models, disc, accuracy), best(models, gen, accuracy)
    rows.append(
        Finding(
            "discriminative models classify more accurately",
            verdict(order(a, b)),
            f"{a.text(pct, ' %')} vs {b.text(pct, ' %')}",
            "report.md",
        )
    )

    if curves and curves.get("points"):
        [(v, text)] = welch_rows((curve(curves["points"], gen, 100), curve(curves["points"], disc, 100)))
        rows.append(Finding("generative models need less data (100 labels)", v, text, "curves.md"))

    plain, masked = best(models, disc, missing, masked=False), best(models, disc, missing, masked=True)
    g = best(models, gen, missing)
    rel_plain, rel_masked = order(g, plain), order(g, masked)
    v = (
        verdict(rel_plain)
        if rel_plain == rel_masked
        else f"{verdict(rel_plain)} against plain classifiers, " + (f"{verdict(rel_masked)} against mask-trained ones")
    )
    rows.append(
        Finding(
            "generative models cope better with missing features (50 % missing)",
            v,
            f"{g.text(pct, ' %')} vs {plain.text(pct, ' %')}; mask-trained {masked.text(pct, ' %')}",
            "report.md",
        )
    )

    g, d = best(models, gen, deletion_gain), best(models, disc, deletion_gain)
    rows.append(
        Finding(
            "generative models are more interpretable (deletion gain)",
            verdict(order(g, d)),
            f"{g.text(num)} vs {d.text(num)}",
            "report.md",
        )
    )

    times = {
        k: [(m.get("training") or {}).get("train_time_s") for m in models.values() if m["kind"] == k] for k in kinds
    }
    lo = {k: min(t for t in v if t is not None) for k, v in times.items()}
    hi = {k: max(t for t in v if t is not None) for k, v in times.items()}
    v = (
        HOLDS
        if hi["discriminative"] < lo["generative"]
        else CONTRADICTED
        if hi["generative"] < lo["discriminative"]
        else "depends on the family"
    )
    rows.append(
        Finding(
            "generative models cost more to train",
            v,
            f"training s: generative {lo['generative']:.3g}-{hi['generative']:.3g}, "
            f"discriminative {lo['discriminative']:.0f}-{hi['discriminative']:.0f} (one run each, no interval)",
            "report.md",
        )
    )

    for group in ("far", "near"):
        g, d = best(models, gen, ood, group=group), best(models, disc, ood, group=group)
        rows.append(
            Finding(
                f"generative models detect outliers ({group}, AUROC)",
                verdict(order(g, d)),
                f"{g.text(num)} vs {d.text(num)}",
                "report.md",
            )
        )

    if curves and curves.get("points"):
        h = curve(curves["points"], hyb, 100)
        parts = welch_rows(*[(h, curve(curves["points"], kinds_, 100)) for kinds_ in (disc, gen)])
        v = (
            HOLDS
            if all(p[0] == HOLDS for p in parts)
            else EVEN
            if not any(p[0] == CONTRADICTED for p in parts)
            else CONTRADICTED
        )
        rows.append(
            Finding(
                "generative pretraining helps a classifier (100 labels)", v, "; ".join(p[1] for p in parts), "curves.md"
            )
        )
    return rows


def markdown(rows: list[Finding], folder: str) -> list[str]:
    lines = ["| the primer's claim | verdict | deciding numbers (95 % intervals) | where |", "|---|---|---|---|"]
    for r in rows:
        numbers = r.numbers.replace("|", "\\|")  # p(y|x) inside a table cell
        lines.append(f"| {r.claim} | **{r.verdict}** | {numbers} | [{r.link}]({folder}/{r.link}) |")
    return lines
