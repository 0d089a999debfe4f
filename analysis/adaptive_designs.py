"""Adaptive designs against the grid, computed: each design's runs in the order they finished,
and after each run the GP's best-alpha posterior checked against the grid's.

What belongs here: the numbers `python -m analysis.adaptive` reports (`analysis.adaptive`
runs it; `analysis.adaptive_report` writes the text and figures). A design's runs are taken in
the order they finished, the order in which its sampler (or its suggest rounds) learnt of
them. After each run, the GP is fitted on the runs so far (from 4 on) and the best alpha's
posterior median at each R is checked against the grid's 90% interval. Widths are compared on
log-odds, the scale of the alpha grid, summed over R.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dualsweep.results import load
from dualsweep.schema import alpha_log_odds

from .data import AnalysisError, metric, trial_table
from .surface import MIN_POINTS, best_alpha, fit_surface

DESIGN_LABELS = {"tiny-suggest": "suggest rounds", "tiny-optuna": "Optuna search"}


@dataclass
class Design:
    name: str
    runs: pd.DataFrame
    """Finished runs in the order they finished, with their metric and times."""
    trajectory: pd.DataFrame
    """One row per run count n: inside (R whose median is in the grid's interval), width."""
    final: pd.DataFrame
    """The best-alpha posterior from all its runs."""
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or DESIGN_LABELS.get(self.name, self.name)

    @property
    def first_inside(self) -> int | None:
        """The first run count whose medians are all inside the grid's intervals."""
        met = self.trajectory[self.trajectory["all_inside"]]
        return int(met["n"].iloc[0]) if len(met) else None

    @property
    def needed(self) -> int | None:
        """The run count from which the medians stay inside at every later count: the runs
        the design needed to settle on the grid's answer (None: not within its runs)."""
        outside = self.trajectory.loc[~self.trajectory["all_inside"], "n"]
        last_out = int(outside.max()) if len(outside) else 0
        later = self.trajectory[self.trajectory["n"] > last_out]
        return int(later["n"].iloc[0]) if len(later) else None

    def width_at(self, n: int) -> float:
        return float(self.trajectory.loc[self.trajectory["n"] == n, "summed_width"].iloc[0])


def ordered_runs(name: str, root: str | Path, column: str) -> pd.DataFrame:
    """A sweep's finished runs (its current trials) in the order they finished."""
    results = load(name, root)
    table = trial_table(results)
    times = results.runs.set_index("run_key")[["started_at", "finished_at", "wall_time_s"]]
    table = table.join(times, on="run_key").dropna(subset=[column])
    return table.sort_values(["finished_at", "run_key"]).reset_index(drop=True)


def widths(summary: pd.DataFrame) -> np.ndarray:
    """Each R's 90% interval width of the best alpha, on log-odds."""
    return alpha_log_odds(summary["alpha_q95"]) - alpha_log_odds(summary["alpha_q05"])


def posterior(runs: pd.DataFrame, column: str, repetitions) -> pd.DataFrame:
    fit = fit_surface(runs, metric(runs, column))
    return best_alpha(fit, repetitions)


def trajectory(runs: pd.DataFrame, column: str, reference: pd.DataFrame) -> pd.DataFrame:
    repetitions = reference["repetitions"].to_numpy()
    low, high = reference["alpha_q05"].to_numpy(), reference["alpha_q95"].to_numpy()
    rows = []
    for n in range(MIN_POINTS, len(runs) + 1):
        try:
            summary = posterior(runs.iloc[:n], column, repetitions)
        except AnalysisError:  # too few distinct points yet
            continue
        median = summary["alpha_median"].to_numpy()
        inside = (median >= low - 1e-12) & (median <= high + 1e-12)
        rows.append(
            {
                "n": n,
                "inside": int(inside.sum()),
                "all_inside": bool(inside.all()),
                "summed_width": float(widths(summary).sum()),
            }
        )
    return pd.DataFrame(rows)
