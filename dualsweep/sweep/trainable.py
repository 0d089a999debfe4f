"""The Ray Tune function trainable: one sweep trial = one `train()` in its own folder.

It runs in a Ray worker process. A finished trial is never trained again (its summary says
so); an interrupted one resumes from its checkpoint; a failed one raises, so that Tune
retries it up to the sweep's `retries`. A finished trial is then evaluated on the
configured tasks and modes, unless it already was (adding a task evaluates, not retrains).

An error in the trial's input (its config, its corpus, a task file) comes back on every
try, and so does a loss that turned NaN or infinite (training is deterministic: the same
seed diverges at the same step): these are recorded and reported as `status: failed`
instead of raised, so Tune ends the trial without retrying it. Whatever is raised is written
to the trial's train.log first, traceback and all: the driver prints one line per failure. Some of these are about the node rather than the config (a
`cuda` device where there is none, a corpus path missing on one node): they are not retried
either; fix the node or the config and run the sweep again.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from dualsweep.config import ConfigError, Resources, run_config_from_dict, run_key
from dualsweep.schema import (
    EVAL_ERROR_FILE,
    EVALS_FILE,
    SUMMARY_FILE,
    TRAIN_LOG_FILE,
    objectives_in,
)
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import (
    evaluated,
    record_attempt,
    record_failure,
    trial_lock,
    trial_status,
    update_attempt,
)


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors of a trial's input (imported here: the driver imports this module)."""
    from dualsweep.data.sources import DataError
    from dualsweep.evaluate.tasks import TaskError

    return (ConfigError, DataError, TaskError)


class TrialFailed(RuntimeError):
    """train() recorded a failed run (its error is the message)."""


def retry_cannot_help(error: str) -> bool:
    """Whether a recorded error (`Type: message`) comes back on every try."""
    from dualsweep.training.module import NonFiniteLossError

    names = {e.__name__ for e in (*_input_errors(), NonFiniteLossError)}
    return error.split(":", 1)[0].strip() in names


def _push_checkpoints(storage: TrialStorage, config):
    """A Lightning callback mirroring the trial folder to its URI after each new checkpoint."""
    import lightning as L

    class PushCheckpoints(L.Callback):
        pushed = None

        def on_train_batch_end(self, trainer, module, *args):
            if module.last_checkpoint_step != self.pushed:
                self.pushed = module.last_checkpoint_step
                storage.push(config)

    return PushCheckpoints()


def work_in(directory: str) -> None:
    """Make the config's relative paths (data.path, task files, a harness include path) mean
    what they meant where the sweep was started: Tune starts a trial in the trial's folder,
    and a cluster's worker runs wherever its node was started. A node without the directory
    stays where it is (its relative paths fail naming the path: use absolute ones there)."""
    if directory and os.path.isdir(directory):
        os.chdir(directory)


def run_trial(
    params: dict,
    *,
    base: dict,
    storage: TrialStorage,
    resources: Resources,
    metric: str | None = None,
    working_dir: str = "",
) -> None:
    """Train the trial unless it finished, evaluate it unless it was, and report to Tune
    (with the value of `metric`, for a search, where the trial has one). `working_dir`: the
    driver's, where the config's relative paths point."""
    from ray import tune

    work_in(working_dir)
    trial = params["trial"]
    key = trial["run_key"]
    config = run_config_from_dict(base).replace(
        alpha=trial["alpha"], repetitions=trial["repetitions"], seed=trial["seed"]
    )
    if run_key(config) != key:  # a driver and a worker running different code versions
        raise ConfigError(
            f"trial {key}: this worker builds run key {run_key(config)} from the same point; "
            "install the driver's dualsweep version on every node"
        )
    report = {"status": "finished"}
    trial_dir = storage.trial_dir(config)
    trial_dir.mkdir(parents=True, exist_ok=True)
    with trial_lock(trial_dir):
        storage.pull(config)  # a URI holds the latest checkpoint, perhaps from another node
        if config.train.threads == 0 and resources.workers == 1:
            import torch  # (a data-parallel trial's process trains nothing itself)

            torch.set_num_threads(_threads(resources))  # one per reserved CPU, not all of them
        with (trial_dir / TRAIN_LOG_FILE).open("a") as log_file:

            def log(line: str) -> None:
                print(line, file=log_file, flush=True)

            try:
                if trial_status(trial_dir) != "finished":  # finished trials are never retrained
                    record_attempt(trial_dir, _node_id())
                    if resources.workers == 1:
                        status, error = _train(config, trial_dir, storage, log)
                    else:
                        status, error = _train_on_workers(
                            config, trial_dir, storage, key, resources, log
                        )
                    if status != "finished" and retry_cannot_help(error):
                        log(f"{error} (not retried: it would come back on every try)")
                        report = {"status": "failed", "error": error}
                    elif status != "finished":
                        raise TrialFailed(error)
                if report["status"] == "finished" and not evaluated(trial_dir, config.evaluation):
                    _evaluate(config, trial_dir, log)
            except _input_errors() as e:
                error = f"{type(e).__name__}: {e}"
                log(f"{error} (an input error: not retried)")
                if trial_status(trial_dir) != "finished":  # else _evaluate recorded it
                    record_failure(config, storage, error)
                report = {"status": "failed", "error": error}
            except BaseException:  # the driver prints one line; the whole story is here
                log(traceback.format_exc())
                raise
            finally:
                storage.push(config)
    if report["status"] == "finished":
        report.update(_final_losses(trial_dir))  # for the driver's "finished" line
        if metric:
            report[metric] = _metric_value(trial_dir, metric)
    tune.report(report)


def _final_losses(trial_dir: Path) -> dict[str, float]:
    """The final held-out value of each of the run's objectives, by its summary column."""
    import pandas as pd

    summary = pd.read_parquet(trial_dir / SUMMARY_FILE)
    columns = [f"final_{o.held_out}" for o in objectives_in(summary.columns)]
    return {c: float(summary[c].iloc[0]) for c in columns}


def _metric_value(trial_dir: Path, metric: str) -> float:
    import pandas as pd

    from dualsweep.results import metric_value

    summary = pd.read_parquet(trial_dir / SUMMARY_FILE).iloc[0]
    evals = trial_dir / EVALS_FILE
    return metric_value(
        summary, pd.read_parquet(evals) if evals.is_file() else pd.DataFrame(), metric
    )


def _threads(resources: Resources) -> int:
    return max(1, int(resources.cpu))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _train(config, trial_dir, storage: TrialStorage, log) -> tuple[str, str]:
    from dualsweep.training import train

    callbacks = [_push_checkpoints(storage, config)] if storage.uri else []
    summary = train(config, trial_dir, resume=True, callbacks=callbacks, log=log)
    return summary.status, summary.error


def _train_on_workers(
    config, trial_dir, storage: TrialStorage, key: str, resources: Resources, log
) -> tuple[str, str]:
    """Train on a Ray Train `TorchTrainer` group of `resources.workers` data-parallel workers.

    Every worker runs the same `train()` (training/run.py), which finds its rank in the
    process group Ray Train set up; rank 0 writes the trial folder. A worker that dies ends
    the group (no Train-level retry): Tune retries the trial, which resumes from the
    folder's checkpoint like any other trial. The nodes the workers ran on are added to
    this attempt's record.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig, WorkerGroupError
    from ray.train.torch import TorchConfig, TorchTrainer

    from dualsweep.config import to_plain

    # How often Ray Train's controller polls its workers (default 2 s): ours report nothing
    # until they end, so this is the delay before a finished or failed group is noticed.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

    on_gpu = resources.gpu > 0
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": to_plain(config),
            "trial_dir": str(trial_dir),
            "storage": storage,
            "threads": _threads(resources),
            "working_dir": os.getcwd(),  # work_in'd by run_trial
        },
        scaling_config=ScalingConfig(
            num_workers=resources.workers,
            use_gpu=on_gpu,
            resources_per_worker={
                "CPU": resources.cpu,
                **({"GPU": resources.gpu} if on_gpu else {}),
            },
        ),
        torch_config=TorchConfig(backend="nccl" if on_gpu else "gloo"),
        run_config=RunConfig(
            name=f"train-{key}",
            storage_path=storage.tune_storage,
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    log(f"training on {resources.workers} data-parallel workers (Ray Train)")
    storage.push(config)  # the workers, perhaps on other nodes, pull the folder as it is now
    try:
        nodes = trainer.fit().return_value
    except WorkerGroupError as e:
        # An input error on a worker (too few tokens for R, a bad corpus file) comes back on
        # every try: raised as itself, run_trial records it without a retry.
        for failure in e.worker_failures.values():
            cause = getattr(failure, "cause", None) or failure
            if isinstance(cause, _input_errors()):
                raise cause from None
            if isinstance(cause, TrialFailed) and retry_cannot_help(str(cause)):
                return "failed", str(cause)  # (a non-finite loss: rank 0 recorded it)
        raise
    storage.pull(config)  # what rank 0 wrote, from wherever it ran
    update_attempt(trial_dir, worker_nodes=nodes)
    return "finished", ""  # (a failed group raised: see _worker_loop)


def _worker_loop(loop: dict) -> list[str]:
    """One data-parallel worker's training (its rank comes from Ray Train's process group);
    returns the node ids of the group's workers, in rank order."""
    import contextlib

    import torch

    from dualsweep.training import train
    from dualsweep.training.distributed import Workers, gather_objects

    work_in(loop["working_dir"])
    config = run_config_from_dict(loop["config"])
    storage = loop["storage"]
    trial_dir = Path(loop["trial_dir"])
    workers = Workers.current(device_index=_ray_device_index())
    if torch.cuda.is_available():  # before the first collective: NCCL's objects go there
        torch.cuda.set_device(workers.device_index)
    nodes = gather_objects(_node_id(), workers)
    storage.pull(config)  # a URI: the checkpoint to resume from, on whichever node this runs
    if config.train.threads == 0:
        torch.set_num_threads(loop["threads"])
    with contextlib.ExitStack() as stack:
        if workers.writes:
            log_file = stack.enter_context((trial_dir / TRAIN_LOG_FILE).open("a"))

            def log(line: str) -> None:
                print(line, file=log_file, flush=True)
        else:

            def log(line: str) -> None:
                pass

        callbacks = [_push_checkpoints(storage, config)] if storage.uri and workers.writes else []
        try:
            summary = train(
                config, trial_dir, resume=True, callbacks=callbacks, log=log, workers=workers
            )
        finally:
            if workers.writes:
                storage.push(config)
    if summary.status != "finished":
        # Raised, not returned: Ray Train then ends the whole group at once, where a worker
        # that returned would leave the others waiting in their next collective.
        raise TrialFailed(summary.error)
    return nodes


def _ray_device_index() -> int | None:
    """The index, among the GPUs this worker sees, of the one Ray gave it; None without GPUs.

    Ray Train shows each worker all the GPUs its machine's workers hold
    (CUDA_VISIBLE_DEVICES), so that NCCL can use peer links; which of them is this worker's
    own is Ray's to say."""
    import torch

    if not torch.cuda.is_available():
        return None
    from ray.train.torch import get_device

    device = get_device()
    return device.index if device.type == "cuda" else None


def _evaluate(config, trial_dir, log) -> None:
    """Multiple-choice evaluation of the final model; a failure is kept for runs.parquet."""
    from dualsweep.evaluate.run import evaluate_run
    from dualsweep.training.run import resolve_device

    error_file = trial_dir / EVAL_ERROR_FILE
    device = "cuda" if resolve_device(config)[0] == "gpu" else "cpu"
    try:
        evaluate_run(trial_dir, config.evaluation, device=device, log=log, held_out=False)
    except Exception as e:  # noqa: BLE001 - recorded, then raised
        error_file.write_text(f"{type(e).__name__}: {e}")
        if isinstance(e, _input_errors()):
            raise  # run_trial reports it without a retry
        raise TrialFailed(f"evaluation failed: {type(e).__name__}: {e}") from e
    error_file.unlink(missing_ok=True)
