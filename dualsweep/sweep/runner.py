"""`run_sweep`: the sweep's trials on Ray Tune, embedded or on a cluster, with resume.

Every run of a sweep starts by collecting the trial folders into the results tables, then
launches only the trials without a finished row: after a crash, a Ctrl-C or a `kill -9`
of the driver, re-running the same command finishes the sweep, never re-training a
finished trial and resuming interrupted ones from their checkpoints. Tune's own experiment
state is not used for this (it is snapshotted only every few seconds); the trial folders are.

A sweep with `search` runs in two phases: its fixed trials (the anchors, any points, and
every proposal so far without a finished row: those a killed driver left unfinished resume,
failed ones are retried), then the Optuna search for the rest of each R's budget
(sweep/search.py), its studies first told what the tables hold.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dualsweep.config import ConfigError, SweepConfig, run_key, to_plain
from dualsweep.config.sweep import TRIAL_DRIVER_CPU
from dualsweep.paths import exclusive_lock
from dualsweep.results import read_table, sweep_dir
from dualsweep.schema import EVALS_TABLE, RESULTS_ROOT, RUNS_TABLE, SUMMARY_FILE
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import (
    collect,
    complete_keys,
    error_line,
    mark_current,
    record_failure,
)

DEFAULT_STORAGE = "runs"


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped the sweep; what finished is in the tables."""


class _TuneLogs(logging.Filter):
    """Ray's log lines as the sweep shows them (a filter on Ray's handlers).

    Dropped: Tune's notes that mislead here: its Tuner.restore (a sweep resumes by re-running
    the command, from the trial folders), the per-trial metric files it cannot find for
    trials that never started (it does not write them: our tables hold the results), and its
    list of the trials that did not complete, by Tune's trial names (ours says which, by run
    key). Shortened to one line: a record with a traceback (Tune's own failures, such as
    saving its state on a full disk, or one formatted into the message), which keeps the
    exception's `Type: message`."""

    HINTS = ("Tuner.restore", "Failed to fetch metrics", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(hint in message for hint in self.HINTS):
            return False
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message.rstrip(': ')}: {type(error).__name__}: {error}"
        elif "Traceback (most recent call last):" in message:  # one formatted into the text
            head, trace = message.split("Traceback (most recent call last):", 1)
            message = f"{head.strip().rstrip(':')}: {error_line(trace)}"
        else:
            return True
        record.msg, record.args, record.exc_info, record.exc_text = message, None, None, None
        return True


@contextlib.contextmanager
def _tune_logs():
    """Ray's handlers filtered by _TuneLogs (they exist once `ray` is imported)."""
    handlers = logging.getLogger("ray").handlers
    shown = _TuneLogs()
    for handler in handlers:
        handler.addFilter(shown)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(shown)


@dataclass(frozen=True)
class SweepOutcome:
    trials: int
    finished: int
    failed: list[str]
    """Keys of the trials not finished and evaluated after this run."""
    launched: int
    """Trials launched by this run: to train, or (already trained) only to evaluate."""
    wall_time_s: float
    results_dir: Path


@contextlib.contextmanager
def _sweep_lock(results_dir: Path):
    """One driver per sweep at a time: a second one would launch the same trials."""
    try:
        with exclusive_lock(results_dir / ".driver.lock", wait=False):
            yield
    except BlockingIOError:
        raise RuntimeError(f"another `dualsweep sweep` is running on {results_dir}") from None


def _ray_environment(address: str | None) -> None:
    """Settings Ray reads when imported, so this runs before the first `import ray`.

    Ray 2.60 clusters authenticate clients with a token, and a client that has one but is
    not told to use it fails to connect after ~20 s with no hint why."""
    has_token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()
    if address and has_token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    # Tune's own banner and tables: our progress line says what matters.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Its ~40-line traceback of every failed try: our live line gives the error's last line
    # and the trial's train.log, which holds the traceback.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Tune's default per-trial CSV and TensorBoard files duplicate our tables, and creating
    # the TensorBoard one imports torch in the driver (about 1 s of every sweep's start).
    # The JSON one, which Tune's results need, is passed explicitly in _tune.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def _start_ray(address: str | None) -> bool:
    """Join a cluster at `address`, or start an embedded one; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    with _keep_sigterm_handler():
        _init_ray(address)
    return True


@contextlib.contextmanager
def _keep_sigterm_handler():
    """ray.init installs Ray's own SIGTERM handler (a stack dump, then exit 1) over the
    caller's: the command line's, which stops the sweep as Ctrl-C does, is put back."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def _init_ray(address: str | None) -> None:
    import ray

    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **quiet)  # the cluster's resources, not ours
        except ConnectionError as e:
            raise ConnectionError(
                f"could not join the Ray cluster at {address} ({e}); is it running (`ray status`), "
                "and does this client have the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)?"
            ) from None
    else:
        # Ray announces at every local start that it turned token auth on: a safe default,
        # kept, that needs no action from the user.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
        # "local" never attaches to a stale cluster recorded in /tmp/ray.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)


def _check_resources(sweep: SweepConfig, address: str | None, log) -> None:
    """A trial that can never be placed makes Tune wait forever: say so instead."""
    import ray

    total = ray.cluster_resources()
    need = sweep.resources.per_trial()
    if all(need[r] <= total.get(r, 0) for r in need):
        return
    where = f"the Ray cluster at {address}" if address else "the embedded Ray on this machine"
    res = sweep.resources
    each = f"cpu={res.cpu:g}, gpu={res.gpu:g}"
    if res.workers > 1:
        each = f"{res.workers} workers of {each} (CPU={need['CPU']:g}, GPU={need['GPU']:g} in all)"
    message = (
        f"resources: each trial needs {each}, but "
        f"{where} has CPU={total.get('CPU', 0):g}, GPU={total.get('GPU', 0):g}"
    )
    if not address:  # (a bad input, like a config asking for a device this machine lacks)
        raise ConfigError(
            f"{message}; run on a cluster (RAY_ADDRESS) or lower the sweep's resources"
        )
    log(f"warning: {message}; trials wait until the cluster grows")


def _trials_that_fit(sweep: SweepConfig) -> int:
    """How many trials the cluster holds at once.

    The limit where Tune's own (what is free now) is not enough: a data-parallel trial's
    process reserves almost nothing, so Tune would start every trial at once, all but a few
    waiting for their worker groups; and a searcher asked for every trial at once would
    propose them all before any result came back."""
    import ray

    total, need = ray.cluster_resources(), sweep.resources.per_trial()
    fits = [total.get(r, 0) // need[r] for r in need if need[r] > 0]
    return max(1, int(min(fits)))


def _backup_name(table: Path) -> Path:
    """`<table>.replaced`, or `.replaced.2`, `.3`, ...: an earlier backup is never overwritten."""
    candidate, n = table.with_name(f"{table.name}.replaced"), 1
    while candidate.exists():
        n += 1
        candidate = table.with_name(f"{table.name}.replaced.{n}")
    return candidate


def _check_one_corpus(sweep: SweepConfig, results_dir: Path, log) -> None:
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


def run_sweep(
    sweep: SweepConfig,
    *,
    results_root: str | Path = RESULTS_ROOT,
    storage: str | Path = DEFAULT_STORAGE,
    address: str | None = None,
    log: Callable[[str], None] = print,
    rebuild_tables: bool = False,
    mix_corpora: bool = False,
) -> SweepOutcome:
    """Run (or finish) a sweep; with `rebuild_tables`, first set the existing tables aside
    (`<table>.parquet.replaced`) and write them again from the trial folders.

    A sweep whose finished trials were trained on another corpus than the one its config now
    names is refused (ConfigError, nothing launched): one table would mix two corpora. With
    `mix_corpora` the rest train on the corpus as it is now."""
    started = time.monotonic()
    configs = {run_key(c): c for c in sweep.trials()}
    fixed = set(configs)
    results_dir = sweep_dir(sweep.name, results_root)
    trials = TrialStorage(storage, sweep.name)
    results_dir.mkdir(parents=True, exist_ok=True)
    launched = 0
    with _sweep_lock(results_dir):
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
                table.replace(_backup_name(table))
            log(f"[{sweep.name}] tables set aside (*.parquet.replaced*); rebuilding them")
        studies = {}
        if sweep.search:
            from dualsweep.sweep.search import open_studies, unfinished_proposals

            studies = open_studies(sweep, results_dir)
            for study in studies.values():  # every proposal so far: collected, finished, told
                configs.update(study.proposals(sweep.base))
            left = unfinished_proposals(studies, sweep.base)
            if left:
                log(
                    f"[{sweep.name}] search: {len(left)} proposal(s) a stopped driver left "
                    "unfinished train first (from their checkpoints)"
                )
        collect(trials, results_dir, configs)  # what a killed driver left behind
        done_before = complete_keys(results_dir) & set(configs)
        pending = [key for key in configs if key not in done_before]
        if pending and not mix_corpora:  # (with nothing to train, nothing is mixed)
            _check_one_corpus(sweep, results_dir, log)
        what = "trials (fixed, and searched so far)" if sweep.search else "trials"
        log(
            f"[{sweep.name}] {len(configs)} {what}: {len(done_before)} already finished, "
            f"{len(pending)} to run; trial folders in {trials.uri or trials.root}, tables in {results_dir}"
        )
        not_ended = []
        if pending:
            not_ended = _tune(
                sweep, configs, trials, results_dir, address, log,
                pending=pending, done_before=len(done_before),
            )  # fmt: skip
            launched += len(pending)
        if sweep.search and not not_ended:
            searched, not_ended = _search(
                sweep, studies, fixed, configs, trials, results_dir, address, log
            )
            launched += searched
        collect(trials, results_dir, configs)
        mark_current(results_dir, configs)
        finished = complete_keys(results_dir) & set(configs)
    failed = [key for key in configs if key not in finished]
    if not_ended:  # Tune returns early only when stopped (its SIGINT handler)
        raise SweepInterrupted(
            f"sweep {sweep.name} interrupted with {len(finished)}/{len(configs)} trials finished; "
            f"run the same command again to finish the other {len(failed)} (finished trials are "
            "kept, stopped ones resume from their last checkpoint"
            + (", the search where it stopped)" if sweep.search else ")")
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


def _metric_values(results_dir: Path, metric: str) -> tuple[pd.DataFrame, Callable[[str], float]]:
    """runs.parquet, and the metric of one of its runs by run key (NaN if none): the tables
    read and the scores computed once, for every run the search is told about."""
    from dualsweep.results import read_table, score_columns

    runs_path, evals_path = results_dir / RUNS_TABLE, results_dir / EVALS_TABLE
    runs = read_table(runs_path) if runs_path.is_file() else pd.DataFrame()
    if not len(runs):
        return runs, lambda key: math.nan
    table = runs.set_index("run_key")
    if evals_path.is_file() and metric not in table.columns:
        table = table.join(score_columns(read_table(evals_path)))
    values = table[metric].astype(float).to_dict() if metric in table.columns else {}
    return runs, lambda key: values.get(key, math.nan)


def _search(
    sweep, studies, fixed, configs, trials, results_dir, address, log
) -> tuple[int, list[str]]:
    """The search phase: tell the studies what the tables hold, then propose and train the
    rest of each R's budget. Returns the trials launched and those Tune did not end."""
    from dualsweep.sweep.search import (
        best_trials,
        has_ended,
        searched_counts,
        sync_studies,
        trial_params,
    )

    search = sweep.search
    runs, value = _metric_values(results_dir, search.metric)
    sync_studies(studies, sweep.base, fixed, runs, value, log)
    for study in studies.values():  # with the runs a lost search.db forgot, now told
        configs.update(study.proposals(sweep.base))
    spent = searched_counts(studies, sweep.base, fixed)
    ended = {r for r, study in studies.items() if has_ended(study, sweep.base)}
    finished = runs[runs["status"] == "finished"] if len(runs) else runs
    known = {key: v for key in finished.get("run_key", []) if not math.isnan(v := value(key))}
    remaining = {
        r: 0 if r in ended else max(0, search.trials_per_repetition - n) for r, n in spent.items()
    }
    log(
        f"[{sweep.name}] search ({search.sampler}, {search.metric}): "
        + ", ".join(
            f"R={r} {spent[r]}/{search.trials_per_repetition}" + (" (ended)" if r in ended else "")
            for r in studies
        )
        + f"; {sum(remaining.values())} to propose"
    )
    launched: list[str] = []
    not_ended: list[str] = []
    if sum(remaining.values()):

        def new_trial(r: int, alpha: float) -> dict:
            config = sweep.base.replace(alpha=alpha, repetitions=r)
            params = trial_params(config)
            configs.setdefault(params["run_key"], config)
            launched.append(params["run_key"])
            return params

        not_ended = _tune(
            sweep, configs, trials, results_dir, address, log,
            search=(studies, remaining, known, new_trial), done_before=len(complete_keys(results_dir) & set(configs)),
        )  # fmt: skip
    best = best_trials(studies)
    log(
        f"[{sweep.name}] best so far: "
        + ", ".join(f"R={r} alpha={a:.4g} ({v:.4g})" for r, (a, v) in sorted(best.items()))
    )
    return len(launched), not_ended


def _tune(
    sweep,
    configs,
    trials: TrialStorage,
    results_dir,
    address,
    log,
    *,
    done_before: int,
    pending: list[str] | None = None,
    search=None,
) -> list[str]:
    """Run trials on Tune: the `pending` keys, or those the `search` (studies, remaining
    budget per R, new_trial) proposes. Return the keys of those it did not end (stopped)."""
    _ray_environment(address)
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from dualsweep.sweep.progress import SweepProgress
    from dualsweep.sweep.search import make_searcher, quiet_optuna_logs, trial_params
    from dualsweep.sweep.trainable import run_trial

    with _tune_logs():
        started_ray = _start_ray(address)
        try:
            _check_resources(sweep, address, log)
            resources = sweep.resources
            metric = sweep.search.metric if sweep.search else None
            trainable = tune.with_resources(
                tune.with_parameters(
                    run_trial,
                    # W&B groups a sweep's trials by its name unless the sweep file says
                    base=to_plain(
                        sweep.base
                        if sweep.base.train.wandb_group
                        else sweep.base.replace(wandb_group=sweep.name)
                    ),
                    storage=trials,
                    resources=resources,
                    metric=metric,
                ),
                # A data-parallel trial's process only waits: its workers reserve their own.
                {"cpu": resources.cpu, "gpu": resources.gpu}
                if resources.workers == 1
                else {"cpu": TRIAL_DRIVER_CPU},
            )
            progress = SweepProgress(
                sweep.name,
                len(pending) if search is None else sum(search[1].values()),
                done_before,
                on_trial_end=lambda key: collect(trials, results_dir, {key: configs[key]}),
                log_path=lambda key: trials.log_path(configs[key]),
                log=log,
            )
            if search is None:
                space = {"trial": tune.grid_search([trial_params(configs[k]) for k in pending])}
                searcher, samples = None, 1
                concurrency = sweep.max_concurrent_trials or (
                    _trials_that_fit(sweep) if resources.workers > 1 else None
                )
            else:
                studies, remaining, known, new_trial = search
                quiet_optuna_logs()
                samples = sum(remaining.values())
                space = {}
                searcher = make_searcher(
                    studies, remaining, sweep.search, metric, sweep.base, known, new_trial, log,
                    ended_early=progress.will_not_run,
                )  # fmt: skip
                concurrency = sweep.max_concurrent_trials or _trials_that_fit(sweep)
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    num_samples=samples,
                    max_concurrent_trials=concurrency,
                    reuse_actors=True,  # a fresh actor pays the torch + Lightning import per trial
                    trial_dirname_creator=lambda trial: trial.config["trial"]["run_key"],
                ),
                run_config=tune.RunConfig(
                    name=f"{sweep.name}-{'search-' if search else ''}{stamp}",
                    storage_path=trials.tune_storage,
                    failure_config=tune.FailureConfig(max_failures=sweep.retries),
                    callbacks=[progress, JsonLoggerCallback()],
                    verbose=0,
                ),
            )
            grid = tuner.fit()
            for result in grid:
                try:
                    error = result.error
                except Exception as e:  # noqa: BLE001 - Tune's pickled error unreadable (a full disk)
                    error = e
                if error is not None:
                    # A trial whose actor never started has no config: its folder is its key.
                    key = (
                        result.config["trial"]["run_key"]
                        if result.config
                        else Path(result.path).name
                    )
                    if key not in configs:
                        continue
                    # Tune's error text ends with the trial's own "Type: message" line.
                    text = str(error) or type(error).__name__
                    try:
                        record_failure(configs[key], trials, error_line(text))
                    except OSError as e:  # its folder's disk is full: the exit lists it anyway
                        log(f"[{sweep.name}] the failure of {key} not recorded in its folder: {e}")
            started_keys = pending if search is None else progress.launched
            return [key for key in started_keys if key not in progress.ended]
        finally:
            if started_ray:
                import ray

                ray.shutdown()
