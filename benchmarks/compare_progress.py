"""Two runs of the benchmark, job by job: did the code get slower, or the machine?

    python benchmarks/compare_progress.py OLD_PROGRESS_LOG NEW_PROGRESS_LOG [--min-seconds 8] [--out PATH]
    python benchmarks/compare_progress.py PROGRESS_LOG [--out PATH]          # the work table only

Reads the ``NAME: done, trained in N s`` lines of two ``progress.log`` files (benchmarks/primer.py
writes them) and, for every training run in both whose old time is at least ``--min-seconds``, prints
when it finished in the new run, both training times and their ratio (new / old), in the new run's
order, then the median ratio per quarter of the new run. When the two runs trained the same recipes,
ratios that drift with the time of day say the machine's speed changed, not the code.

Then, for the new (or only) run, its work: worker-minutes per group of jobs, each job from its
``training`` / ``evaluating`` line to its ``done`` / ``evaluated`` line (a family preset's training,
a family's curve runs, the Fashion-MNIST runs, each evaluation suite), and their sum.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

DONE = re.compile(r"\[primer (\d+):(\d\d):(\d\d)\]\s+(.+?): done, trained in (\d+) s")
REUSED = re.compile(r"\]\s+(.+?): reusing ")
EVENT = re.compile(
    r"\[primer (\d+):(\d\d):(\d\d)\]\s+(?:(.+?): (training) \(|(.+?): (done), |(evaluating|evaluated) (.+))"
)


def seconds(h: str, m: str, s: str) -> int:
    return 3600 * int(h) + 60 * int(m) + int(s)


def trained(log: str) -> dict[str, tuple[int, int]]:
    """Run name -> (seconds since the benchmark started when it finished, training seconds). A done
    line right after a ``reusing`` line of the same run (a later stage looking up a run trained
    earlier, perhaps under another name) is no training and is left out."""
    reusing, runs = set(), {}
    for line in log.splitlines():
        if m := REUSED.search(line):
            reusing.add(m[1])
        elif (m := DONE.search(line)) and m[4] not in reusing:
            runs.setdefault(m[4], (seconds(m[1], m[2], m[3]), int(m[5])))
        elif m:
            reusing.discard(m[4])
    return runs


def compare(old: str, new: str, min_seconds: int = 8) -> str:
    before, after = trained(old), trained(new)
    both = sorted(
        (after[k][0], k, before[k][1], after[k][1]) for k in after if k in before and before[k][1] >= min_seconds
    )
    if not both:
        raise SystemExit(
            "error: no training run appears in both logs; give two progress.log files of benchmarks/primer.py"
        )
    lines = ["| finished (new run) | run | old s | new s | new / old |", "|---|---|---|---|---|"]
    lines += [f"| {t // 60} min | {k} | {o} | {n} | {n / o:.2f} |" for t, k, o, n in both]
    end = max(t for t, *_ in both)
    lines += ["", "| quarter of the new run | runs | median new / old |", "|---|---|---|"]
    for q in range(4):
        ratios = [n / o for t, _, o, n in both if q * end / 4 < t <= (q + 1) * end / 4]
        if ratios:
            lines.append(
                f"| {q + 1} (to {round((q + 1) * end / 4 / 60)} min) | {len(ratios)} | {statistics.median(ratios):.2f} |"
            )
    return "\n".join(lines) + "\n"


def group(job: str, evaluation: bool) -> str:
    if evaluation:
        return f"evaluate {job}"
    if " n=" in job:
        return f"curves: {job.split(' n=')[0]}"
    return "fashion runs" if job.endswith(" on fashion") else f"train {job}"


def work(log: str) -> str:
    """Worker-minutes per group of jobs: each job once, from its start line to its first end line
    (a later end line of the same job is a reuse, no work)."""
    started: dict[tuple[bool, str], int] = {}
    ended: set[tuple[bool, str]] = set()
    minutes: dict[str, float] = {}
    for m in EVENT.finditer(log):
        evaluation = m[8] is not None
        key = (evaluation, m[9] if evaluation else m[4] or m[6])
        if m[5] or m[8] == "evaluating":
            started.setdefault(key, seconds(m[1], m[2], m[3]))
        elif key in started and key not in ended:
            name = group(key[1], evaluation)
            minutes[name] = minutes.get(name, 0.0) + (seconds(m[1], m[2], m[3]) - started[key]) / 60
            ended.add(key)
    lines = ["| jobs | worker-minutes |", "|---|---|"]
    lines += [f"| {g} | {v:.1f} |" for g, v in sorted(minutes.items(), key=lambda kv: -kv[1])]
    return "\n".join([*lines, f"| all | {sum(minutes.values()):.1f} |"]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, nargs="+", help="OLD NEW, or one log for its work table only")
    parser.add_argument("--min-seconds", type=int, default=8, help="skip runs shorter than this in the old log")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if len(args.logs) > 2:
        parser.error("give OLD NEW progress.log files, or one")
    logs = [path.read_text() for path in args.logs]
    table = (compare(*logs, args.min_seconds) + "\n" if len(logs) == 2 else "") + work(logs[-1])
    print(table, end="")
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
