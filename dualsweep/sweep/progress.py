"""The sweep's live progress view: trials done / running / pending / failed and an ETA.

A Ray Tune callback in the driver. It prints one line whenever a trial starts, finishes,
fails or is retried, and every `heartbeat_s` otherwise; and it hands each ended trial to
`on_trial_end` so results are collected as they come, not only at the end. A trial that
reports `status: failed` (an error retrying cannot change, see trainable.py) ended failed.

A failure is one line: the trial (alpha, R, seed, run key), the error's last line and the
trial's log, which holds the traceback (Tune's own traceback printing is turned off).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from pathlib import Path

from ray import tune

from dualsweep.paths import FULL_DISK_FREE_BYTES, free_bytes
from dualsweep.schema import objectives_in
from dualsweep.sweep.trials import error_line


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class SweepProgress(tune.Callback):
    def __init__(
        self,
        name: str,
        to_run: int,
        already_finished: int,
        *,
        on_trial_end: Callable[[str], None],
        log_path: Callable[[str], str] = lambda key: "",
        log: Callable[[str], None] = print,
        heartbeat_s: float = 30.0,
    ):
        self.name = name
        self.to_run = to_run  # trials this run launches
        self.already_finished = already_finished
        self.on_trial_end = on_trial_end
        self.log_path = log_path
        self.log = log
        self.heartbeat_s = heartbeat_s
        self.started = time.monotonic()
        self.last_line = 0.0
        self.running: dict[str, float] = {}  # key: when it started
        self.peak_running = 0
        self.durations: list[float] = []
        self.finished = 0
        self.failed = 0
        self.retries = 0
        self.ended: set[str] = set()  # keys of the trials Tune finished or gave up on
        self.launched: list[str] = []  # keys of the trials Tune started, in order

    def _key(self, trial) -> str:
        return trial.config["trial"]["run_key"]

    def will_not_run(self, trials: int) -> None:
        """Fewer trials to run than announced (a search that ended early)."""
        self.to_run -= trials

    def status_line(self, event: str = "") -> str:
        ended = self.finished + self.failed
        pending = self.to_run - ended - len(self.running)
        elapsed = time.monotonic() - self.started
        line = (
            f"[{self.name}] {self.already_finished + self.finished}/{self.already_finished + self.to_run} done, "
            f"{len(self.running)} running, {pending} pending, {self.failed} failed"
            + (f", {self.retries} retried" if self.retries else "")
            + f" | elapsed {_clock(elapsed)}"
        )
        if self.durations and ended < self.to_run:
            line += f" | ETA {_clock(self._time_left(pending))}"
        return line + (f" | {event}" if event else "")

    def _time_left(self, pending: int) -> float:
        """When the last trial ends if each takes the mean trial time so far: the running
        ones what they have left of it, the pending ones queued on the slots as they free up
        (as many slots as trials were seen running at once)."""
        mean = sum(self.durations) / len(self.durations)
        now = time.monotonic()
        slots = [max(0.0, mean - (now - t)) for t in self.running.values()]
        slots += [0.0] * max(0, max(1, self.peak_running) - len(slots))
        heapq.heapify(slots)
        for _ in range(pending):
            heapq.heappush(slots, heapq.heappop(slots) + mean)
        return max(slots, default=0.0)

    def _print(self, event: str = "") -> None:
        self.last_line = time.monotonic()
        self.log(self.status_line(event))

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._key(trial) not in self.launched:
            self.launched.append(self._key(trial))
        self.running[self._key(trial)] = time.monotonic()
        self.peak_running = max(self.peak_running, len(self.running))
        self._print(f"started {self._describe(trial)}")

    def _end(self, trial, failed: bool) -> str:
        """Count the trial once and collect its folder; return a note for the line."""
        key = self._key(trial)
        if key in self.ended:  # Tune may report one end twice when a callback raised
            return ""
        self.ended.add(key)
        self.failed += failed
        self.finished += not failed
        started = self.running.pop(key, None)
        if started is not None:
            self.durations.append(time.monotonic() - started)
        try:
            self.on_trial_end(key)
        except Exception as e:  # noqa: BLE001 - the trial folder keeps everything
            return (
                f" (tables not updated: {type(e).__name__}: {e}; the trial folder keeps its "
                "results, collected again at the end and by the next run)"
            )
        return ""

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get("status") == "failed":  # an error retrying cannot change
            note = self._end(trial, failed=True)
            error = error_line(str(result.get("error")))
            self._print(
                f"FAILED {self._describe(trial)}, not retried: {error}{self._where(trial)}{note}"
            )
        else:
            note = self._end(trial, failed=False)
            finals = {o.name.upper(): result[f"final_{o.held_out}"] for o in objectives_in(result)}
            measured = {n: v for n, v in finals.items() if isinstance(v, float) and v == v}
            losses = "held-out " + ", ".join(f"{n} {v:.4f}" for n, v in measured.items())
            done = f"finished {self._describe(trial)}{': ' + losses if measured else ''}{note}"
            self._print(done)

    def on_trial_error(self, iteration, trials, trial, **info):
        note = self._end(trial, failed=True)
        self._print(
            f"FAILED {self._describe(trial)}: {self._error(trial)}{self._where(trial)}{note}"
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.retries += 1
        self.running.pop(self._key(trial), None)
        self._print(
            f"retrying {self._describe(trial)} after {self._error(trial)}{self._where(trial)}"
        )

    def _error(self, trial) -> str:
        """The last line of Tune's record of the trial's latest error."""
        try:
            text = trial.get_error()
        except Exception:  # noqa: BLE001 - Tune could not write it (a full disk, say)
            text = None
        if text:
            return error_line(text)
        log = self.log_path(self._key(trial))
        free = free_bytes(Path(log).parent) if log and "://" not in log else math.inf
        full = f" (its disk is full: {free:,} bytes free)" if free < FULL_DISK_FREE_BYTES else ""
        return f"an error Ray Tune could not record{full}"

    def _where(self, trial) -> str:
        path = self.log_path(self._key(trial))
        return f" (traceback in {path})" if path else ""

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self.last_line >= self.heartbeat_s:
            self._print()

    def _describe(self, trial) -> str:
        t = trial.config["trial"]
        return f"alpha={t['alpha']:g} R={t['repetitions']} seed={t['seed']} ({t['run_key']})"
