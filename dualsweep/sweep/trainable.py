"""The Ray Tune function trainable: one sweep trial = one `train()` in its own folder.

It runs in a Ray worker process. A finished trial is never trained again (its summary says
so); an interrupted one resumes from its checkpoint; a failed one raises, so that Tune
retries it up to the sweep's `retries`.
"""

from __future__ import annotations

from dualsweep.config import run_config_from_dict
from dualsweep.sweep.storage import TrialStorage
from dualsweep.sweep.trials import record_attempt, trial_lock, trial_status


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
    import torch
    from ray import tune

    from dualsweep.training import train

    key = params["run_key"]
    config = run_config_from_dict(trials[key])
    trial_dir = storage.trial_dir(key)
    trial_dir.mkdir(parents=True, exist_ok=True)
    with trial_lock(trial_dir):
        storage.pull(key)  # a URI holds the latest checkpoint, perhaps from another node
        if trial_status(trial_dir) == "finished":  # e.g. a worker of a killed driver finished it
            tune.report({"status": "finished"})
            return
        record_attempt(trial_dir)
        if config.train.threads == 0:
            torch.set_num_threads(threads)  # one thread per reserved CPU, not the whole machine
        callbacks = [_push_checkpoints(storage, key)] if storage.uri else []
        with (trial_dir / "train.log").open("a") as log_file:
            summary = train(
                config,
                trial_dir,
                resume=True,
                callbacks=callbacks,
                log=lambda line: print(line, file=log_file, flush=True),
            )
        storage.push(key)
    if summary.status != "finished":
        raise TrialFailed(summary.error)
    tune.report(
        {
            "status": summary.status,
            "final_held_out_ar_loss": summary.final_held_out_ar_loss,
            "final_held_out_md_elbo": summary.final_held_out_md_elbo,
            "train_time_s": summary.train_time_s,
        }
    )
