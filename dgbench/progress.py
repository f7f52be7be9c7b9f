"""Progress of long inference loops, on stderr, sparsely: what a suite will cost and how far it is.

A loop over N images in batches (``dgbench.evaluation.suites.common.batched``, or any loop wrapped in
:func:`track`) times its first batch and, when the estimate for the whole loop is worth announcing
(over ``ANNOUNCE_OVER_S``), prints it with the override that shortens it, e.g.

    classification: ~8 min for 1000 images (budget.classification=N to shorten)

then, at most every ``INTERVAL_S`` seconds, images done / total, images/s and the time left
(remaining images / the rate so far), and a last line with the total time. The estimate is linear in
the images: t_total ≈ N · t_first / n_first (the first batch includes one-off warm-up, so it errs long).
Which suite is running and which override shortens it is set by the caller (:func:`suite`), so a suite
never needs to know about it. A suite with several loops (one per OOD set, per missing-pixel
condition) announces each loop that is long, numbered ("ood, pass 3: ...").
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from typing import IO, Any, TypeVar

INTERVAL_S = 10.0  # at most one progress line per loop this often
ANNOUNCE_OVER_S = 10.0  # loops estimated shorter than this print nothing at all

T = TypeVar("T")


@dataclass
class _Scope:
    name: str
    hint: str
    passes: int = 0


_scope: _Scope | None = None


@contextlib.contextmanager
def suite(name: str, hint: str = "") -> Iterator[None]:
    """Name the loops run inside (``"classification"``) and what shortens them (``"budget.classification=N"``)."""
    global _scope
    outer, _scope = _scope, _Scope(name, hint)
    try:
        yield
    finally:
        _scope = outer


def duration(seconds: float) -> str:
    """``~40 s``, ``~8 min``, ``~1.5 h``: an estimate's precision, no more."""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


class Progress:
    """Progress of one loop over ``total`` images: call :meth:`update` with the images done so far."""

    def __init__(
        self,
        total: int,
        what: str = "inference",
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], Any] | None = None,  # waits for queued device work (CUDA runs asynchronously)
    ) -> None:
        self.total, self.clock, self.sync = total, clock, sync or (lambda: None)
        self.stream = stream if stream is not None else sys.stderr
        scope = _scope
        if scope is not None:
            scope.passes += 1
            self.label = scope.name if scope.passes == 1 else f"{scope.name}, pass {scope.passes} ({what})"
            self.hint = scope.hint
        else:
            self.label, self.hint = what, ""
        self.start = self.last = clock()
        self.done, self.announced, self.reported = 0, False, False

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def update(self, done: int) -> None:
        first = self.done == 0
        self.done = done
        if not first and self.clock() - self.last < INTERVAL_S:
            return
        self.sync()
        now = self.clock()
        elapsed = now - self.start
        estimate = elapsed * self.total / max(done, 1)
        if first:
            if estimate >= ANNOUNCE_OVER_S and done < self.total:
                hint = f" ({self.hint} to shorten)" if self.hint else ""
                self._print(f"{self.label}: {duration(estimate)} for {self.total} images{hint}")
                self.announced = True
            self.last = now
            return
        if done < self.total and (self.announced or elapsed >= ANNOUNCE_OVER_S):  # a loop longer than announced
            rate = done / max(elapsed, 1e-9)
            left = (self.total - done) / max(rate, 1e-9)
            self._print(f"{self.label}: {done}/{self.total} images, {rate:.1f} images/s, {duration(left)} left")
            self.reported = True
        self.last = now

    def close(self) -> None:
        """A last line with the loop's wall time, where anything was printed before."""
        if (self.announced or self.reported) and self.done:
            self.sync()
            elapsed = self.clock() - self.start
            self._print(
                f"{self.label}: {self.done} images in {elapsed:.0f} s ({self.done / max(elapsed, 1e-9):.1f} images/s)"
            )


def track(chunks: Iterable[T], what: str = "inference", **kwargs: Any) -> Iterator[T]:
    """Yield ``chunks`` (batches of images, labels, ...: anything with a length), reporting progress in
    images as each one is finished: ``for y in track(labels.split(bs), "sample"): model.sample(...)``."""
    chunks = list(chunks)
    progress = Progress(sum(len(c) for c in chunks if isinstance(c, Sized)), what, **kwargs)
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk) if isinstance(chunk, Sized) else 1
        progress.update(done)
    progress.close()
