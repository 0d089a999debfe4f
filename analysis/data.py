"""From the sweep tables to one row per trained model, with every metric a surface can fit.

Metrics (columns of `trial_table`), each with the direction that is better:
- `held_out_ar_loss`, `held_out_md_elbo` (final values, nats/token; lower is better) and
  their `best_` variants (the lowest value during training);
- `score_<mode>` for each evaluation mode (ar, md, prefix): the normalised multiple-choice
  score (0 = chance, 100 = perfect) averaged over tasks, with `score_<mode>_stderr`;
- `score_<mode>_per_token`: the same with length-normalised choice scores;
- `score_<mode>:<task>`: one task's score, with its `_stderr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dualsweep.results import SweepResults


class AnalysisError(ValueError):
    """The results cannot support the requested analysis (the message says why)."""


LOSS_METRICS = (
    "final_held_out_ar_loss",
    "final_held_out_md_elbo",
    "best_held_out_ar_loss",
    "best_held_out_md_elbo",
)
ALIASES = {
    "held_out_ar_loss": "final_held_out_ar_loss",
    "held_out_md_elbo": "final_held_out_md_elbo",
}


@dataclass(frozen=True)
class Metric:
    column: str
    lower_is_better: bool
    stderr_column: str | None

    @property
    def label(self) -> str:
        if self.column.startswith("score_"):
            return f"{self.column} (normalised score, 0 = chance)"
        return f"{self.column} (nats/token)"


def trial_table(results: SweepResults, current_only: bool = True) -> pd.DataFrame:
    """One row per finished trial: alpha, repetitions, seed and every metric column."""
    runs = results.runs
    if current_only and "in_sweep" in runs:
        runs = runs[runs["in_sweep"].fillna(False).astype(bool)]
    runs = runs[runs["status"] == "finished"]
    table = runs[["run_key", "alpha", "repetitions", "seed", *LOSS_METRICS]].copy()
    table["final_held_out_md_elbo_stderr"] = runs["final_held_out_md_elbo_stderr"]
    evals = results.evals
    if not evals.empty:
        evals = evals[evals["run_key"].isin(table["run_key"])]
        wide = {}
        for (task, mode), rows in evals.groupby(["task", "mode"]):
            rows = rows.set_index("run_key")
            wide[f"score_{mode}:{task}"] = rows["normalized_score"]
            wide[f"score_{mode}:{task}_stderr"] = rows["stderr"]
        for mode, rows in evals.groupby("mode"):
            by_run = rows.groupby("run_key")
            wide[f"score_{mode}"] = by_run["normalized_score"].mean()
            # The mean of n independent task scores: its error is sqrt(sum of variances) / n.
            wide[f"score_{mode}_stderr"] = by_run["stderr"].apply(
                lambda s: np.sqrt((s**2).sum()) / len(s)
            )
            wide[f"score_{mode}_per_token"] = by_run["normalized_score_per_token"].mean()
            wide[f"score_{mode}_per_token_stderr"] = by_run["stderr_per_token"].apply(
                lambda s: np.sqrt((s**2).sum()) / len(s)
            )
        table = table.join(pd.DataFrame(wide), on="run_key")
    return table.sort_values(["repetitions", "alpha", "seed"]).reset_index(drop=True)


def metric(table: pd.DataFrame, column: str) -> Metric:
    """The metric named `column` (aliases: held_out_ar_loss, held_out_md_elbo)."""
    column = ALIASES.get(column, column)
    if (
        column not in table.columns
        or column.endswith("_stderr")
        or column in ("alpha", "repetitions", "seed")
    ):
        choices = [
            c
            for c in table.columns
            if (c in LOSS_METRICS or c.startswith("score_")) and not c.endswith("_stderr")
        ]
        raise AnalysisError(
            f"--metric: no metric column {column!r}; available: {', '.join(choices)}"
        )
    stderr = f"{column}_stderr" if f"{column}_stderr" in table.columns else None
    return Metric(column=column, lower_is_better=column in LOSS_METRICS, stderr_column=stderr)
