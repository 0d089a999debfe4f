"""Evaluating a finished run folder: held-out losses and every configured task and mode.

`evaluate_run(run_dir)` loads the run's config, final weights (model.pt) and tokenizer
(tokenizer.json), builds the built-in tasks from the corpus's held-out documents, scores
every task in every mode, and writes `run_dir/evals.parquet`: one row per task x mode,
with the run's key.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dualsweep.config import ConfigError, EvalConfig, RunConfig, load_run_config, run_key
from dualsweep.data.special import SpecialTokens
from dualsweep.evaluate.heldout import HeldOutLosses, held_out_losses
from dualsweep.evaluate.multiple_choice import evaluate_task
from dualsweep.evaluate.tasks import BUILTIN_TASKS, Task, builtin_task, load_task
from dualsweep.objectives import objective_pair
from dualsweep.results import current_evals, missing_evals, with_eval_columns, write_parquet
from dualsweep.schema import (
    CONFIG_FILE,
    CORPUS_FILE,
    EVAL_COLUMNS,
    EVALS_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
)


class LoadedRun:
    """A finished run folder, loaded: its config, final model and tokenizer, with its special
    token ids and its corpus read when first used."""

    def __init__(self, run_dir: Path, config: RunConfig, model, tokenizer, log=print):
        self.run_dir, self.config, self.model, self.tokenizer = run_dir, config, model, tokenizer
        self.log = log

    @functools.cached_property
    def special(self) -> SpecialTokens:
        """The special ids: the folder's corpus.json; for a folder written before it, its
        tokenizer's specials (<|pad|>, <|bos|>, <|eos|>, <|mask|>), and failing both, its corpus."""
        from dualsweep.data.tokenizer import SPECIAL_TOKENS

        record = corpus_record(self.run_dir)
        if record is not None:
            return SpecialTokens(**record["special"])
        if self.tokenizer is not None:
            ids = [self.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
            if None not in ids:
                return SpecialTokens(pad=ids[0], bos=ids[1], eos=ids[2], mask=ids[3])
        return self.corpus.special

    @functools.cached_property
    def corpus(self):
        """The run's prepared corpus, opened (or prepared) on first use: only the built-in
        tasks and the held-out losses read it; the model, its tokenizer, export, generation
        and harness tasks do not."""
        return _run_corpus(self)


def load_run(
    run_dir: str | Path, device: str = "cpu", log: Callable[[str], None] = print
) -> LoadedRun:
    """A finished run's config, final model (eval mode, on `device`), tokenizer and special
    token ids, from the folder alone (no corpus: see `LoadedRun.corpus`)."""
    import torch

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
    return LoadedRun(run_dir, config, model, tokenizer, log=log)


def corpus_record(run_dir: Path) -> dict | None:
    """The folder's corpus.json (None for a folder written before it existed)."""
    path = run_dir / CORPUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _run_corpus(run: LoadedRun):
    from dualsweep.data.corpus import prepare_corpus
    from dualsweep.data.sources import DataError

    data = run.config.data
    where = f"data.source {data.source}" + (f", data.path {data.path}" if data.path else "")
    try:
        corpus = prepare_corpus(data, run.config.model.vocab_size, log=run.log)
    except (DataError, ConfigError) as e:
        raise ConfigError(
            f"{run.run_dir}: the built-in tasks and held-out losses read the run's corpus "
            f"({where}), which cannot be opened here: {e} (the model, export, generation and "
            "harness tasks do not need it)"
        ) from None
    record = corpus_record(run.run_dir)
    if record is not None and record["corpus_hash"] != corpus.corpus_hash:
        raise ConfigError(
            f"{run.run_dir}: the corpus at {where} is not the one the run was trained on "
            f"(hash {corpus.corpus_hash}, the run's {record['corpus_hash']}): its held-out "
            "set would differ"
        )
    return corpus


def held_out_documents(run: LoadedRun) -> list[str]:
    """The corpus's held-out documents as text (never training documents)."""
    stream = np.asarray(run.corpus.validation_tokens)
    eos = run.special.eos
    ends = np.flatnonzero(stream == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [
        run.tokenizer.decode(stream[s:e].tolist())
        for s, e in zip(starts, ends, strict=True)
        if e > s
    ]


def tasks_for(run: LoadedRun, evaluation: EvalConfig, names=None) -> list[Task]:
    """The built-in and file tasks of `evaluation` (only those named `names`, if given)."""
    documents = None
    tasks = []
    for name, task_name in zip(evaluation.tasks, evaluation.task_names, strict=True):
        if names is not None and task_name not in names:
            continue
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
