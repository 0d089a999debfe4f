"""Evaluating a finished run folder: held-out losses and every configured task and mode.

`evaluate_run(run_dir)` loads the run's config, final weights (model.pt) and tokenizer
(tokenizer.json), builds the built-in tasks from the corpus's held-out documents, scores
every task in every mode, and writes `run_dir/evals.parquet`: one row per task x mode,
with the run's key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dualsweep.config import EvalConfig, run_key
from dualsweep.evaluate.heldout import HeldOutLosses, held_out_losses
from dualsweep.evaluate.loaded import LoadedRun, held_out_documents, load_run
from dualsweep.evaluate.multiple_choice import evaluate_task
from dualsweep.evaluate.task_registry import build_task
from dualsweep.evaluate.tasks import Task, load_task
from dualsweep.objectives import objective_pair
from dualsweep.results import current_evals, missing_evals, with_eval_columns, write_parquet
from dualsweep.schema import (
    EVAL_COLUMNS,
    EVALS_FILE,
)


def tasks_for(run: LoadedRun, evaluation: EvalConfig, names=None) -> list[Task]:
    """The registered and file tasks of `evaluation` (only those named `names`, if given)."""
    documents = None
    tasks = []
    for name, task_name in zip(evaluation.tasks, evaluation.task_names, strict=True):
        if names is not None and task_name not in names:
            continue
        if name.endswith(".jsonl"):
            tasks.append(load_task(name))
        else:  # a registered task's name (the config checked it)
            documents = documents if documents is not None else held_out_documents(run)
            tasks.append(
                build_task(
                    name, documents, n_items=evaluation.task_items, seed=evaluation.task_seed
                )
            )
    return tasks


def read_evals(path: Path) -> pd.DataFrame:
    """A run's evals rows so far (none when the file is missing or unreadable: scored again)."""
    if not path.is_file():
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    try:
        return with_eval_columns(pd.read_parquet(path))
    except Exception:  # noqa: BLE001 - a damaged file holds nothing worth keeping
        return pd.DataFrame(columns=list(EVAL_COLUMNS))


def evaluate_run(
    run_dir: str | Path,
    evaluation: EvalConfig | None = None,
    *,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    held_out: bool = True,
) -> tuple[pd.DataFrame, HeldOutLosses | None]:
    """Evaluate a run folder; write and return its evals table, and its held-out losses.

    Only what the folder's evals do not hold yet, as configured now, is scored (a task added
    later, a mode, a changed `task_items`): the rest is kept, so a re-run scores nothing
    twice. The model is loaded once for every task and mode, the harness tasks' included.
    `held_out=False` skips the held-out losses (None is returned): a sweep already has them
    from the run's last curve evaluation, the same numbers.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run = load_run(run_dir, device, log=log)
    config = run.config
    evaluation = evaluation or config.evaluation
    import torch

    existing = read_evals(run_dir / EVALS_FILE)
    missing = missing_evals(existing, evaluation)
    harness_pairs = {(t, m) for t, m in missing if t in evaluation.lm_eval_tasks}
    readable = run.tokenizer is not None
    # Tasks first: a missing or malformed task file fails before any scoring.
    tasks = tasks_for(run, evaluation, {t for t, _ in missing}) if readable else []
    if harness_pairs and readable:
        from dualsweep.evaluate.harness import check_tasks

        check_tasks(evaluation)
    losses = None
    if held_out:
        sequences = run.corpus.validation_sequences(
            config.model.seq_len, config.held_out.validation_sequences
        )
        losses = held_out_losses(
            run.model,
            torch.from_numpy(sequences.astype(np.int64)),
            run.special,
            objective_pair(config.objective.objectives),
            draws=config.held_out.md_eval_draws,
            seed=config.held_out.held_out_seed,
            batch_size=config.train.batch_size,
            min_mask_rate=config.objective.min_mask_rate,
            document_masking=config.data.document_masking,
        )
    # Up to 64 short rows per pass, never more tokens than a training (micro-)batch:
    # scoring rows are far shorter than training sequences.
    max_batch_tokens = (
        config.train.micro_batch_size or config.train.batch_size
    ) * config.model.seq_len
    rows = []
    if missing and not readable:
        log(f"{run_dir}: no tokenizer.json (a token-shard corpus): multiple-choice tasks skipped")
    for task in tasks:
        modes = [mode for mode in evaluation.modes if (task.name, mode) in missing]
        for result in evaluate_task(
            run.model,
            run.tokenizer,
            run.special,
            task,
            modes,
            md_span=evaluation.md_mask_span,
            batch_size=64,
            max_batch_tokens=max_batch_tokens,
            bootstrap=evaluation.bootstrap_samples,
            seed=evaluation.task_seed,
        ):
            rows.append(
                {
                    **result.row(),
                    "requested_task": task.name,
                    "item_limit": evaluation.item_limit(task.name),
                    "num_fewshot": 0,
                }
            )
    if harness_pairs and readable:
        from dualsweep.evaluate.harness import harness_rows
        from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

        lm = DualSweepLM.from_run(run, batch_size=64, max_batch_tokens=max_batch_tokens)
        rows.extend(harness_rows(lm, evaluation, harness_pairs, log=log))
    new = pd.DataFrame([{"run_key": run_key(config), **row} for row in rows])
    parts = [part for part in (current_evals(existing, evaluation), new) if len(part)]
    evals = _in_config_order(
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(EVAL_COLUMNS)),
        evaluation,
    )
    write_parquet(evals, run_dir / EVALS_FILE)
    log(
        f"evaluated {len(new)} task x mode rows ({len(evals) - len(new)} kept) in "
        f"{time.perf_counter() - started:.1f}s"
    )
    return evals, losses


def _in_config_order(evals: pd.DataFrame, evaluation: EvalConfig) -> pd.DataFrame:
    """Rows by task in the configured order (built-in and file tasks, then the harness's),
    then by mode in the configured order; every column of `schema.EVAL_COLUMNS`."""
    tasks = {t: i for i, t in enumerate((*evaluation.task_names, *evaluation.lm_eval_tasks))}
    modes = {m: i for i, m in enumerate(evaluation.modes)}
    order = sorted(
        range(len(evals)),
        key=lambda i: (
            tasks.get(evals["requested_task"].iloc[i], len(tasks)),
            modes.get(evals["mode"].iloc[i], len(modes)),
        ),
    )
    evals = evals.iloc[order].reset_index(drop=True)
    for column in EVAL_COLUMNS:
        if column not in evals:
            evals[column] = math.nan
    return evals[list(EVAL_COLUMNS)]


def format_evals(evals: pd.DataFrame) -> str:
    """A terminal table: normalised scores (0 = chance, 100 = perfect) +- standard errors."""
    if evals.empty:
        return "(no multiple-choice tasks)"
    lines = [
        f"{'task':<14} {'mode':<7} {'strategy':<11} {'items':>5} {'accuracy':>8} "
        f"{'score (sum)':>15} {'score (per token)':>18}"
    ]
    for row in evals.itertuples():
        lines.append(
            f"{row.task:<14} {row.mode:<7} {row.strategy:<11} {row.n_items:>5} {row.accuracy:>8.3f} "
            f"{row.normalized_score:>7.1f} +- {row.stderr:<5.1f} "
            f"{row.normalized_score_per_token:>10.1f} +- {row.stderr_per_token:<5.1f}"
        )
    return "\n".join(lines)
