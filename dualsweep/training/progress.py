"""Progress output for runs whose output is not a terminal (logs, CI, Ray workers).

A tqdm bar redrawn in a log file is unreadable; instead, one line per log interval:
step, share done, latest losses, throughput and an ETA.
"""

from __future__ import annotations

import math
import time

import lightning as L


class LineProgress(L.Callback):
    def __init__(self, total_steps: int, every: int, log=print):
        self.total_steps = total_steps
        self.every = every
        self.write = log
        self._started = 0.0
        self._first_step: int | None = None

    def on_train_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        done = int(batch["step"]) + 1
        if self._first_step is None:  # a resumed run starts past step 0
            self._first_step = done - 1
        if done % self.every and done != self.total_steps:
            return
        row = module.curve[-1] if module.curve else {}
        elapsed = time.perf_counter() - self._started
        eta = elapsed / (done - self._first_step) * (self.total_steps - done)
        parts = [f"step {done}/{self.total_steps} ({100 * done / self.total_steps:.0f}%)"]
        held_out = [(o.columns.held_out, f"held-out {o.name.upper()}") for o in module.pair]
        for key, label in [("train_loss", "train"), *held_out]:
            value = row.get(key, math.nan)
            if value == value:
                parts.append(f"{label} {value:.3f}")
        if row.get("tokens_per_s", math.nan) == row.get("tokens_per_s"):
            parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
        parts.append(f"ETA {eta:.0f}s")
        self.write("  ".join(parts))
