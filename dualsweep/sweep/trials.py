"""Trial folders and their collection into the sweep's Parquet tables (no torch, no Ray).

Each trial trains in `<storage>/<sweep>/<run_key>/` (config, curve, summary, checkpoint,
final weights, `train.log`, and `attempts.jsonl`, one line per start; see storage.py for
cloud URIs). Those folders are the
source of truth: collecting them into results/<sweep>/runs.parquet and curves.parquet is
idempotent, so a driver killed at any moment loses nothing a trial wrote.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from pathlib import Path

import pandas as pd

from dualsweep.config import RunConfig
from dualsweep.results import CURVES_FILE, RUNS_FILE, RunSummary, upsert, write_parquet
from dualsweep.sweep.storage import TrialStorage

SUMMARY_FILE = "summary.parquet"  # the names train() writes (training.run; no torch here)
CURVE_FILE = "curve.parquet"
ATTEMPTS_FILE = "attempts.jsonl"
LOCK_FILE = ".lock"


def record_attempt(trial_dir: Path) -> int:
    """Append one start to the trial's attempt log; return how many starts it now has."""
    with (trial_dir / ATTEMPTS_FILE).open("a") as f:
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        f.write(
            json.dumps({"started_at": started, "pid": os.getpid(), "host": os.uname().nodename})
            + "\n"
        )
    return count_attempts(trial_dir)


def count_attempts(trial_dir: Path) -> int:
    path = trial_dir / ATTEMPTS_FILE
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


@contextlib.contextmanager
def trial_lock(trial_dir: Path):
    """Exclusive hold on a trial folder: no two processes ever train the same trial at once.

    An OS lock, released by the kernel if its holder dies (kill -9 included).
    """
    import fcntl

    with (trial_dir / LOCK_FILE).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def trial_status(trial_dir: Path) -> str | None:
    path = trial_dir / SUMMARY_FILE
    return (
        str(pd.read_parquet(path, columns=["status"])["status"].iloc[0]) if path.is_file() else None
    )


def record_failure(config: RunConfig, storage: TrialStorage, key: str, error: str) -> None:
    """A summary row for a trial that died before writing its own (a killed worker, say)."""
    storage.pull(key, names=(SUMMARY_FILE, ATTEMPTS_FILE))
    trial_dir = storage.trial_dir(key)
    if trial_status(trial_dir) is None:
        trial_dir.mkdir(parents=True, exist_ok=True)
        row = RunSummary(config=config, status="failed", error=error).row()
        write_parquet(pd.DataFrame([row]), trial_dir / SUMMARY_FILE)
        storage.push(key)


def collect(storage: TrialStorage, results_dir: Path, keys) -> pd.DataFrame | None:
    """Upsert the summaries and curves of these trials' folders into the sweep tables."""
    runs, curves = [], []
    for key in keys:
        storage.pull(key, names=(SUMMARY_FILE, CURVE_FILE, ATTEMPTS_FILE))
        trial_dir = storage.trial_dir(key)
        if not (trial_dir / SUMMARY_FILE).is_file():
            continue
        row = pd.read_parquet(trial_dir / SUMMARY_FILE)
        row.insert(0, "sweep", storage.sweep)
        row["attempts"] = count_attempts(trial_dir)
        row["trial_dir"] = f"{storage.uri}/{key}" if storage.uri else str(trial_dir)
        runs.append(row)
        if (trial_dir / CURVE_FILE).is_file():
            curve = pd.read_parquet(trial_dir / CURVE_FILE)
            curve.insert(0, "run_key", key)
            curves.append(curve)
    if not runs:
        return None
    results_dir.mkdir(parents=True, exist_ok=True)
    if curves:
        upsert(results_dir / CURVES_FILE, pd.concat(curves, ignore_index=True))
    return upsert(results_dir / RUNS_FILE, pd.concat(runs, ignore_index=True))


def finished_keys(results_dir: Path) -> set[str]:
    path = results_dir / RUNS_FILE
    if not path.is_file():
        return set()
    runs = pd.read_parquet(path, columns=["run_key", "status"])
    return set(runs.loc[runs["status"] == "finished", "run_key"])
