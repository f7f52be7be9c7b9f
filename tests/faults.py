"""Fault injection for the reliability tests: at the n-th training batch of a run, break something."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
import torch


class FaultAt(L.Callback):
    """At training batch ``batch`` (counted from 1 over the whole run), do ``action``.

    sigkill / sigint: the process signals itself (a crash / Ctrl-C mid-epoch); raise: an exception
    (a crash the process survives, for in-process tests); poison: set one weight to nan, as a diverging
    optimiser would.
    """

    def __init__(self, batch: int, action: str) -> None:
        if action not in ("sigkill", "sigint", "raise", "poison"):
            raise ValueError(f"unknown fault {action!r}")
        self.batch, self.action, self.seen = batch, action, 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.seen += 1
        if self.seen != self.batch:
            return
        if self.action == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "sigint":
            # As in a terminal: a process started in the background (CI, nohup) inherits SIGINT
            # ignored, and Python then never turns it into KeyboardInterrupt.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.kill(os.getpid(), signal.SIGINT)
        elif self.action == "raise":
            raise RuntimeError(f"injected crash at batch {self.batch}")
        else:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")
