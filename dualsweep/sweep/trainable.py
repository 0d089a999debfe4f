"""The Ray Tune function trainable: one sweep trial = one `train()` in its own folder.

It runs in a Ray worker process. A finished trial is never trained again (its summary says
so); an interrupted one resumes from its checkpoint; a failed one raises, so that Tune
retries it up to the sweep's `retries`. A finished trial is then evaluated on the
configured tasks and modes, unless it already was (adding a task evaluates, not retrains).

An error in the trial's input (its config, its corpus, a task file) comes back on every
try: it is recorded and reported as `status: failed` instead of raised, so Tune ends the
trial without retrying it. Some of these are about the node rather than the config (a
`cuda` device where there is none, a corpus path missing on one node): they are not retried
either; fix the node or the config and run the sweep again.
"""

from __future__ import annotations

from dualsweep.config import ConfigError, run_config_from_dict
from dualsweep.schema import EVAL_ERROR_FILE
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import (
    evaluated,
    record_attempt,
    record_failure,
    trial_lock,
    trial_status,
)


def _input_errors() -> tuple[type[Exception], ...]:
    """The errors of a trial's input (imported here: the driver imports this module)."""
    from dualsweep.data.sources import DataError
    from dualsweep.evaluate.tasks import TaskError

    return (ConfigError, DataError, TaskError)


class TrialFailed(RuntimeError):
    """train() recorded a failed run (its error is the message)."""


def _push_checkpoints(storage: TrialStorage, key: str):
    """A Lightning callback mirroring the trial folder to its URI after each new checkpoint."""
    import lightning as L

    class PushCheckpoints(L.Callback):
        pushed = None

        def on_train_batch_end(self, trainer, module, *args):
            if module.last_checkpoint_step != self.pushed:
                self.pushed = module.last_checkpoint_step
                storage.push(key)

    return PushCheckpoints()


def run_trial(
    params: dict, *, trials: dict[str, dict], storage: TrialStorage, threads: int
) -> None:
    """Train the trial unless it finished, evaluate it unless it was, and report to Tune."""
    import torch
    from ray import tune

    key = params["run_key"]
    report = {"status": "finished"}
    config = run_config_from_dict(trials[key])
    trial_dir = storage.trial_dir(key)
    trial_dir.mkdir(parents=True, exist_ok=True)
    with trial_lock(trial_dir):
        storage.pull(key)  # a URI holds the latest checkpoint, perhaps from another node
        if config.train.threads == 0:
            torch.set_num_threads(threads)  # one thread per reserved CPU, not the whole machine
        with (trial_dir / "train.log").open("a") as log_file:

            def log(line: str) -> None:
                print(line, file=log_file, flush=True)

            try:
                if trial_status(trial_dir) != "finished":  # finished trials are never retrained
                    record_attempt(trial_dir)
                    summary = _train(config, trial_dir, storage, key, log)
                    if summary.status != "finished":
                        raise TrialFailed(summary.error)
                if not evaluated(trial_dir, config.evaluation):
                    _evaluate(config, trial_dir, log)
            except _input_errors() as e:
                error = f"{type(e).__name__}: {e}"
                log(f"{error} (an input error: not retried)")
                if trial_status(trial_dir) != "finished":  # else _evaluate recorded it
                    record_failure(config, storage, key, error)
                report = {"status": "failed", "error": error}
            finally:
                storage.push(key)
    tune.report(report)


def _train(config, trial_dir, storage: TrialStorage, key: str, log):
    from dualsweep.training import train

    callbacks = [_push_checkpoints(storage, key)] if storage.uri else []
    return train(config, trial_dir, resume=True, callbacks=callbacks, log=log)


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
