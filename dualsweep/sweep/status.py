"""`dualsweep status`: what each trial of a sweep is doing, read from its folder (no Ray).

Run from any terminal while a sweep runs (or after it stopped): a trial is pending (no
folder yet), running (a process holds its lock; its step, last training loss and ETA come
from the last progress line of its train.log), stopped (started, not running, not ended:
its driver was stopped or killed; `resumable` when it left a checkpoint), finished (and
whether it is evaluated) or failed (with its error).
"""

from __future__ import annotations

import datetime
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from dualsweep.config import ConfigError, RunConfig, SweepConfig, run_config_from_dict, run_key
from dualsweep.paths import exclusive_lock
from dualsweep.results import read_table
from dualsweep.schema import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    RUNS_TABLE,
    SUMMARY_FILE,
    TRAIN_LOG_FILE,
    TRIAL_LOCK_FILE,
)
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import error_line, evaluated

# A progress line of training/progress.py: "step 96/1953 (5%)  train 4.978  ...  ETA 50s".
_PROGRESS = re.compile(r"^step (\d+)/(\d+) \(\d+%\)\s+train (\S+).*\bETA (\d+)s\s*$")


@dataclass(frozen=True)
class TrialState:
    config: RunConfig
    state: str
    """pending, running, stopped, resumable, finished, unevaluated or failed."""
    step: int | None = None
    steps: int | None = None
    train_loss: float = math.nan
    eta_s: float | None = None
    detail: str = ""
    """A failed trial's error."""
    log: Path | None = None

    @property
    def key(self) -> str:
        return run_key(self.config)


def sweep_status(
    sweep: SweepConfig, storage: TrialStorage, results_dir: Path | None = None
) -> list[TrialState]:
    """The state of every trial of the sweep file, and of every other trial folder of the
    sweep (a search's proposals), in the sweep file's order, then by folder name. A trial
    without a folder here but with a row in `results_dir`'s runs table (its folders elsewhere
    or deleted) has the row's state."""
    configs = {run_key(c): c for c in sweep.trials()}
    if storage.root.is_dir():
        for folder in sorted(storage.root.iterdir()):
            config = _folder_config(folder)
            if config is not None:
                configs.setdefault(run_key(config), config)
    rows = {}
    if results_dir is not None and (results_dir / RUNS_TABLE).is_file():
        runs = read_table(results_dir / RUNS_TABLE)
        rows = {row.run_key: row for row in runs.itertuples()}
    states = []
    for key, config in configs.items():
        state = trial_state(config, storage)
        if state.state == "pending" and key in rows:
            row = rows[key]
            tabled = "finished" if row.status == "finished" else "failed"
            error = error_line(str(row.error)) if tabled == "failed" else "(from the results table)"
            state = TrialState(config, tabled, row.steps, row.steps, detail=error)
        states.append(state)
    return states


def _folder_config(folder: Path) -> RunConfig | None:
    try:
        return run_config_from_dict(yaml.safe_load((folder / CONFIG_FILE).read_text()))
    except (OSError, ConfigError, yaml.YAMLError, TypeError, AttributeError):
        return None  # not a trial folder (Tune's own, say), or one written before it began


def trial_state(config: RunConfig, storage: TrialStorage) -> TrialState:
    folder = storage.trial_dir(config)
    log = folder / TRAIN_LOG_FILE
    if not folder.is_dir():
        return TrialState(config, "pending")
    if _held(folder):
        step, steps, loss, eta = _progress(log)
        return TrialState(config, "running", step, steps, loss, eta, log=log)
    summary = folder / SUMMARY_FILE
    if summary.is_file():
        row = pd.read_parquet(summary).iloc[0]
        if row["status"] == "finished":
            done = evaluated(folder, config.evaluation)
            steps = int(row["steps"])
            return TrialState(config, "finished" if done else "unevaluated", steps, steps, log=log)
        if not (folder / CHECKPOINT_FILE).is_file():
            return TrialState(config, "failed", detail=error_line(str(row["error"])), log=log)
    step, steps, loss, _ = _progress(log)
    state = "resumable" if (folder / CHECKPOINT_FILE).is_file() else "stopped"
    return TrialState(config, state, step, steps, loss, log=log)


def _held(folder: Path) -> bool:
    """Whether a process holds the trial's lock (it is training or evaluating it now)."""
    if not (folder / TRIAL_LOCK_FILE).exists():
        return False
    try:
        with exclusive_lock(folder / TRIAL_LOCK_FILE, wait=False):
            return False
    except BlockingIOError:
        return True


def _progress(log: Path) -> tuple[int | None, int | None, float, float | None]:
    """Step, steps, training loss and seconds left from the log's last progress line (the
    ETA it gave, less the time since it was written)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
        written = log.stat().st_mtime
    except OSError:
        return None, None, math.nan, None
    for line in reversed(lines):
        match = _PROGRESS.match(line.strip())
        if match:
            step, steps, loss, eta = match.groups()
            left = max(0.0, float(eta) - (time.time() - written))
            return int(step), int(steps), _number(loss), left
    return None, None, math.nan, None


def _number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return math.nan


def format_status(name: str, states: list[TrialState]) -> str:
    def clock(seconds: float | None) -> str:
        return "" if seconds is None else str(datetime.timedelta(seconds=round(seconds)))

    lines = [
        f"{'alpha':>9} {'R':>4} {'seed':>4} {'state':<11} {'step':>13} {'train':>7} "
        f"{'ETA':>8}  log or error"
    ]
    for s in states:
        c = s.config
        step = f"{s.step}/{s.steps}" if s.step is not None else ""
        loss = f"{s.train_loss:.3f}" if s.train_loss == s.train_loss else ""
        where = s.detail or (str(s.log) if s.log and s.log.is_file() else "")
        lines.append(
            f"{c.objective.alpha:>9.6g} {c.data.repetitions:>4} {c.train.seed:>4} {s.state:<11} "
            f"{step:>13} {loss:>7} {clock(s.eta_s):>8}  {where}"
        )
    counts = pd.Series([s.state for s in states]).value_counts()
    order = ["finished", "unevaluated", "running", "resumable", "stopped", "failed", "pending"]
    summary = ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
    lines.append(f"sweep {name}: {len(states)} trials: {summary}")
    return "\n".join(lines)
