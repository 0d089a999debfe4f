"""Evaluating a finished run folder: held-out losses and every configured task and mode.

`evaluate_run(run_dir)` loads the run's config, final weights (model.pt) and tokenizer
(tokenizer.json), builds the built-in tasks from the corpus's held-out documents, scores
every task in every mode, and writes `run_dir/evals.parquet`: one row per task x mode,
with the run's key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dualsweep.config import ConfigError, EvalConfig, RunConfig, load_run_config, run_key
from dualsweep.evaluate.heldout import HeldOutLosses, held_out_losses
from dualsweep.evaluate.multiple_choice import evaluate_task
from dualsweep.evaluate.tasks import BUILTIN_TASKS, Task, builtin_task, load_task
from dualsweep.objectives import objective_pair
from dualsweep.results import write_parquet
from dualsweep.schema import CONFIG_FILE, EVAL_COLUMNS, EVALS_FILE, MODEL_FILE, TOKENIZER_FILE


@dataclass
class LoadedRun:
    config: RunConfig
    model: object
    tokenizer: object | None
    corpus: object


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """A finished run's config, final model (eval mode, on `device`), tokenizer and corpus."""
    import torch

    from dualsweep.data.corpus import prepare_corpus
    from dualsweep.data.tokenizer import load_tokenizer
    from dualsweep.model import Transformer

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{run_dir}: no model.pt (is this a finished run folder?)")
    config = load_run_config(run_dir / CONFIG_FILE)
    model = Transformer(config.model)
    try:
        weights = torch.load(run_dir / MODEL_FILE, map_location=device, weights_only=True)
        model.load_state_dict(weights)
    except Exception as e:  # noqa: BLE001 - truncated, empty, foreign or mismatched weights
        raise ConfigError(
            f"{run_dir / MODEL_FILE}: unreadable model weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'}); train the run again"
        ) from None
    model.to(device).eval()
    tokenizer_path = run_dir / TOKENIZER_FILE
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path.is_file() else None
    corpus = prepare_corpus(config.data, config.model.vocab_size, log=lambda line: None)
    return LoadedRun(config=config, model=model, tokenizer=tokenizer, corpus=corpus)


def held_out_documents(run: LoadedRun) -> list[str]:
    """The corpus's held-out documents as text (never training documents)."""
    stream = np.asarray(run.corpus.validation_tokens)
    eos = run.corpus.special.eos
    ends = np.flatnonzero(stream == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [
        run.tokenizer.decode(stream[s:e].tolist())
        for s, e in zip(starts, ends, strict=True)
        if e > s
    ]


def tasks_for(run: LoadedRun, evaluation: EvalConfig) -> list[Task]:
    documents = None
    tasks = []
    for name in evaluation.tasks:
        if name in BUILTIN_TASKS:
            documents = documents if documents is not None else held_out_documents(run)
            tasks.append(
                builtin_task(
                    name, documents, n_items=evaluation.task_items, seed=evaluation.task_seed
                )
            )
        else:
            tasks.append(load_task(name))
    return tasks


def evaluate_run(
    run_dir: str | Path,
    evaluation: EvalConfig | None = None,
    *,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    held_out: bool = True,
) -> tuple[pd.DataFrame, HeldOutLosses | None]:
    """Evaluate a run folder; write and return its evals table, and its held-out losses.

    `held_out=False` skips the held-out losses (None is returned): a sweep already has them
    from the run's last curve evaluation, the same numbers.
    """
    started = time.perf_counter()
    run = load_run(run_dir, device)
    config = run.config
    evaluation = evaluation or config.evaluation
    import torch

    # Tasks first: a missing or malformed task file fails before any scoring.
    tasks = tasks_for(run, evaluation) if evaluation.tasks and run.tokenizer is not None else []
    losses = None
    if held_out:
        sequences = run.corpus.validation_sequences(
            config.model.seq_len, config.held_out.validation_sequences
        )
        losses = held_out_losses(
            run.model,
            torch.from_numpy(sequences.astype(np.int64)),
            run.corpus.special,
            objective_pair(config.objective.objectives),
            draws=config.held_out.md_eval_draws,
            seed=config.held_out.held_out_seed,
            batch_size=config.train.batch_size,
            min_mask_rate=config.objective.min_mask_rate,
            document_masking=config.data.document_masking,
        )
    rows = []
    if evaluation.tasks and run.tokenizer is None:
        log(f"{run_dir}: no tokenizer.json (a token-shard corpus): multiple-choice tasks skipped")
    else:
        for task in tasks:
            for result in evaluate_task(
                run.model,
                run.tokenizer,
                run.corpus.special,
                task,
                evaluation.modes,
                md_span=evaluation.md_mask_span,
                # Up to 64 short rows per pass, never more tokens than a training
                # (micro-)batch: scoring rows are far shorter than training sequences.
                batch_size=64,
                max_batch_tokens=(config.train.micro_batch_size or config.train.batch_size)
                * config.model.seq_len,
                bootstrap=evaluation.bootstrap_samples,
                seed=evaluation.task_seed,
            ):
                rows.append({"run_key": run_key(config), **result.row()})
    evals = pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
    write_parquet(evals, Path(run_dir) / EVALS_FILE)
    log(f"evaluated {len(evals)} task x mode rows in {time.perf_counter() - started:.1f}s")
    return evals, losses


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
