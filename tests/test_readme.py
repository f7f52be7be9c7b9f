"""README and docs: the findings table is what readme_tables.py writes from the committed report, every
relative link resolves, and the page stays small enough to read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_findings_table_is_generated_from_the_committed_report(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    copy = tmp_path / "README.md"
    copy.write_text(readme)
    subprocess.run(
        [sys.executable, "benchmarks/readme_tables.py", "results/primer_cpu", "--readme", str(copy)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert copy.read_text() == readme, "README's findings table is stale: run the command in its findings block"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files {broken}"


def test_readme_is_a_page_not_a_notebook() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", text), "a commit hash in README"
    assert len(re.findall(r"^```bash$", text.split("## Set up")[1].split("##")[0], re.M)) == 1
