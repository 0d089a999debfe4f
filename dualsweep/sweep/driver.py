"""One run of a sweep, whatever trains its trials: collect, decide, train, collect again.

Every run of a sweep starts by collecting the trial folders into the results tables, then
launches only the trials without a finished row: after a crash, a Ctrl-C or a `kill -9`
of the driver, re-running the same command finishes the sweep, never re-training a
finished trial and resuming interrupted ones from their checkpoints. The trainer's own state
is not used for this (Tune snapshots its state only every few seconds); the trial folders are.

A sweep with `search` runs in two phases: its fixed trials (the anchors, any points, and
every proposal so far without a finished row: those a killed driver left unfinished resume,
failed ones are retried), then its searcher (sweep/searcher.py) for the rest of its budget,
first told what the tables hold. The trainer is an argument (`Trainer`): Ray Tune in a real
sweep (runner.py), a fake in the tests of these decisions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pandas as pd

from dualsweep.config import ConfigError, RunConfig, SweepConfig, run_key
from dualsweep.paths import exclusive_lock
from dualsweep.results import read_table
from dualsweep.schema import DRIVER_LOCK_FILE, EVALS_TABLE, RUNS_TABLE, SUMMARY_FILE
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import collect, complete_keys, mark_current

from .algorithms import searcher_for
from .decisions import (
    SearchLoop,
    SweepInterrupted,
    SweepOutcome,
    failed_keys,
    interrupted_message,
    observed_points,
    observed_table,
    pending_keys,
)


class Trainer(Protocol):
    """What trains a sweep's trials. Each call returns the keys of the trials it started and
    did not end (it was stopped: a Ctrl-C), so the sweep stops too."""

    def train(self, configs: dict[str, RunConfig], pending: list[str], *, done_before: int):
        """Train the `pending` keys of `configs`."""

    def search(self, configs: dict[str, RunConfig], loop: SearchLoop, *, done_before: int):
        """Train what `loop` proposes, one trial per free slot, until it is done."""


@contextlib.contextmanager
def sweep_lock(results_dir: Path):
    """One driver per sweep at a time: a second one would launch the same trials."""
    try:
        with exclusive_lock(results_dir / DRIVER_LOCK_FILE, wait=False):
            yield
    except BlockingIOError:
        raise RuntimeError(f"another `dualsweep sweep` is running on {results_dir}") from None


def backup_name(table: Path) -> Path:
    """`<table>.replaced`, or `.replaced.2`, `.3`, ...: an earlier backup is never overwritten."""
    candidate, n = table.with_name(f"{table.name}.replaced"), 1
    while candidate.exists():
        n += 1
        candidate = table.with_name(f"{table.name}.replaced.{n}")
    return candidate


def check_one_corpus(sweep: SweepConfig, results_dir: Path, log) -> None:
    """Refuse to add trials of today's corpus to a table of trials of another."""
    path = results_dir / RUNS_TABLE
    if not path.is_file():
        return
    runs = read_table(path)
    finished = runs[(runs["status"] == "finished") & runs["corpus_hash"].notna()]
    if finished.empty:
        return
    from dualsweep.data.corpus import prepare_corpus

    data = sweep.base.data
    now = prepare_corpus(data, sweep.base.model.vocab_size, log=log).corpus_hash
    other = finished[finished["corpus_hash"] != now]
    if len(other):
        before = ", ".join(sorted(set(other["corpus_hash"])))
        raise ConfigError(
            f"{path}: {len(other)} finished trial(s) were trained on corpus {before} and the "
            f"corpus ({data.source}{', ' + data.path if data.path else ''}) is now {now}: "
            "training the rest would mix two corpora in one table. Restore the corpus, or use "
            "another --results folder or sweep name, or pass --mix-corpora to go on anyway"
        )


def drive_sweep(
    sweep: SweepConfig,
    trainer: Trainer,
    *,
    results_dir: Path,
    trials: TrialStorage,
    log: Callable[[str], None] = print,
    rebuild_tables: bool = False,
    mix_corpora: bool = False,
) -> SweepOutcome:
    """Run (or finish) a sweep with `trainer` (run_sweep's arguments, runner.py)."""
    started = time.monotonic()
    configs = {run_key(c): c for c in sweep.trials()}
    results_dir.mkdir(parents=True, exist_ok=True)
    launched = 0
    with sweep_lock(results_dir):
        for stale in results_dir.glob(".*.parquet.tmp*"):  # a write killed halfway
            stale.unlink(missing_ok=True)
        if rebuild_tables:
            if not trials.uri and not any(
                (trials.trial_dir(config) / SUMMARY_FILE).is_file() for config in configs.values()
            ):
                raise ConfigError(
                    f"--rebuild-tables: {trials.root} holds no trial folder of sweep {sweep.name}, "
                    "so nothing to rebuild the tables from (is --storage the sweep's?); the tables "
                    "are left as they are"
                )
            for table in results_dir.glob("*.parquet"):
                table.replace(backup_name(table))
            log(f"[{sweep.name}] tables set aside (*.parquet.replaced*); rebuilding them")
        searcher = None
        if sweep.search:
            searcher = searcher_for(sweep, results_dir, log)
            configs.update(searcher.proposals())  # every proposal so far: collected, finished, told
            left = searcher.unfinished()
            if left:
                log(
                    f"[{sweep.name}] search: {len(left)} proposal(s) a stopped driver left "
                    "unfinished train first (from their checkpoints)"
                )
        collect(trials, results_dir, configs)  # what a killed driver left behind
        done_before = complete_keys(results_dir) & set(configs)
        pending = pending_keys(configs, done_before)
        if pending and not mix_corpora:  # (with nothing to train, nothing is mixed)
            check_one_corpus(sweep, results_dir, log)
        what = "trials (fixed, and searched so far)" if sweep.search else "trials"
        log(
            f"[{sweep.name}] {len(configs)} {what}: {len(done_before)} already finished, "
            f"{len(pending)} to run; trial folders in {trials.uri or trials.root}, tables in {results_dir}"
        )
        not_ended = []
        if pending:
            not_ended = trainer.train(configs, pending, done_before=len(done_before))
            launched += len(pending)
        if searcher is not None and not not_ended:
            searched, not_ended = _search(sweep, searcher, trainer, configs, results_dir, log)
            launched += searched
        collect(trials, results_dir, configs)
        mark_current(results_dir, configs)
        finished = complete_keys(results_dir) & set(configs)
    failed = failed_keys(configs, finished)
    if not_ended:  # a trainer returns early only when stopped (Tune's SIGINT handler)
        raise SweepInterrupted(
            interrupted_message(sweep.name, len(finished), len(configs), bool(sweep.search))
        )
    outcome = SweepOutcome(
        trials=len(configs),
        finished=len(finished),
        failed=failed,
        launched=launched,
        wall_time_s=time.monotonic() - started,
        results_dir=results_dir,
    )
    log(
        f"[{sweep.name}] {outcome.finished}/{outcome.trials} finished, {len(failed)} failed "
        f"({outcome.launched} launched in this run, {outcome.wall_time_s:.0f}s); results in {results_dir}"
    )
    return outcome


def _search(sweep, searcher, trainer, configs, results_dir, log) -> tuple[int, list[str]]:
    """The search phase: tell the searcher what the tables hold, then train what it asks.
    Returns the trials launched and those the trainer did not end."""
    from dualsweep.results import score_columns

    runs_path, evals_path = results_dir / RUNS_TABLE, results_dir / EVALS_TABLE
    runs = read_table(runs_path) if runs_path.is_file() else pd.DataFrame()
    metric = sweep.search.metric
    needs_scores = metric not in runs.columns and evals_path.is_file()  # a score metric
    scores = score_columns(read_table(evals_path)) if needs_scores else None
    observed = observed_table(runs, scores, metric)
    left = searcher.start(observed)
    configs.update(searcher.proposals())  # with the runs a lost search.db forgot, now told
    not_ended: list[str] = []
    loop = SearchLoop(
        searcher, sweep.base, observed_points(observed, sweep.base), configs.setdefault
    )
    if left:
        done_before = len(complete_keys(results_dir) & set(configs))
        not_ended = trainer.search(configs, loop, done_before=done_before)
    if summary := searcher.summary():
        log(f"[{sweep.name}] {summary}")
    return len(loop.launched), not_ended
