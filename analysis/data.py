"""From the sweep tables to one row per trained model, with every metric a surface can fit.

Metrics (columns of `trial_table`), each with the direction that is better (the naming rules
and `Metric` are in `dualsweep.schema`):
- `final_held_out_<objective>_loss` or `_elbo` (nats/token; lower is better; one per
  objective of the runs' pair, e.g. `final_held_out_ar_loss`, `final_held_out_md_elbo`,
  aliases `held_out_ar_loss`, ...) and their `best_` variants (the lowest value during
  training), with `final_..._stderr` where the value is estimated;
- `score_<mode>` for each evaluation mode (ar, md, prefix): the normalised multiple-choice
  score (0 = chance, 100 = perfect) averaged over tasks, with `score_<mode>_stderr`;
- `score_<mode>_per_token`: the same with length-normalised choice scores;
- `score_<mode>:<task>`: one task's score, with its `_stderr`.

Which objectives the runs mixed is read from these columns by the schema's naming rule
(`objectives`, `pair`), in the order of the runs' `objectives` pair (alpha weighs the
first), so a newly registered objective reaches every table, figure and claim unnamed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dualsweep.results import SweepResults, score_columns
from dualsweep.schema import (
    OBJECTIVE_COLUMNS,
    SCORING_MODES,
    Metric,
    ObjectiveColumns,
    is_loss_metric,
    is_score_metric,
    objectives_in,
    pair_columns,
)


class AnalysisError(ValueError):
    """The results cannot support the requested analysis (the message says why)."""


def trial_table(results: SweepResults, current_only: bool = True) -> pd.DataFrame:
    """One row per finished trial: alpha, repetitions, seed and every metric column."""
    runs = results.runs
    if current_only and "in_sweep" in runs:
        runs = runs[runs["in_sweep"].fillna(False).astype(bool)]
    runs = runs[runs["status"] == "finished"]
    held_out = [
        c
        for c in runs.columns
        if is_loss_metric(c) or (c.startswith("final_held_out_") and c.endswith("_stderr"))
    ]
    # The pair each run mixed, as a tuple (hashable: the table can be deduplicated).
    recorded = ["objectives"] if "objectives" in runs else []
    table = runs[["run_key", "alpha", "repetitions", "seed", *recorded, *held_out]].copy()
    if recorded:
        table["objectives"] = [
            tuple(p) if isinstance(p, (list, tuple, np.ndarray)) else None
            for p in table["objectives"]
        ]
    evals = results.evals
    if not evals.empty:
        evals = evals[evals["run_key"].isin(table["run_key"])]
        table = table.join(score_columns(evals), on="run_key")
    return table.sort_values(["repetitions", "alpha", "seed"]).reset_index(drop=True)


def metric(table: pd.DataFrame, column: str) -> Metric:
    """The metric named `column` (`held_out_<objective>_...` is an alias of its `final_` value)."""
    if column.startswith("held_out_"):
        column = f"final_{column}"
    if column not in table.columns or not (is_loss_metric(column) or is_score_metric(column)):
        choices = [c for c in table.columns if is_loss_metric(c) or is_score_metric(c)]
        raise AnalysisError(
            f"--metric: no metric column {column!r}; available: {', '.join(choices)}"
        )
    stderr = f"{column}_stderr" if f"{column}_stderr" in table.columns else None
    return Metric(column=column, lower_is_better=is_loss_metric(column), stderr_column=stderr)


def _named(table: pd.DataFrame) -> tuple[str, ...]:
    """The objectives the runs' `objectives` column names, in order (none without it)."""
    named = table["objectives"].dropna() if "objectives" in table else ()
    return tuple(dict.fromkeys(n for p in named for n in p))


def objectives(table: pd.DataFrame) -> tuple[ObjectiveColumns, ...]:
    """The objectives with held-out columns in `table`, in the order of the runs'
    `objectives` pair where the table has it (`dualsweep.schema.objectives_in`)."""
    return objectives_in(table.columns, _named(table))


def pair(table: pd.DataFrame) -> tuple[ObjectiveColumns, ObjectiveColumns]:
    """The two objectives the runs mixed: alpha weighs the first (alpha = 1: pure first),
    1 - alpha the second (alpha = 0: pure second). Where the table names fewer than two (a
    table of scores only), the runs' `objectives` and then the registered ones fill in."""
    found = objectives(table)
    have = {o.name for o in found}
    more = dict.fromkeys(n for n in (*_named(table), *OBJECTIVE_COLUMNS) if n not in have)
    candidates = found + pair_columns(list(more))
    if len(candidates) < 2:
        raise AnalysisError("the runs name fewer than two objectives: a mix needs two")
    return candidates[0], candidates[1]


def loss_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """Each objective's final held-out loss column, in `objectives` order."""
    return tuple(f"final_{o.held_out}" for o in objectives(table))


def mode_scores(table: pd.DataFrame) -> tuple[str, ...]:
    """The task-averaged `score_<mode>` columns of `table`: the schema's scoring modes in
    their order, then any other mode by name."""
    modes = [
        c.removeprefix("score_")
        for c in table.columns
        if is_score_metric(c) and ":" not in c and not c.endswith("_per_token")
    ]
    order = {m: i for i, m in enumerate(SCORING_MODES)}
    return tuple(f"score_{m}" for m in sorted(modes, key=lambda m: (order.get(m, len(order)), m)))


def compared_columns(table: pd.DataFrame) -> tuple[str, ...]:
    """The metrics the claims compare: every objective's final loss, then each mode's score."""
    return loss_columns(table) + mode_scores(table)


def target_pairs(first: ObjectiveColumns, second: ObjectiveColumns) -> tuple[tuple[str, str], ...]:
    """The metrics that target each objective of the pair, side by side: their final
    held-out losses, then their scores (a scoring objective's mode is its name)."""
    return (
        (f"final_{first.held_out}", f"final_{second.held_out}"),
        (f"score_{first.name}", f"score_{second.name}"),
    )
