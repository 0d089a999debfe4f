"""From the sweep tables to one row per trained model, with every metric a surface can fit.

Metrics (columns of `trial_table`), each with the direction that is better (the naming rules
and `Metric` are in `dualsweep.schema`):
- `final_held_out_ar_loss`, `final_held_out_md_elbo` (nats/token; lower is better; one per
  objective of the runs' pair, aliases `held_out_ar_loss`, ...) and their `best_` variants
  (the lowest value during training), with `final_..._stderr` where the value is estimated;
- `score_<mode>` for each evaluation mode (ar, md, prefix): the normalised multiple-choice
  score (0 = chance, 100 = perfect) averaged over tasks, with `score_<mode>_stderr`;
- `score_<mode>_per_token`: the same with length-normalised choice scores;
- `score_<mode>:<task>`: one task's score, with its `_stderr`.
"""

from __future__ import annotations

import pandas as pd

from dualsweep.results import SweepResults, score_columns
from dualsweep.schema import Metric, is_loss_metric, is_score_metric


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
    table = runs[["run_key", "alpha", "repetitions", "seed", *held_out]].copy()
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
