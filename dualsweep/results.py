"""Result tables: run summaries, provenance, and atomic Parquet I/O. No torch, Lightning or Ray.

A run writes `curve.parquet` (one row per logged step) and `summary.parquet` (one row: every
resolved config field by its plain name, plus the measured columns of `RunSummary`). Column
and file names are defined in `dualsweep.schema`; they are the names used in configs and code
(`alpha`, `repetitions`, `held_out_ar_loss`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dualsweep.config import (
    EvalConfig,
    RunConfig,
    flat_fields,
    run_key,
    strategy_name,
)
from dualsweep.paths import atomic_write
from dualsweep.schema import (
    AR_COLUMNS,
    CURVES_TABLE,
    EVALS_TABLE,
    HARNESS_METRICS,
    MD_COLUMNS,
    RESULTS_ROOT,
    RUNS_TABLE,
    TASK_NAMES,
    ObjectiveColumns,
    curve_columns,
    summary_metric_columns,
)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The outcome of one run; `row()` adds every resolved config field."""

    config: RunConfig
    status: str  # "finished" or "failed"
    error: str = ""
    n_parameters: int = 0
    n_non_embedding_parameters: int = 0
    steps: int = 0  # optimizer steps completed
    tokens: int = 0  # training tokens consumed
    unique_tokens: int = 0
    unique_sequences: int = 0
    epochs: float = math.nan  # realised passes over the unique subset
    unique_subset_hash: str = ""
    corpus_hash: str = ""
    held_out_tokens: int = 0
    held_out: dict[str, float] = dataclasses.field(default_factory=dict)
    """final_/best_ held-out values by column (`schema.summary_metric_columns`); the row has a
    column for each objective of the run's pair, NaN where absent (a failed run)."""
    objectives: tuple[ObjectiveColumns, ...] = (AR_COLUMNS, MD_COLUMNS)
    """The columns of the run's objective pair (not a column itself)."""
    train_time_s: float = math.nan  # time in training steps (evaluations excluded)
    held_out_eval_time_s: float = math.nan  # time in the held-out curve evaluations
    wall_time_s: float = math.nan  # the whole run, data preparation included
    tokens_per_s: float = math.nan
    accelerator: str = ""  # what train.device resolved to: cpu or gpu
    precision_used: str = ""  # what train.precision resolved to: 32-true or bf16-mixed
    started_at: str = ""
    finished_at: str = ""
    code_version: str = ""
    python_version: str = ""
    torch_version: str = ""
    cuda_version: str = ""  # torch's CUDA build ("" for a CPU build)
    lightning_version: str = ""
    ray_version: str = ""  # "" where Ray is not installed
    device_name: str = ""  # the GPU's name, or the CPU's model

    def value(self, column: str) -> float:
        """A held-out summary value (`final_held_out_ar_loss`, ...); NaN when not measured."""
        return self.held_out.get(column, math.nan)

    def row(self) -> dict[str, Any]:
        measured: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "held_out":  # spliced in here, so the columns keep their place
                for column in summary_metric_columns(self.objectives):
                    measured[column] = self.held_out.get(column, math.nan)
            elif f.name not in ("config", "objectives"):
                measured[f.name] = getattr(self, f.name)
        config = flat_fields(self.config)
        assert not set(config) & set(measured), "a measured column shadows a config field"
        return {"run_key": run_key(self.config), **config, **measured}


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write atomically: a reader (or a crash) never sees a half-written table."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (a temporary name, then renamed)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def curve_frame(
    rows: list[dict], objectives: tuple[ObjectiveColumns, ...] = (AR_COLUMNS, MD_COLUMNS)
) -> pd.DataFrame:
    """A run's curve rows as a table with the columns of its objective pair."""
    frame = pd.DataFrame(rows, columns=list(curve_columns(objectives)))
    return frame.astype({"step": "int64", "tokens_seen": "int64"})


def held_out_summary(
    curve: pd.DataFrame, objectives: tuple[ObjectiveColumns, ...]
) -> dict[str, float]:
    """A run's final_ and best_ held-out values (and final_ standard errors) from its curve;
    empty when it has no evaluated row."""
    evaluated = curve.dropna(subset=[objectives[0].held_out])
    if not len(evaluated):
        return {}
    values = {}
    for o in objectives:
        values[f"final_{o.held_out}"] = float(evaluated[o.held_out].iloc[-1])
        values[f"best_{o.held_out}"] = float(evaluated[o.held_out].min())
        if o.held_out_stderr:
            values[f"final_{o.held_out_stderr}"] = float(evaluated[o.held_out_stderr].iloc[-1])
    return values


def with_eval_columns(evals: pd.DataFrame) -> pd.DataFrame:
    """`evals` with every column of `schema.EVAL_COLUMNS`: a table written before a column
    existed gets what it meant then (each task requested by its own name, built-in tasks
    limited to the items they hold, zero-shot, no harness metrics)."""
    evals = evals.copy()
    defaults = {
        "requested_task": evals["task"],
        "item_limit": pd.Series(
            np.where(evals["task"].isin(TASK_NAMES), evals["n_items"], 0), index=evals.index
        ),
        "num_fewshot": pd.Series(0, index=evals.index),
    }
    for name, default in defaults.items():  # a missing column, or rows of an older table
        evals[name] = evals[name].fillna(default) if name in evals else default
    evals[["item_limit", "num_fewshot"]] = evals[["item_limit", "num_fewshot"]].astype("int64")
    for name in HARNESS_METRICS:
        if name not in evals:
            evals[name] = math.nan
    return evals


def current_evals(evals: pd.DataFrame, evaluation: EvalConfig) -> pd.DataFrame:
    """The rows of `evals` scored as `evaluation` says now: MD read with its `md_mask_span`,
    each task on its configured number of items and few-shot examples (a changed setting
    scores again rather than keeping stale rows), for a task the evaluation still names."""
    evals = with_eval_columns(evals)
    if evals.empty:
        return evals
    requested = evals["requested_task"]
    named = requested.isin(set(evaluation.task_names) | set(evaluation.lm_eval_tasks))
    strategy = evals["strategy"] == evals["mode"].map(
        lambda mode: strategy_name(mode, evaluation.md_mask_span)
    )
    limit = evals["item_limit"] == requested.map(evaluation.item_limit)
    fewshot = evals["num_fewshot"] == requested.map(evaluation.num_fewshot)
    return evals[named & evals["mode"].isin(evaluation.modes) & strategy & limit & fewshot]


def missing_evals(evals: pd.DataFrame, evaluation: EvalConfig) -> set[tuple[str, str]]:
    """The (requested task, mode) pairs `evaluation` asks for that `evals` does not hold as
    scored now (`current_evals`)."""
    wanted = {
        (task, mode)
        for task in (*evaluation.task_names, *evaluation.lm_eval_tasks)
        for mode in evaluation.modes
    }
    current = current_evals(evals, evaluation)
    return wanted - set(zip(current["requested_task"], current["mode"], strict=True))


def score_columns(evals: pd.DataFrame) -> pd.DataFrame:
    """Multiple-choice metrics by run_key (rows) from evals rows: `score_<mode>:<task>`, and per
    mode `score_<mode>` and `score_<mode>_per_token`, the mean over tasks of the normalised
    score; each with its `_stderr`."""
    wide = {}
    for (task, mode), rows in evals.groupby(["task", "mode"]):
        rows = rows.set_index("run_key")
        wide[f"score_{mode}:{task}"] = rows["normalized_score"]
        wide[f"score_{mode}:{task}_stderr"] = rows["stderr"]
    for mode, rows in evals.groupby("mode"):
        by_run = rows.groupby("run_key")
        # The mean of n independent task scores: its error is sqrt(sum of variances) / n.
        for name, score, stderr in (
            (f"score_{mode}", "normalized_score", "stderr"),
            (f"score_{mode}_per_token", "normalized_score_per_token", "stderr_per_token"),
        ):
            wide[name] = by_run[score].mean()
            wide[f"{name}_stderr"] = by_run[stderr].apply(lambda s: np.sqrt((s**2).sum()) / len(s))
    return pd.DataFrame(wide)


def metric_value(summary: pd.Series, evals: pd.DataFrame, column: str) -> float:
    """One run's value of a metric (`schema.metric_names`): a held-out column of its summary
    row, or a score from its evals rows; NaN where the run has none."""
    if column in summary.index:
        return float(summary[column])
    if evals.empty:
        return math.nan
    scores = score_columns(evals)
    return float(scores[column].iloc[0]) if column in scores.columns else math.nan


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit (and '-dirty') when run from a checkout."""
    from dualsweep import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


# -- sweep tables ----------------------------------------------------------------------
# results/<sweep>/: runs, curves and evals tables (names in dualsweep.schema), each rewritten
# atomically with one row (or one curve) per run_key, never two.


class ResultsError(ValueError):
    """A results table cannot be read (damaged, truncated or empty); the message says how to rebuild it."""


TABLE_KEYS = {
    RUNS_TABLE: ("run_key",),
    CURVES_TABLE: ("run_key", "step"),
    EVALS_TABLE: ("run_key", "task", "mode"),
}
"""The columns a sweep table must have, which together name each row once."""


def read_table(path: Path) -> pd.DataFrame:
    """A results table, or a ResultsError naming the file and how to rebuild it: unreadable,
    without its key columns, or with a row twice (which would weigh a run double in a fit)."""
    rebuild = (
        "the trial folders hold everything it had: `dualsweep sweep SWEEP_FILE "
        "--rebuild-tables` writes it again from them"
    )
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise ResultsError(
            f"{path}: unreadable Parquet table ({type(e).__name__}: {str(e)[:120]}); {rebuild}"
        ) from None
    keys = TABLE_KEYS.get(Path(path).name)
    if keys:
        missing = [k for k in keys if k not in table.columns]
        if missing:
            raise ResultsError(
                f"{path}: not a dualsweep {Path(path).stem} table (no column {', '.join(missing)}); {rebuild}"
            )
        twice = table.duplicated(list(keys))
        if twice.any():
            first = table.loc[twice, list(keys)].iloc[0].tolist()
            raise ResultsError(
                f"{path}: {int(twice.sum())} row(s) repeated ({', '.join(keys)} = {first}); {rebuild}"
            )
    return table


@dataclass(frozen=True)
class SweepResults:
    runs: pd.DataFrame
    curves: pd.DataFrame
    evals: pd.DataFrame


def sweep_dir(name: str, root: str | Path = RESULTS_ROOT) -> Path:
    return Path(root) / name


def upsert(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace every row of `path` whose run_key appears in `rows` by `rows` (idempotent)."""
    if path.is_file():
        old = read_table(path)
        old = old[~old["run_key"].isin(set(rows["run_key"]))]
        if len(old):
            rows = pd.concat([old, rows], ignore_index=True)
    order = [
        c for c in ("run_key", "step", "task", "mode", "length_normalized") if c in rows.columns
    ]
    rows = rows.sort_values(order, kind="stable")
    rows = rows.reset_index(drop=True)
    write_parquet(rows, path)
    return rows


def load(name: str, root: str | Path = RESULTS_ROOT) -> SweepResults:
    """The tables of sweep `name` (from results/<name>/), for pandas."""
    directory = sweep_dir(name, root)
    runs_path, curves_path = directory / RUNS_TABLE, directory / CURVES_TABLE
    if not runs_path.is_file():
        raise FileNotFoundError(
            f"no results for sweep {name!r}: {runs_path} does not exist (run `dualsweep sweep` on its sweep file first, or give --results)"
        )

    def optional(path: Path) -> pd.DataFrame:
        return read_table(path) if path.is_file() else pd.DataFrame()

    runs = read_table(runs_path)
    return SweepResults(
        runs=runs,
        curves=with_point(optional(curves_path), runs),
        evals=with_point(optional(directory / EVALS_TABLE), runs),
    )


POINT_COLUMNS = ("alpha", "repetitions", "seed")
"""A trial's point: copied into its curve and eval rows, to group them by."""


def with_point(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`frame` (curve or eval rows) with its trials' alpha, repetitions and seed after
    `run_key`, filled in where it lacks them (rows written before they were added)."""
    columns = [c for c in POINT_COLUMNS if c in runs.columns]
    if frame.empty or "run_key" not in frame.columns or not columns:
        return frame
    point = runs.drop_duplicates("run_key").set_index("run_key")[columns]
    frame = frame.copy()
    for column in columns:
        known = frame.get(column)
        looked_up = frame["run_key"].map(point[column])
        frame[column] = looked_up if known is None else known.fillna(looked_up)
    after = list(frame.columns).index("run_key") + 1
    head = [c for c in frame.columns[:after] if c not in columns] + columns
    return frame[head + [c for c in frame.columns if c not in head]]
