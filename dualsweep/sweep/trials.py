"""Trial folders and their collection into the sweep's Parquet tables (no torch, no Ray).

Each trial trains in `<storage>/<sweep>/<folder>/` (storage.py names it by point and run key; config, curve, summary, checkpoint,
final weights, `train.log`, and `attempts.jsonl`, one line per start; see storage.py for
cloud URIs). Those folders are the
source of truth: collecting them into results/<sweep>/runs.parquet and curves.parquet is
idempotent, so a driver killed at any moment loses nothing a trial wrote.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path

import pandas as pd

from dualsweep.config import EvalConfig, RunConfig
from dualsweep.paths import atomic_write, exclusive_lock
from dualsweep.results import (
    RunSummary,
    missing_evals,
    read_table,
    upsert,
    with_point,
    write_parquet,
)
from dualsweep.schema import (
    ATTEMPTS_FILE,
    CURVE_FILE,
    CURVES_TABLE,
    EVAL_ERROR_FILE,
    EVALS_FILE,
    EVALS_TABLE,
    RUNS_TABLE,
    SUMMARY_FILE,
    TRIAL_LOCK_FILE,
    pair_columns,
)
from dualsweep.sweep.storage import TrialStorage


def record_attempt(trial_dir: Path, node: str = "") -> None:
    """Append one start to the trial's attempt log (time, process, host and Ray node)."""
    with (trial_dir / ATTEMPTS_FILE).open("a") as f:
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = {"started_at": started, "pid": os.getpid(), "host": os.uname().nodename}
        f.write(json.dumps({**record, "node": node}) + "\n")


def update_attempt(trial_dir: Path, **fields) -> None:
    """Add `fields` to the last attempt's record (e.g. the nodes of its workers)."""
    attempts = read_attempts(trial_dir)
    attempts[-1].update(fields)
    text = "".join(json.dumps(a) + "\n" for a in attempts)
    atomic_write(trial_dir / ATTEMPTS_FILE, lambda tmp: tmp.write_text(text))


def read_attempts(trial_dir: Path) -> list[dict]:
    """The trial's attempts, one JSON line each; a line a kill cut short (or damaged) still
    counts as an attempt, without its details, so one bad line never blocks the sweep."""
    path = trial_dir / ATTEMPTS_FILE
    if not path.is_file():
        return []
    attempts = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            attempt = json.loads(line)
        except ValueError:
            attempt = None
        attempts.append(attempt if isinstance(attempt, dict) else {"damaged_line": line[:200]})
    return attempts


def attempt_nodes(attempts: list[dict]) -> str:
    """The Ray nodes of each attempt, in order: attempts separated by ';', the workers of a
    data-parallel attempt by ','. Empty for attempts recorded without one."""
    return ";".join(",".join(a.get("worker_nodes") or [a.get("node", "")]) for a in attempts)


def trial_lock(trial_dir: Path):
    """Exclusive hold on a trial folder: no two processes ever train the same trial at once."""
    return exclusive_lock(trial_dir / TRIAL_LOCK_FILE)


def trial_status(trial_dir: Path) -> str | None:
    path = trial_dir / SUMMARY_FILE
    return (
        str(pd.read_parquet(path, columns=["status"])["status"].iloc[0]) if path.is_file() else None
    )


def record_failure(config: RunConfig, storage: TrialStorage, error: str) -> None:
    """Record Tune's error for a trial whose last attempt died without writing its own.

    (A worker killed by the OS, say.) A summary written by the last attempt is kept: its
    error is the precise one. One older than the last attempt's start is stale.
    """
    storage.pull(config, names=(SUMMARY_FILE, ATTEMPTS_FILE))
    trial_dir = storage.trial_dir(config)
    summary, attempts = trial_dir / SUMMARY_FILE, trial_dir / ATTEMPTS_FILE
    if summary.is_file():
        stale = attempts.is_file() and attempts.stat().st_mtime > summary.stat().st_mtime
        if trial_status(trial_dir) == "finished" or not stale:
            return
        row = pd.read_parquet(summary)
        row["error"] = error
    else:
        trial_dir.mkdir(parents=True, exist_ok=True)
        columns = pair_columns(config.objective.objectives)
        failed = RunSummary(config=config, status="failed", error=error, objectives=columns)
        row = pd.DataFrame([failed.row()])
    write_parquet(row, summary)
    storage.push(config)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MODULE_PATH = re.compile(
    r"^(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z]\w*: )"
)  # dualsweep.paths.DiskFullError


def error_line(text: str, limit: int = 300) -> str:
    """The line of an error report that says what went wrong: its last line (Python's
    `Type: message`), without colour codes, the type's module path or the `TrialFailed`
    wrapper of a recorded error."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    line = _MODULE_PATH.sub("", line).removeprefix("TrialFailed: ")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def mark_current(results_dir: Path, keys) -> None:
    """Flag the rows of the sweep file's current trials (`in_sweep`); others are kept, unflagged."""
    path = results_dir / RUNS_TABLE
    if path.is_file():
        runs = read_table(path)
        runs["in_sweep"] = runs["run_key"].isin(set(keys))
        write_parquet(runs, path)


def evaluated(trial_dir: Path, evaluation: EvalConfig) -> bool:
    """The trial's evals hold every configured task (built-in, file and harness) and mode,
    scored as configured now (`results.missing_evals`)."""
    path = trial_dir / EVALS_FILE
    if not path.is_file():
        return not (evaluation.tasks or evaluation.lm_eval_tasks)
    return not missing_evals(pd.read_parquet(path), evaluation)


def collect(storage: TrialStorage, results_dir: Path, configs: dict[str, RunConfig]) -> None:
    """Upsert the summaries, curves and evals of these trials' folders into the sweep tables."""
    runs, curves, evals = [], [], []
    for key, config in configs.items():
        storage.pull(
            config, names=(SUMMARY_FILE, CURVE_FILE, ATTEMPTS_FILE, EVALS_FILE, EVAL_ERROR_FILE)
        )
        trial_dir = storage.trial_dir(config)
        if not (trial_dir / SUMMARY_FILE).is_file():
            continue
        row = pd.read_parquet(trial_dir / SUMMARY_FILE)
        row.insert(0, "sweep", storage.sweep)
        attempts = read_attempts(trial_dir)
        row["attempts"] = len(attempts)
        row["attempt_nodes"] = attempt_nodes(attempts)
        row["evaluated"] = evaluated(trial_dir, config.evaluation)
        error_file = trial_dir / EVAL_ERROR_FILE
        row["evaluation_error"] = error_file.read_text() if error_file.is_file() else ""
        row["trial_dir"] = f"{storage.uri}/{trial_dir.name}" if storage.uri else str(trial_dir)
        row["in_sweep"] = True
        runs.append(row)
        for name, frames in ((CURVE_FILE, curves), (EVALS_FILE, evals)):
            if (trial_dir / name).is_file():
                frame = pd.read_parquet(trial_dir / name)
                if "run_key" not in frame.columns:
                    frame.insert(0, "run_key", key)
                frames.append(with_point(frame, row))
    if not runs:
        return
    results_dir.mkdir(parents=True, exist_ok=True)
    if curves:
        upsert(results_dir / CURVES_TABLE, pd.concat(curves, ignore_index=True))
    if evals:
        upsert(results_dir / EVALS_TABLE, pd.concat(evals, ignore_index=True))
    upsert(results_dir / RUNS_TABLE, pd.concat(runs, ignore_index=True))


def complete_keys(results_dir: Path) -> set[str]:
    """Trials that finished training and were evaluated on every configured task and mode."""
    path = results_dir / RUNS_TABLE
    if not path.is_file():
        return set()
    runs = read_table(path)
    evaluated_ = runs["evaluated"].fillna(False).astype(bool) if "evaluated" in runs else False
    return set(runs.loc[(runs["status"] == "finished") & evaluated_, "run_key"])
