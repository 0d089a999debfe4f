"""`train(config, out_dir) -> RunSummary`: the one entry point of the CLI, the sweep and the tests.

Order of work: the config is already validated; data is prepared (into the cache only) and
checked against the run; only then is the run folder created, so a config or data error
leaves nothing behind. A run that fails after that still writes its curve so far and a
summary row with status "failed" and the error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from dualsweep.config import ConfigError, RunConfig, run_hparams, run_key, run_label, to_plain
from dualsweep.paths import atomic_write
from dualsweep.results import (
    RunSummary,
    atomic_write_text,
    code_version,
    curve_frame,
    held_out_summary,
    write_parquet,
)
from dualsweep.schema import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CORPUS_FILE,
    CURVE_FILE,
    EVAL_ERROR_FILE,
    EVALS_FILE,
    MODEL_FILE,
    RUN_LOCK_FILE,
    RUN_MARKER_FILE,
    SUMMARY_FILE,
    TOKENIZER_FILE,
)

if TYPE_CHECKING:
    from dualsweep.training.distributed import Workers

LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
PROGRESS_LINES = 20  # about this many progress lines per run when not on a terminal


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def resolve_device(config: RunConfig) -> tuple[str, str]:
    """(Lightning accelerator, Lightning precision) for the config on this machine."""
    import torch

    device = config.train.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device: 'cuda' requested but torch sees no CUDA device (got 'cuda')"
        )
    precision = config.train.precision
    if precision == "auto":
        precision = "bf16-mixed" if device == "cuda" else "32"
    return ("gpu" if device == "cuda" else "cpu"), ("32-true" if precision == "32" else precision)


def check_loggers(config: RunConfig) -> None:
    """Fail before any work when a configured logger's package is missing."""
    import importlib.util

    for name in config.train.loggers:
        packages = LOGGER_PACKAGES.get(name, ())
        if packages and not any(importlib.util.find_spec(p) for p in packages):
            raise ConfigError(
                f"train.loggers: {name!r} needs the {packages[0]} package: pip install 'dualsweep[{name}]'"
            )


def environment(device) -> dict[str, str]:
    """What a run's numbers may depend on beyond its config and code: the versions of Python,
    torch (and its CUDA), Lightning and Ray, and the device's name."""
    import platform
    from importlib import metadata

    import torch

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ""

    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "lightning_version": version("lightning"),
        "ray_version": version("ray"),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
        ),
    }


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loggers(config: RunConfig, out_dir: Path) -> list:
    from lightning.pytorch import loggers

    made = []
    train = config.train
    for name in train.loggers:
        if name == "csv":
            made.append(loggers.CSVLogger(out_dir, name="logs", version=""))
        elif name == "tensorboard":
            made.append(loggers.TensorBoardLogger(out_dir, name="logs", version="tensorboard"))
        elif name == "wandb":
            made.append(
                loggers.WandbLogger(
                    save_dir=str(out_dir),
                    project=train.wandb_project,
                    group=train.wandb_group or None,
                    name=run_label(config),
                    id=run_key(config),  # a resumed run continues its W&B run
                    resume="allow",
                    config=to_plain(config),
                )
            )
    for logger in made:  # alpha, R, seed and the rest in TensorBoard's HPARAMS view
        logger.log_hyperparams(run_hparams(config))
    return made


@contextlib.contextmanager
def _quiet_lightning():
    """Hide Lightning's start-up banners and tips; our own lines say what matters."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*exists and is not empty.*"
        )  # resume: rows replayed
        try:
            yield
        finally:
            logger.setLevel(level)


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    callbacks: Sequence = (),
    log: Callable[[str], None] = print,
    resume: bool = False,
    workers: Workers | None = None,
) -> RunSummary:
    """Train one model and write OUT/config.yaml, OUT/curve.parquet and OUT/summary.parquet.

    With `resume`, a checkpoint left in OUT by an interrupted run of the same config is
    loaded and training continues from its step, giving the same numbers as an
    uninterrupted run. The final weights go to OUT/model.pt. Everything that can be wrong
    with the config or the data fails before OUT is created.

    Inside an initialised `torch.distributed` process group (a Ray Train worker group, see
    sweep/trainable.py) every worker calls this with the same arguments: each trains its
    share of every batch (training/distributed.py), and rank 0 alone writes OUT (OUT must be
    one folder all workers can read, for resuming). The other workers return a summary
    without results, and an error on one of them is raised, so that the group stops; a
    failed summary on rank 0 is the caller's to turn into the group's end. Each worker trains
    on the accelerator of its `workers.device_index` (default: `Workers.current()`, its local
    rank).
    """
    import torch

    from dualsweep.training.distributed import Workers, training_device

    started, started_at = time.perf_counter(), _now()
    out_dir = Path(out_dir)
    workers = workers or Workers.current()
    if config.train.batch_size % workers.size:
        raise ConfigError(
            f"train.batch_size: {config.train.batch_size} sequences do not split evenly over "
            f"{workers.size} data-parallel workers"
        )
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    accelerator, precision = resolve_device(config)
    device = training_device(accelerator, workers, torch.cuda.device_count())
    if device.type == "cuda":  # NCCL's object collectives run on the current device
        torch.cuda.set_device(device)
    data, held_out = _checked_data(config, accelerator, log)
    with contextlib.ExitStack() as folder:
        if workers.writes:  # one training at a time in a folder, and only its own run
            folder.enter_context(
                _owned_run_folder(config, out_dir, resume, data.corpus.corpus_hash, log)
            )
            _start_run_folder(config, out_dir, data)
        module = _module(
            config,
            data,
            held_out,
            out_dir / CHECKPOINT_FILE,
            workers,
            device,
            resume=resume,
            log=log,
        )
        status, error, interrupted = _fit(
            config, module, data, out_dir, device, precision, list(callbacks), workers, log
        )
        if not workers.writes:
            if interrupted:
                raise KeyboardInterrupt("training interrupted")
            return RunSummary(
                config=config,
                status=status,
                error=error,
                objectives=tuple(o.columns for o in module.pair),
            )
        if status == "finished":
            # A new model's scores are not the old one's: its evaluation goes first (a kill in
            # between leaves the old model unevaluated, never the new one with old scores).
            for stale in (EVALS_FILE, EVAL_ERROR_FILE):
                (out_dir / stale).unlink(missing_ok=True)
            atomic_write(
                out_dir / MODEL_FILE, lambda tmp: torch.save(module.model.state_dict(), tmp)
            )
        summary = _summary(config, module, data, out_dir, status, error)
        summary = dataclasses.replace(
            summary,
            accelerator=accelerator,
            precision_used=precision,
            started_at=started_at,
            wall_time_s=time.perf_counter() - started,
            **environment(device),
        )
        write_parquet(pd.DataFrame([summary.row()]), out_dir / SUMMARY_FILE)
        if status == "finished":  # only now: a kill before this line can still resume
            (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        if interrupted:
            raise KeyboardInterrupt(f"training interrupted; resume with --resume ({out_dir})")
        return summary


def _checked_data(config: RunConfig, accelerator: str, log: Callable[[str], None]):
    """Check what can be checked before any work, and prepare the corpus and repetition plan
    (their errors also come before the run folder exists); return the data and held-out set."""
    from dualsweep.data.datamodule import DualSweepData
    from dualsweep.objectives import objective_pair

    check_loggers(config)
    objective_pair(config.objective.objectives)  # an unregistered name fails before any work
    if accelerator == "gpu" and (untiled := config.model.untiled_dims()):
        log(
            f"note: {untiled} off a multiple of 64 (head_dim: of 8): GPU kernels on these widths "
            "waste tensor-core tiles"
        )
    data = DualSweepData(config, log=log)
    data.setup()
    held_out = data.held_out_tokens()
    if len(held_out) < config.held_out.validation_sequences:
        log(
            f"note: the held-out split holds {len(held_out)} sequences of {config.model.seq_len} "
            f"tokens; evaluating on all of them (held_out.validation_sequences={config.held_out.validation_sequences})"
        )
    return data, held_out


@contextlib.contextmanager
def _owned_run_folder(config: RunConfig, out_dir: Path, resume: bool, corpus_hash: str, log):
    """Hold `out_dir` for this training: refused (ConfigError, nothing touched) while another
    process trains there, and when resuming a folder of another run key or of a run whose
    corpus has changed since it started (its weights would continue on other data). A resume
    with no checkpoint to resume from says so (it starts from step 0)."""
    from dualsweep.paths import exclusive_lock

    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(out_dir / RUN_LOCK_FILE, wait=False))
        except BlockingIOError:
            raise ConfigError(
                f"--out: another training is writing {out_dir} now; wait for it to end or "
                "choose another folder"
            ) from None
        marker = out_dir / RUN_MARKER_FILE
        theirs = marker.read_text().strip() if marker.is_file() else None
        if resume and theirs and theirs != run_key(config):
            raise ConfigError(
                f"--out: {out_dir} holds run {theirs} and this config is run {run_key(config)} "
                "(another alpha, R, seed or setting): --resume continues the same run only; "
                f"resume with its config ({out_dir / CONFIG_FILE}), or start over with --force"
            )
        try:  # (a folder of before corpus.json, or a damaged one: nothing to compare)
            started_on = json.loads((out_dir / CORPUS_FILE).read_text()).get("corpus_hash")
        except (OSError, ValueError, AttributeError):
            started_on = None
        if resume and started_on and started_on != corpus_hash:
            raise ConfigError(
                f"--out: {out_dir} was trained on corpus {started_on} and the corpus is now "
                f"{corpus_hash} ({config.data.source}{', ' + config.data.path if config.data.path else ''}"
                "): resuming would continue its weights on other data; restore the corpus, or "
                "start over with --force"
            )
        if resume and theirs and not (out_dir / CHECKPOINT_FILE).is_file():
            train = config.train
            log(
                f"nothing to resume in {out_dir}: the run stopped before its first checkpoint "
                f"(train.checkpoint_minutes={train.checkpoint_minutes:g}, "
                f"train.checkpoint_interval={train.checkpoint_interval}); training from step 0"
            )
        yield


def _start_run_folder(config: RunConfig, out_dir: Path, data) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_MARKER_FILE).write_text(run_key(config) + "\n")  # marks the folder as a run
    (out_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_plain(config), sort_keys=False))
    # The folder stands alone: loading, scoring, exporting and generating need no corpus.
    if data.corpus.meta["tokenizer"]:
        shutil.copyfile(data.corpus.meta["tokenizer"], out_dir / TOKENIZER_FILE)
    corpus = {
        "special": dataclasses.asdict(data.corpus.special),
        "corpus_hash": data.corpus.corpus_hash,
        "source": config.data.source,
    }
    atomic_write_text(out_dir / CORPUS_FILE, json.dumps(corpus, indent=2) + "\n")


def _module(
    config: RunConfig, data, held_out, checkpoint_path: Path, workers, device, *, resume, log
):
    """The seeded module on its training `device`, restored from `checkpoint_path` when
    resuming and it is readable.

    Rank 0 decides whether the checkpoint is usable; the other workers load the same file
    when it is, and every worker starts from rank 0's weights, broadcast on the device."""
    import lightning as L
    import torch

    from dualsweep.training.distributed import broadcast_from_first, start_identical
    from dualsweep.training.module import DualObjectiveModule

    def fresh():
        L.seed_everything(config.train.seed, verbose=False)
        return DualObjectiveModule(
            config,
            data.corpus.special,
            data.plan,
            held_out,
            checkpoint_path=checkpoint_path,
            workers=workers,
            corpus_hash=data.corpus.corpus_hash,
        )

    def load():  # on the CPU: every worker would otherwise load onto the GPU it was saved from
        return torch.load(checkpoint_path, map_location="cpu", weights_only=True)

    module = fresh()
    if workers.writes and resume and checkpoint_path.is_file():
        try:
            state = load()
        except Exception as e:  # noqa: BLE001 - a truncated or damaged file: start over
            aside = checkpoint_path.with_name(f"{CHECKPOINT_FILE}.unreadable")
            checkpoint_path.replace(aside)
            # The first module's initialisation consumed the seeded generator: a second fresh
            # one re-seeds, so the restarted run starts from exactly a fresh run's weights.
            module = fresh()
            log(
                f"checkpoint unusable ({type(e).__name__}: {e}); moved to {aside}, starting from step 0"
            )
        else:  # a checkpoint that loads is never set aside: what fails from here is an error
            if not isinstance(state, dict) or state.get("run_key") != run_key(config):
                key = state.get("run_key") if isinstance(state, dict) else None
                raise ConfigError(
                    f"{checkpoint_path}: a checkpoint of run {key}, not of this config's run "
                    f"{run_key(config)}; resume with that run's config, or start over with --force"
                )
            data.start_step = module.restore(state)
            log(f"resuming from step {data.start_step} of {config.steps} ({checkpoint_path})")
    start_step = broadcast_from_first(data.start_step, workers)  # rank 0's decision
    if not workers.writes and start_step:
        data.start_step = module.restore(load())
        if data.start_step != start_step:
            raise RuntimeError(
                f"worker {workers.rank} read step {data.start_step} from {checkpoint_path}, "
                f"rank 0 read step {start_step}"
            )
    start_identical(module.model, device, workers)
    if config.train.compile:
        module.model.compile_blocks()  # in place: parameter names, optimiser groups unchanged
    return module


def _fit(config, module, data, out_dir, device, precision, callbacks, workers, log):
    """Run Lightning's loop; return (status, error, interrupted): every failure is recorded.

    Each data-parallel worker runs its own single-device loop on its own `device` (the
    gradient sum is in the step); only rank 0 logs. A failure on another rank is raised:
    rank 0 would otherwise wait for it in the next collective."""
    import lightning as L

    from dualsweep.training.distributed import trainer_devices
    from dualsweep.training.module import NonFiniteLossError
    from dualsweep.training.progress import LineProgress

    terminal_bar = config.train.progress_bar and sys.stderr.isatty() and workers.writes
    if config.train.progress_bar and workers.writes and not terminal_bar:
        every = config.train.log_interval * max(
            1, config.steps // (PROGRESS_LINES * config.train.log_interval)
        )
        callbacks.append(LineProgress(config.steps, every, log=log))
    with _quiet_lightning():
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=trainer_devices(device),
            precision=precision,
            max_epochs=1,  # the dataset holds exactly the run's steps
            default_root_dir=str(out_dir),  # not the working directory (a sweep's is the user's)
            logger=(workers.writes and _loggers(config, out_dir)) or False,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=terminal_bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=1,  # we send rows to the loggers ourselves, at log_interval
        )
        try:
            trainer.fit(module, datamodule=data)
        except (KeyboardInterrupt, SystemExit) as e:  # Lightning turns Ctrl-C into sys.exit(1)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
            return "failed", f"interrupted ({type(e).__name__})", True
        except Exception as e:  # noqa: BLE001 - every failure is recorded, then reported
            if not workers.writes and not isinstance(e, NonFiniteLossError):
                raise  # (a non-finite loss is seen by every worker at once: rank 0 records it)
            log(traceback.format_exc())
            return "failed", f"{type(e).__name__}: {e}", False
    return "finished", "", False


def _summary(config, module, data, out_dir: Path, status: str, error: str) -> RunSummary:
    """Write the curve and return the run's summary (timing and device fields by the caller)."""
    objectives = tuple(o.columns for o in module.pair)
    curve = curve_frame(module.curve, objectives)
    write_parquet(curve, out_dir / CURVE_FILE)
    trained = curve.dropna(subset=["train_loss"])
    steps = int(trained["step"].iloc[-1]) if len(trained) else 0
    tokens = steps * config.train.batch_size * config.model.seq_len
    return RunSummary(
        config=config,
        status=status,
        error=error,
        n_parameters=module.model.num_parameters(),
        n_non_embedding_parameters=module.model.num_parameters(non_embedding=True),
        steps=steps,
        tokens=tokens,
        unique_tokens=config.unique_tokens,
        unique_sequences=config.unique_sequences,
        epochs=tokens / config.unique_tokens,
        unique_subset_hash=data.unique_subset_hash(),
        corpus_hash=data.corpus.corpus_hash,
        held_out_tokens=module.held_out_tokens,
        held_out=held_out_summary(curve, objectives),
        objectives=objectives,
        train_time_s=module.train_time_s,
        held_out_eval_time_s=module.held_out_eval_time_s,
        tokens_per_s=tokens / module.train_time_s if module.train_time_s > 0 else math.nan,
        finished_at=_now(),
        code_version=code_version(),
    )
