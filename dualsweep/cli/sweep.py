"""The commands on a sweep file: `sweep` (run every trial on Ray Tune), `plan` (print its
trials, tokens and compute without launching anything) and `status` (each trial's state,
read from its folder).

What belongs here: validating the sweep file and its folders before anything is created or
launched, registering the searchers built on the analysis (cli/searchers.py), then one call
of `run_sweep` or `plan_sweep`. Ray is imported inside `sweep` only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path

from dualsweep.cli.checks import EXIT_FAILED, sweep_of, writable_folder
from dualsweep.config import ConfigError
from dualsweep.paths import FULL_DISK_FREE_BYTES, free_bytes
from dualsweep.schema import RUN_MARKER_FILE


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = sweep_of(args.sweep_file)  # validated before anything is created or launched
    from dualsweep.cli.searchers import register_searchers
    from dualsweep.data.sources import check_source
    from dualsweep.sweep.runner import run_sweep

    register_searchers()  # the algorithms built on the analysis (sweep/searcher.py)

    writable_folder(Path(args.results), "--results")
    if "://" not in args.storage:
        writable_folder(Path(args.storage), "--storage")
        trials = Path(args.storage) / sweep.name
        if (trials / RUN_MARKER_FILE).is_file():  # trial folders would land beside its files
            raise ConfigError(
                f"--storage: {trials} is a single run's folder (`dualsweep train --out`), not a "
                f"sweep's; give the sweep another --storage, or move the run"
            )
    check_source(sweep.base.data)  # a missing corpus fails here, not in every trial
    sweep = with_absolute_task_paths(sweep)  # trials do not share this working directory
    if sweep.base.evaluation.lm_eval_tasks:  # an unknown or broken task fails here too
        from dualsweep.evaluate.harness import check_tasks

        check_tasks(sweep.base.evaluation)

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    try:
        with terminate_like_interrupt():
            outcome = run_sweep(
                sweep,
                results_root=args.results,
                storage=args.storage,
                address=address,
                rebuild_tables=args.rebuild_tables,
                mix_corpora=args.mix_corpora,
            )
    except (ConnectionError, RuntimeError) as e:  # no cluster, or another driver on this sweep
        print(f"dualsweep: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if outcome.failed:
        print(
            f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr
        )
        print(
            "their errors are in the `error` and `evaluation_error` columns of runs.parquet; "
            "re-run to retry them",
            file=sys.stderr,
        )
        for folder, flag in ((args.storage, "--storage"), (args.results, "--results")):
            if "://" not in folder and (free := free_bytes(Path(folder))) < FULL_DISK_FREE_BYTES:
                print(
                    f"{flag} {folder} is full ({free:,} bytes free): free space there before "
                    "re-running (finished trials are kept)",
                    file=sys.stderr,
                )
        return EXIT_FAILED
    return 0


@contextlib.contextmanager
def terminate_like_interrupt():
    """SIGTERM (`kill`, a scheduler ending a job) stops the sweep as Ctrl-C does: the signal
    is turned into a SIGINT, which Ray Tune handles by stopping the trials and returning what
    finished, so the driver exits 130 with the line saying how to finish (instead of dying
    with a Ray stack dump)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(
        signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT)
    )
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def with_absolute_task_paths(sweep):
    """The sweep with its task files and harness task folder as absolute paths: a trial runs
    in its own folder (Ray Tune's working directory), where a relative path means nothing.
    Evaluation settings are not part of a run key, so no trial's identity changes."""
    evaluation = sweep.base.evaluation
    tasks = tuple(
        str(Path(t).expanduser().resolve()) if t.endswith(".jsonl") else t for t in evaluation.tasks
    )
    include = evaluation.lm_eval_include_path
    include = str(Path(include).expanduser().resolve()) if include else None
    if tasks == evaluation.tasks and include == evaluation.lm_eval_include_path:
        return sweep
    base = sweep.base.replace(tasks=tasks, lm_eval_include_path=include)
    return dataclasses.replace(sweep, base=base)


def cmd_plan(args: argparse.Namespace) -> int:
    sweep = sweep_of(args.sweep_file)
    from dualsweep.sweep.plan import format_plan, hardware, plan_sweep

    def positive(flag: str, text: str | None, kind: type, what: str):
        if text is None:
            return None
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            raise ConfigError(f"{flag}: must be a positive {what} (got {text})")
        return value

    gpus = positive("--gpus", args.gpus, int, "integer")
    cpus = positive("--cpus", args.cpus, int, "integer")
    time_limit = positive("--time", args.time, float, "number of hours")
    peak = args.peak_tflops * 1e12
    on_cpu = hardware(sweep, peak_flops=peak, mfu=args.mfu).is_cpu
    for flag, given, fits in (("--gpus", gpus, not on_cpu), ("--cpus", cpus, on_cpu)):
        if given is not None and not fits:
            trains_on = (
                "CPU (train.device cpu or resources.gpu 0): give --cpus"
                if on_cpu
                else "GPUs: give --gpus"
            )
            raise ConfigError(f"{flag}: sweep {sweep.name} trains on {trains_on}")
    print(
        format_plan(
            sweep,
            plan_sweep(sweep, peak_flops=peak, mfu=args.mfu),
            peak_flops=peak,
            mfu=args.mfu,
            units=cpus if on_cpu else gpus,
            time_limit=time_limit,
        )
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dualsweep.results import sweep_dir
    from dualsweep.sweep.status import format_status, sweep_status
    from dualsweep.sweep.storage import TrialStorage

    sweep = sweep_of(args.sweep)
    storage = TrialStorage(args.storage, sweep.name)
    states = sweep_status(sweep, storage, sweep_dir(sweep.name, args.results))
    print(format_status(sweep.name, states))
    return 0
