"""A benchmark run in parts (benchmarks/primer.py --families): each part trains and evaluates some of a
preset's families, and the results folder is rebuilt from the evaluation records every part left there.

A part copies each family's evaluation records (the per-suite results with the sha256 of the checkpoint
they came from, dgbench/evaluation/records.py) into <results>/records/<family>/, and the report is
rebuilt from every family's records found there, in the preset's order: no part needs another part's
checkpoints, and a report rebuilt from the committed records is the report one run of every part gives.
The learning curves keep the other parts' points the same way (curves.json holds every point).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dgbench import DGBenchError
from dgbench.evaluation.records import RECORDS

KEPT = "records"  # <results>/records/<family>: the evaluation records a report is rebuilt from


def select_part(preset: Any, names: list[str]) -> Any:
    """The preset restricted to the families ``names`` (in its own order): their runs, their curves,
    their Fashion-MNIST runs and their extra seeds. An unknown name is a one-line error."""
    if unknown := [n for n in names if n not in preset.families]:
        raise DGBenchError(
            f"--families: {', '.join(unknown)} not in the preset: choose from {', '.join(preset.families)}"
        )
    part = OmegaConf.to_container(preset)
    part["families"] = {f: v for f, v in part["families"].items() if f in names}
    if part.get("curves"):
        part["curves"]["families"] = {f: v for f, v in part["curves"]["families"].items() if f in names}
    if part.get("fashion"):
        part["fashion"]["families"] = [f for f in part["fashion"]["families"] if f in names]
    if part.get("seeds"):
        part["seeds"]["families"] = [f for f in part["seeds"]["families"] if f in names]
    return OmegaConf.create(part)


def keep_records(evaluations: list[Path], kept: Path) -> None:
    """Copy each evaluation's records (an evaluate.py output folder's records/) to kept/<its name>,
    replacing what an earlier run of the same family left there."""
    for folder in evaluations:
        target = kept / folder.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder / RECORDS, target)


def kept_records(kept: Path, order: list[str]) -> list[Path]:
    """The kept records folders, the preset's families first in its order, then any other (an extra seed)."""
    found = {p.name: p for p in kept.iterdir() if p.is_dir()} if kept.is_dir() else {}
    return [found[n] for n in order if n in found] + [found[n] for n in sorted(found) if n not in order]


def merge_points(previous: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve points of this part, and those of the earlier parts for every family it did not run."""
    ran = {p["family"] for p in new}
    return [p for p in previous if p["family"] not in ran] + new
