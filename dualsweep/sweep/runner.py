"""`run_sweep`: the sweep's trials on Ray Tune, embedded or on a cluster.

What belongs here: the Ray session (its environment, init and shutdown, resources, Tune's
log lines, the SIGTERM handler Ray installs) and `TuneTrainer`, which trains a sweep's trials
on Tune: a list of pending trials as a grid, or a search's proposals through a Tune searcher
that drives the runner's `SearchLoop`. What to train, resume and record is decided in
decisions.py and driver.py, without Ray.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from dualsweep.config import ConfigError, RunConfig, SweepConfig, run_key, to_plain
from dualsweep.config.sweep import TRIAL_DRIVER_CPU
from dualsweep.results import sweep_dir
from dualsweep.schema import RESULTS_ROOT
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import collect, error_line, record_failure

from .decisions import SearchLoop, SweepOutcome, result_value
from .driver import Trainer, drive_sweep

DEFAULT_STORAGE = "runs"


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


def trial_params(config: RunConfig) -> dict:
    """What a Tune trial carries to the trainable (which rebuilds its config from the base)."""
    return {
        "run_key": run_key(config),
        "alpha": config.objective.alpha,
        "repetitions": config.data.repetitions,
        "seed": config.train.seed,
    }


def _tune_searcher(loop: SearchLoop, metric: str, mode: str):
    """A Tune searcher over the runner's SearchLoop: Tune asks once per free slot."""
    from ray.tune.search import Searcher

    class LoopSearch(Searcher):
        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the space is the searcher's own: (alpha, R) points

        def save(self, checkpoint_path: str) -> None:
            pass  # a searcher keeps its own record (Optuna's: search.db, at every ask and tell)

        def suggest(self, trial_id: str):
            config = loop.next(trial_id)
            if config == "done":
                return Searcher.FINISHED
            return None if config is None else {"trial": trial_params(config)}

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            pass  # a trial reports once, at its end

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            loop.complete(trial_id, result_value(result, metric, error))

    return LoopSearch(metric=metric, mode=mode)


class TuneTrainer:
    """Trains a sweep's trials on Ray Tune (the `Trainer` of driver.py): each call starts or
    joins Ray, runs one Tuner, records the failures it saw, and shuts an embedded Ray down."""

    def __init__(
        self,
        sweep: SweepConfig,
        trials: TrialStorage,
        results_dir: Path,
        address: str | None,
        log: Callable[[str], None] = print,
    ):
        self.sweep, self.trials, self.results_dir = sweep, trials, results_dir
        self.address, self.log = address, log

    def train(self, configs, pending: list[str], *, done_before: int) -> list[str]:
        return self._tune(configs, done_before=done_before, pending=pending)

    def search(self, configs, loop: SearchLoop, *, done_before: int) -> list[str]:
        return self._tune(configs, done_before=done_before, loop=loop)

    def _tune(self, configs, *, done_before: int, pending=None, loop=None) -> list[str]:
        """Run trials on Tune: the `pending` keys, or those the `loop` proposes. Return the keys
        of those it did not end (stopped)."""
        sweep, trials, address, log = self.sweep, self.trials, self.address, self.log
        _ray_environment(address)
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        from dualsweep.sweep.progress import SweepProgress
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
                        working_dir=os.getcwd(),  # relative paths in the config start here
                    ),
                    # A data-parallel trial's process only waits: its workers reserve their own.
                    {"cpu": resources.cpu, "gpu": resources.gpu}
                    if resources.workers == 1
                    else {"cpu": TRIAL_DRIVER_CPU},
                )
                progress = SweepProgress(
                    sweep.name,
                    len(pending) if loop is None else loop.searcher.remaining,
                    done_before,
                    on_trial_end=lambda key: collect(trials, self.results_dir, {key: configs[key]}),
                    log_path=lambda key: trials.log_path(configs[key]),
                    log=log,
                )
                if loop is None:
                    space = {"trial": tune.grid_search([trial_params(configs[k]) for k in pending])}
                    searcher, samples = None, 1
                    concurrency = sweep.max_concurrent_trials or (
                        _trials_that_fit(sweep) if resources.workers > 1 else None
                    )
                else:
                    loop.will_not_run = progress.will_not_run
                    samples, space = loop.searcher.remaining, {}
                    mode = "min" if sweep.search.lower_is_better else "max"
                    searcher = _tune_searcher(loop, metric, mode)
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
                        name=f"{sweep.name}-{'search-' if loop else ''}{stamp}",
                        storage_path=trials.tune_storage,
                        failure_config=tune.FailureConfig(max_failures=sweep.retries),
                        callbacks=[progress, JsonLoggerCallback()],
                        verbose=0,
                    ),
                )
                self._record_failures(tuner.fit(), configs)
                started_keys = pending if loop is None else progress.launched
                return [key for key in started_keys if key not in progress.ended]
            finally:
                if started_ray:
                    import ray

                    ray.shutdown()

    def _record_failures(self, grid, configs) -> None:
        """Each failed trial's error line, in its folder (the tables' `error` column)."""
        for result in grid:
            try:
                error = result.error
            except Exception as e:  # noqa: BLE001 - Tune's pickled error unreadable (a full disk)
                error = e
            if error is None:
                continue
            # A trial whose actor never started has no config: its folder is its key.
            key = result.config["trial"]["run_key"] if result.config else Path(result.path).name
            if key not in configs:
                continue
            # Tune's error text ends with the trial's own "Type: message" line.
            text = str(error) or type(error).__name__
            try:
                record_failure(configs[key], self.trials, error_line(text))
            except OSError as e:  # its folder's disk is full: the exit lists it anyway
                self.log(
                    f"[{self.sweep.name}] the failure of {key} not recorded in its folder: {e}"
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
    trainer: Trainer | None = None,
) -> SweepOutcome:
    """Run (or finish) a sweep; with `rebuild_tables`, first set the existing tables aside
    (`<table>.parquet.replaced`) and write them again from the trial folders.

    A sweep whose finished trials were trained on another corpus than the one its config now
    names is refused (ConfigError, nothing launched): one table would mix two corpora. With
    `mix_corpora` the rest train on the corpus as it is now. `trainer`: what trains the
    trials (default: a `TuneTrainer` on the Ray at `address`, or an embedded one)."""
    results_dir = sweep_dir(sweep.name, results_root)
    trials = TrialStorage(storage, sweep.name)
    if trainer is None:
        trainer = TuneTrainer(sweep, trials, results_dir, address, log)
    return drive_sweep(
        sweep,
        trainer,
        results_dir=results_dir,
        trials=trials,
        log=log,
        rebuild_tables=rebuild_tables,
        mix_corpora=mix_corpora,
    )
