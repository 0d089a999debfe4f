"""The runner's decisions, without Ray: which trials are pending, finished or failed, what a
search is told and asked, when it is done, what a stopped sweep says.

What belongs here: pure functions of configs, keys and tables, and `SearchLoop`, the one
loop that drives any searcher (ask, train, tell) as trial slots free up. The Ray session
(runner.py) and the sweep driver (driver.py) call these; tests call them with hand-made
tables and a fake searcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dualsweep.config import RunConfig, run_key

from .searcher import DONE, OBSERVED_COLUMNS, Point, Searcher


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped the sweep; what finished is in the tables."""


@dataclass(frozen=True)
class SweepOutcome:
    trials: int
    finished: int
    failed: list[str]
    """Keys of the trials not finished and evaluated after this run."""
    launched: int
    """Trials launched by this run: to train, or (already trained) only to evaluate."""
    wall_time_s: float
    results_dir: Path


def pending_keys(configs: dict[str, RunConfig], finished: set[str]) -> list[str]:
    """The trials to launch, in the sweep's order: every one without a finished row."""
    return [key for key in configs if key not in finished]


def failed_keys(configs: dict[str, RunConfig], finished: set[str]) -> list[str]:
    """The trials the sweep did not finish (after its run): failed, or never started."""
    return pending_keys(configs, finished)


def interrupted_message(name: str, finished: int, trials: int, searched: bool) -> str:
    """What a stopped sweep says (the command exits 130 with it): how to finish."""
    return (
        f"sweep {name} interrupted with {finished}/{trials} trials finished; "
        f"run the same command again to finish the other {trials - finished} (finished trials "
        "are kept, stopped ones resume from their last checkpoint"
        + (", the search where it stopped)" if searched else ")")
    )


def observed_table(runs: pd.DataFrame, evals_scores: pd.DataFrame | None, metric: str):
    """The finished runs and their `metric` (OBSERVED_COLUMNS; value NaN where a run has
    none): what a searcher is told the tables hold. `evals_scores` are the score columns by
    run key (results.score_columns), joined where `metric` is not a runs column."""
    if not len(runs):
        return pd.DataFrame(columns=list(OBSERVED_COLUMNS))
    table = runs.set_index("run_key")
    if evals_scores is not None and metric not in table.columns:
        table = table.join(evals_scores)
    finished = table[table["status"] == "finished"]
    no_value = pd.Series(math.nan, index=finished.index)
    return pd.DataFrame(
        {
            "run_key": finished.index,
            "alpha": finished["alpha"].astype(float).to_numpy(),
            "repetitions": finished["repetitions"].astype(int).to_numpy(),
            "value": finished.get(metric, no_value).astype(float).to_numpy(),
        }
    )


def observed_points(observed: pd.DataFrame, base: RunConfig) -> dict[Point, float]:
    """The observed values of the sweep's own runs (its base config at an alpha and R), by
    point: what `Searcher.ask` sees. Runs without a value are left out."""
    points = {}
    for row in observed.itertuples():
        point = (float(row.alpha), int(row.repetitions))
        if math.isnan(row.value):
            continue
        if run_key(base.replace(alpha=point[0], repetitions=point[1])) == row.run_key:
            points[point] = float(row.value)
    return points


def result_value(result: dict | None, metric: str, error: bool) -> float | None:
    """A finished trial's metric as a searcher is told it: None for a failure, or no value."""
    if error or not result:
        return None
    value = result.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


@dataclass
class SearchLoop:
    """Ask the searcher for one trial per free slot, tell it each result as it comes.

    `base` builds a point's run config; `on_new(key, config)` registers a proposal with the
    driver; `will_not_run(n)` is told when the searcher drops n of the points it expected to
    ask (an R's search that ended early), so a progress count shrinks then."""

    searcher: Searcher
    base: RunConfig
    observed: dict[Point, float]
    on_new: Callable[[str, RunConfig], None] = lambda key, config: None
    will_not_run: Callable[[int], None] = lambda n: None
    launched: list[str] = field(default_factory=list)
    running: dict[str, Point] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.expected = self.searcher.remaining

    def next(self, trial_id: str) -> RunConfig | None | str:
        """The config of trial `trial_id`, None (nothing until a result comes), or "done"."""
        answer = self.searcher.ask(dict(self.observed), 1)
        now = len(self.launched) + len(answer or ()) + self.searcher.remaining
        if now < self.expected:
            self.will_not_run(self.expected - now)
            self.expected = now
        if answer is DONE:  # what it expected to ask and did not will not run
            if len(self.launched) < self.expected:
                self.will_not_run(self.expected - len(self.launched))
                self.expected = len(self.launched)
            return "done"
        if not answer:
            return None
        ((alpha, r),) = answer
        config = self.base.replace(alpha=alpha, repetitions=r)
        key = run_key(config)
        self.on_new(key, config)
        self.launched.append(key)
        self.running[trial_id] = (alpha, r)
        return config

    def complete(self, trial_id: str, value: float | None) -> None:
        """Trial `trial_id` ended with `value` (None: failed): the searcher is told."""
        point = self.running.pop(trial_id, None)
        if point is None:
            return
        if value is not None:
            self.observed[point] = value
        self.searcher.tell(point, value)
