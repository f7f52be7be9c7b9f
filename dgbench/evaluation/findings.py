"""The primer's claims, one row each, decided from a benchmark's report.json and curves.json.

Every verdict is computed here from the numbers, by one rule written down before the numbers are
read (results/protocol.md): the best model of one kind against the best of the other, and a
difference counts only where its 95 % intervals do not overlap (Wilson for accuracies, DeLong for
AUROC, bootstrap for FID and the deletion gain) or, for the learning curves, where Welch's test over
seeds rejects at 0.05. Otherwise the verdict is "not distinguishable". A family trained at several
seeds (the benchmark's <results>/seeds report) enters as one cell over its seeds (:func:`combined`); a
verdict that rests on a single checkpoint says so. README's findings table is this module's output (``python benchmarks/readme_tables.py --readme README.md``), never typed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dgbench.evaluation.curves import accuracies, spectrum_tests
from dgbench.evaluation.stats import seed_mean, welch
from dgbench.runtime import write_json

HOLDS, CONTRADICTED, EVEN = "holds", "contradicted", "not distinguishable"
MASKED = "_masked"  # how reports written before trained_on_missing_pixels name a mask-trained preset


class Missing(Exception):
    """The report lacks what a claim needs (a kind with no model that measures it): the row is left out."""


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
    seeds: int = 1  # training runs behind the cell

    def text(self, fmt: Callable[[float], str], unit: str = "") -> str:
        ci = f" [{fmt(self.ci[0])}, {fmt(self.ci[1])}]" if self.ci else ""
        runs = f"{self.seeds} seeds" if self.seeds > 1 else "one checkpoint"
        n = f" (n = {self.n}, {runs})" if self.n else f" ({runs})"
        return f"{self.model} {fmt(self.value)}{ci}{unit}{n}"


def combined(cells: list[Cell]) -> Cell:
    """One cell from a family's k training seeds, each measured on the same evaluation images: the mean
    over seeds, and an interval that adds the spread over seeds (Student's t at k - 1 degrees of
    freedom on the mean) to the evaluation interval (the seeds' mean distance from value to each end;
    not shrunk by k, since the seeds share the test images), in quadrature on each side."""
    k, over_seeds = len(cells), seed_mean([c.value for c in cells])
    mean, seed_half = over_seeds["mean"], over_seeds["ci"][1] - over_seeds["mean"]
    if any(c.ci is None for c in cells):
        return Cell(cells[0].model, mean, None, cells[0].n, k)
    below = (seed_half**2 + (sum(c.value - c.ci[0] for c in cells) / k) ** 2) ** 0.5
    above = (seed_half**2 + (sum(c.ci[1] - c.value for c in cells) / k) ** 2) ** 0.5
    return Cell(cells[0].model, mean, (mean - below, mean + above), cells[0].n, k)


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


def verdict(relation: str, *cells: Cell) -> str:
    """The verdict of ``relation``; with the deciding ``cells``, it says which rest on one checkpoint."""
    return {">": HOLDS, "<": CONTRADICTED}.get(relation, EVEN) + conditional(*cells)


def conditional(*cells: Cell) -> str:
    """', conditional on one checkpoint of ...' for the deciding cells trained once, else ''."""
    single = [c.model.split(" (")[0] for c in cells if c.seeds < 2]
    return f", conditional on one checkpoint of {' and '.join(single)}" if single else ""


def best(
    models: dict[str, Any], kinds: tuple[str, ...], cell: Callable[..., Cell | None], lowest: bool = False, **kw: Any
) -> Cell:
    """The kind's best cell: the highest value, or the lowest where lower is better (FID). A model with
    several training seeds (``seed_models``, from :func:`findings`) is one :func:`combined` cell."""

    def measured(name: str, m: dict[str, Any]) -> Cell | None:
        replicas = [c for r in m.get("seed_models") or [] if (c := cell(name, r, **kw)) is not None]
        return combined(replicas) if len(replicas) > 1 else cell(name, m, **kw)

    cells = [c for name, m in models.items() if m["kind"] in kinds and (c := measured(name, m)) is not None]
    if not cells:
        raise Missing(f"no {'/'.join(kinds)} model measures it")
    return (min if lowest else max)(cells, key=lambda c: c.value)


def accuracy(name: str, m: dict[str, Any]) -> Cell | None:
    c = m["suites"].get("classification")
    return Cell(name, c["accuracy"], tuple(c["accuracy_ci"]), c["n"]) if c else None


def missing(name: str, m: dict[str, Any], masked: bool | None = None) -> Cell | None:
    mf = m["suites"].get("missing_features")
    trained_on_masks = m.get("trained_on_missing_pixels", name.endswith(MASKED))  # older reports: the name
    if not mf or (masked is not None and trained_on_masks != masked):
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


def curve(points: list[dict[str, Any]], kinds: tuple[str, ...], size: str) -> tuple[str, list[float]]:
    """The kind's family with the highest mean accuracy (%) at ``size`` labels, and its per-seed values."""
    kind_of = {p["family"]: p["kind"] for p in points}
    found = {f: v for (f, n), v in accuracies(points).items() if n == size and kind_of[f] in kinds}
    if not found:
        raise Missing(f"no {'/'.join(kinds)} curve at {size} labels")
    family = max(found, key=lambda f: sum(found[f]) / len(found[f]))
    return family, found[family]


def welch_text(test: dict[str, Any]) -> str:
    """One comparison of :func:`dgbench.evaluation.curves.spectrum_tests` (or a bare Welch test)."""
    d, ci = test["difference"], test["ci"]
    text = f"{d:+.1f} points [{ci[0]:+.1f}, {ci[1]:+.1f}], Welch p = {test['p_value']:.3f}"
    return text + (f" (Holm {test['p_holm']:.3f})" if "p_holm" in test else "")


def decided(test: dict[str, Any] | None, p_key: str = "p_value") -> str:
    if test is None or test[p_key] >= 0.05:
        return EVEN
    return verdict(">" if test["difference"] > 0 else "<")


def versus(models: dict[str, Any], claim: str, first: str, measure: Callable[..., Cell | None], fmt: Callable[[float], str],
           unit: str = "", **kw: Any) -> Finding:  # fmt: skip
    """The claim that the best ``first``-kind model beats the best of the other pure kind on ``measure``."""
    other = "discriminative" if first == "generative" else "generative"
    a, b = best(models, (first,), measure, **kw), best(models, (other,), measure, **kw)
    return Finding(claim, verdict(order(a, b), a, b), f"{a.text(fmt, unit)} vs {b.text(fmt, unit)}", "report.md")


def learns_row(models: dict[str, Any]) -> Finding:
    kinds = sorted({m["kind"] for m in models.values()})
    learns = "; ".join(
        f"{k}: {next(m['learns'] for m in models.values() if m['kind'] == k)} "
        f"({sum(m['kind'] == k for m in models.values())} models)"
        for k in kinds
    )
    return Finding("they learn different things", f"{HOLDS} (by construction)", learns, "report.md")


def generate_row(models: dict[str, Any]) -> Finding:
    count = {k: [m for m in models.values() if m["kind"] == k] for k in ("generative", "discriminative")}
    sampling = {k: sum("sample" in m["capabilities"] for m in v) for k, v in count.items()}
    holds = sampling["generative"] == len(count["generative"]) and not sampling["discriminative"]
    g = best(models, ("generative", "hybrid"), fid, lowest=True)
    text = (
        f"{sampling['generative']} of {len(count['generative'])} generative models sample, "
        f"{sampling['discriminative']} discriminative; best FID {g.text(lambda v: f'{v:.2f}')}"
    )
    return Finding("only generative models generate", HOLDS if holds else CONTRADICTED, text, "report.md")


def data_row(points: list[dict[str, Any]]) -> Finding:
    (g, a), (d, b) = curve(points, ("generative",), "100"), curve(points, ("discriminative",), "100")
    test = welch(a, b)
    text = f"{g} {sum(a) / len(a):.1f} % vs {d} {sum(b) / len(b):.1f} % ({len(a)} vs {len(b)} seeds)"
    text += f": {welch_text(test)}" if test else ""
    return Finding("generative models need less data (100 labels)", decided(test), text, "curves.md")


def missing_row(models: dict[str, Any]) -> Finding:
    disc = ("discriminative",)
    plain, masked = best(models, disc, missing, masked=False), best(models, disc, missing, masked=True)
    g = best(models, ("generative",), missing)
    rel_plain, rel_masked = order(g, plain), order(g, masked)
    v = verdict(rel_plain)
    if rel_plain != rel_masked:
        v = f"{v} against plain classifiers, {verdict(rel_masked)} against mask-trained ones"
    v += conditional(g, plain, *([masked] if rel_plain != rel_masked else []))
    text = f"{g.text(pct, ' %')} vs {plain.text(pct, ' %')}; mask-trained {masked.text(pct, ' %')}"
    return Finding("generative models cope better with missing features (50 % missing)", v, text, "report.md")


def cost_row(models: dict[str, Any]) -> Finding:
    times = {}
    for k in ("generative", "discriminative"):
        values = [t for m in models.values() if m["kind"] == k if (t := (m.get("training") or {}).get("train_time_s"))]
        if not values:
            raise Missing(k)
        times[k] = (min(values), max(values))
    (g_lo, g_hi), (d_lo, d_hi) = times["generative"], times["discriminative"]
    v = HOLDS if d_hi < g_lo else CONTRADICTED if g_hi < d_lo else "depends on the family"
    text = f"training s: generative {g_lo:.3g}-{g_hi:.3g}, discriminative {d_lo:.3g}-{d_hi:.3g} (one run each, no interval)"
    return Finding("generative models cost more to train", v, text, "report.md")


def findings(
    report: dict[str, Any], curves: dict[str, Any] | None, seeds: dict[str, Any] | None = None
) -> list[Finding]:
    """One row per primer claim, in the primer's order; a claim the report cannot decide is left out.
    ``seeds``: the report of the seeded families' training seeds on the deciding suites, models named
    ``<family>`` and ``<family>@s<seed>`` (benchmarks/primer.py); each such family's cells combine them."""
    replicas: dict[str, list[dict[str, Any]]] = {}
    for name, m in ((seeds or {}).get("models") or {}).items():
        replicas.setdefault(name.split("@")[0], []).append(m)
    models = {name: {**m, "seed_models": replicas.get(name, [])} for name, m in report["models"].items()}
    points = (curves or {}).get("points") or []
    builders: list[Callable[[], Finding]] = [
        lambda: learns_row(models),
        lambda: generate_row(models),
        lambda: versus(models, "discriminative models classify more accurately", "discriminative", accuracy, pct, " %"),
        lambda: data_row(points),
        lambda: missing_row(models),
        lambda: versus(models, "generative models are more interpretable (deletion gain)", "generative", deletion_gain, num),
        lambda: cost_row(models),
        *(
            lambda group=group: versus(models, f"generative models detect outliers ({group}, AUROC)", "generative", ood, num, group=group)
            for group in ("far", "near")
        ),
        lambda: spectrum_row(points),
    ]  # fmt: skip
    rows = []
    for build in builders:
        try:
            rows.append(build())
        except Missing:
            continue
    return rows


def spectrum_row(points: list[dict[str, Any]]) -> Finding:
    """The best hybrid at 100 labels against the best of each pure kind, on Holm-adjusted p over every
    comparison of the curves (:func:`dgbench.evaluation.curves.spectrum_tests`: the claim's family)."""
    tests = spectrum_tests(points)
    hybrid = curve(points, ("hybrid",), "100")[0]
    mine = [t for t in tests if t["hybrid"] == hybrid and t["size"] == "100"]
    verdicts = {decided(t, "p_holm") for t in mine}
    v = HOLDS if verdicts == {HOLDS} else CONTRADICTED if CONTRADICTED in verdicts else EVEN
    text = "; ".join(f"{hybrid} vs {t['rival']}: {welch_text(t)}" for t in mine)
    text += f" (Holm over all {len(tests)} comparisons of the curves)"
    return Finding("generative pretraining helps a classifier (100 labels)", v, text, "curves.md")


def since(row: Finding, previous: dict[str, str] | None) -> str:
    """What changed for ``row`` since the run before: its verdict then, or that it held."""
    if previous is None:
        return "–"  # no earlier run decided by this rule
    if row.claim not in previous:
        return "new claim"
    return "unchanged" if previous[row.claim] == row.verdict else f"was: {previous[row.claim]}"


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """A benchmark's report.json, curves.json and seeds/report.json (None where absent): what
    :func:`findings` reads."""
    report, curves, seeds = (
        json.loads(path.read_text()) if path.exists() else None
        for path in (folder / "report.json", folder / "curves.json", folder / "seeds" / "report.json")
    )
    return report, curves, seeds


def write_findings(folder: Path) -> dict[str, Any]:
    """``folder``/findings.json from its report.json and curves.json: the verdicts as data, and the verdicts
    of the findings.json it replaces (``previous``) where those differ; kept as they were where nothing
    changed, so a rerun that reproduces a run does not erase what the run before it said."""
    rows = [asdict(r) for r in findings(*read_run(folder))]
    path = folder / "findings.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    previous = (
        old.get("previous")
        if old.get("rows") == rows
        else {r["claim"]: r["verdict"] for r in old["rows"]}
        if old
        else None
    )
    record = {"rows": rows, "previous": previous}
    write_json(path, record)
    return record


def markdown(rows: list[Finding], folder: str, previous: dict[str, str] | None = None) -> list[str]:
    head = "| the primer's claim | verdict | deciding numbers (95 % intervals) | since the last run | where |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        numbers = r.numbers.replace("|", "\\|")  # p(y|x) inside a table cell
        lines.append(
            f"| {r.claim} | **{r.verdict}** | {numbers} | {since(r, previous)} | [{r.link}]({folder}/{r.link}) |"
        )
    return lines


def side_by_side(hour: list[Finding], reference: list[Finding], folders: tuple[str, str]) -> list[str]:
    """Each claim's verdict in the hour and in the reference tier (full training), with both sets of
    deciding numbers; a verdict that differs between the two is marked **flips**."""
    lines = [
        "| the primer's claim | the hour | reference tier | | deciding numbers: hour; reference |",
        "|---|---|---|---|---|",
    ]
    ref = {r.claim: r for r in reference}
    for row in hour:
        other = ref.get(row.claim)
        flips = "**flips**" if other and other.verdict.split(",")[0] != row.verdict.split(",")[0] else ""
        numbers = f"{row.numbers}; {other.numbers if other else '–'}".replace("|", "\\|")
        lines.append(
            f"| {row.claim} | [{row.verdict}]({folders[0]}/{row.link}) | "
            f"{f'[{other.verdict}]({folders[1]}/{other.link})' if other else 'not run'} | {flips} | {numbers} |"
        )
    return lines
