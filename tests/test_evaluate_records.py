"""Evaluation that saves as it goes, resumes after a crash and re-uses what it already measured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgbench.runtime import compose_config
from evaluate import evaluate
from tests.helpers import ROOT, run_python
from tests.slow_family import save_checkpoint

pytestmark = pytest.mark.slow  # evaluate() end to end on a deliberately slow family

SUITES = "suites=[classification,ood,missing_features]"
BUDGET = ["budget.classification=40", "budget.ood=20", "budget.missing_features=10", "batch_size=10", "device=cpu"]
TIMING = {"seconds", "wall_time_s"}


def comparable(report: dict) -> dict:
    """A report without what may differ between identical evaluations: timings."""
    if isinstance(report, dict):
        return {k: comparable(v) for k, v in report.items() if k not in TIMING and not k.endswith("_per_s")}
    if isinstance(report, list):
        return [comparable(v) for v in report]
    return report


def command(ckpts: list[Path], out: Path, cache: Path, *extra: str) -> list[str]:
    listed = ",".join(str(c) for c in ckpts)
    return ["evaluate.py", f"ckpts=[{listed}]", SUITES, *BUDGET, f"hydra.run.dir={out}", f"cache_dir={cache}", *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    # A shell that starts pytest in the background hands its children SIGINT ignored; Python then never
    # installs its Ctrl-C handler. Restore the default so the interruption tests mean the same everywhere.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=restore,
    )  # fmt: skip


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def slow_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("slow")
    return [save_checkpoint(root / f"m{i}.ckpt", delay_s=0.02, seed=i) for i in range(2)]


def in_process(tmp_path: Path, ckpts: list[Path], name: str, *extra: str) -> tuple[dict, str]:
    listed = ",".join(str(c) for c in ckpts)
    cfg = compose_config(
        [f"ckpts=[{listed}]", SUITES, *BUDGET, f"cache_dir={tmp_path / 'cache'}", *extra],
        tmp_path / name,
        config_name="evaluate",
    )
    evaluate(cfg)
    return read_report(tmp_path / name), str(tmp_path / name)


def test_sigkill_mid_suite_then_rerun_gives_the_uninterrupted_report(tmp_path: Path, slow_checkpoints) -> None:
    reference = tmp_path / "reference"
    done = run_python(command(slow_checkpoints, reference, tmp_path / "ref_cache", "cache=false"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    out, cache = tmp_path / "killed", tmp_path / "cache"
    process = start(command(slow_checkpoints, out, cache))
    # The first model's classification is saved (to the records, then to the cache: wait for both, or
    # a kill between the two writes leaves nothing to reuse); kill while later suites are under way.
    wait_for(out / "records" / "00_slow_pixel_bayes" / "classification.pt", process)
    deadline = time.monotonic() + 60
    while not any(cache.glob("*.pt")):
        assert process.poll() is None and time.monotonic() < deadline, "no cache entry was written"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(p.name for p in (out / "records").rglob("*.pt"))
    assert "report.json" not in os.listdir(out) and len(list(cache.glob("*.pt"))) < 6, saved

    rerun = run_python(command(slow_checkpoints, tmp_path / "rerun", cache), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.count("reused (cached") >= 1 and rerun.stdout.count("done in") < 6
    assert comparable(read_report(tmp_path / "rerun")) == comparable(read_report(reference))


def test_an_unchanged_checkpoint_runs_no_suite_and_a_changed_one_runs_again(tmp_path: Path, capsys) -> None:
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    first, _ = in_process(tmp_path, [ckpt], "first")
    assert capsys.readouterr().out.count("done in") == 3

    second, _ = in_process(tmp_path, [ckpt], "second")
    printed = capsys.readouterr().out
    assert printed.count("done in") == 0 and printed.count("reused (cached") == 3
    assert comparable(second) == comparable(first)

    save_checkpoint(ckpt, nudge=1e-3)  # one weight differs
    in_process(tmp_path, [ckpt], "changed")
    assert capsys.readouterr().out.count("done in") == 3

    in_process(tmp_path, [ckpt], "forced", "cache=false")
    assert capsys.readouterr().out.count("done in") == 3


def test_a_corrupt_record_is_named_in_one_line_and_recomputed(tmp_path: Path, capsys) -> None:
    ckpt = save_checkpoint(tmp_path / "m.ckpt")
    first, _ = in_process(tmp_path, [ckpt], "first")
    capsys.readouterr()
    victim = sorted((tmp_path / "cache").glob("*.pt"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as by a full disk
    again, _ = in_process(tmp_path, [ckpt], "again")
    captured = capsys.readouterr()
    assert captured.out.count("done in") == 1 and captured.out.count("reused (cached") == 2
    warnings = [line for line in captured.err.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and victim.name in warnings[0] and "recomputing" in warnings[0]
    assert comparable(again) == comparable(first)


def test_reports_rebuild_from_records_and_per_checkpoint_jobs_merge(tmp_path: Path) -> None:
    ckpts = [save_checkpoint(tmp_path / f"m{i}.ckpt", seed=i) for i in range(2)]
    together, together_dir = in_process(tmp_path, ckpts, "together", "names=[a,b]")
    rebuilt, _ = in_process(tmp_path, [], "rebuilt", f"records=[{together_dir}]")
    assert comparable(rebuilt)["models"] == comparable(together)["models"]

    # One job per checkpoint (as a Hydra multirun would run them), then one merge; job a measures
    # afresh, job b finds its results in the cache: both leave complete records behind.
    _, dir_a = in_process(tmp_path, ckpts[:1], "job_a", "names=[a]", "cache=false")
    _, dir_b = in_process(tmp_path, ckpts[1:], "job_b", "names=[b]")
    merged, _ = in_process(tmp_path, [], "merged", f"records=[{dir_a},{dir_b}]")
    assert comparable(merged)["models"] == comparable(together)["models"]


def test_reports_name_checkpoints_relative_to_where_the_command_ran(tmp_path: Path) -> None:
    ckpt = save_checkpoint(ROOT / "runs" / "test_records" / f"{tmp_path.name}.ckpt")
    try:
        report, _ = in_process(tmp_path, [ckpt], "portable")
    finally:
        ckpt.unlink()
    entry = report["models"]["slow_pixel_bayes"]
    assert entry["checkpoint"] == f"runs/test_records/{tmp_path.name}.ckpt" and len(entry["sha256"]) == 64
    assert str(ROOT) not in json.dumps(report["models"])


def test_ctrl_c_leaves_a_partial_report_naming_what_is_missing_and_how_to_finish(
    tmp_path: Path, slow_checkpoints
) -> None:
    out = tmp_path / "interrupted"
    process = start(command(slow_checkpoints, out, tmp_path / "cache"))
    wait_for(out / "records" / "00_slow_pixel_bayes" / "classification.pt", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "complete it with: python evaluate.py" in stderr
    report = read_report(out)
    assert report["incomplete"].startswith("interrupted:") and "evaluate.py" in report["complete_with"]
    assert "slow_pixel_bayes#1/missing_features" in report["incomplete"]
