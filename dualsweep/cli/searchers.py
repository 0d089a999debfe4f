"""The searchers the command line adds to the sweep's registry (sweep/searcher.py): those
built on the analysis, which the sweep layer may not import.

`suggest`: the GP design of `dualsweep suggest` run inside a sweep. Each round fits the
surface (white noise, seed 0, as `dualsweep suggest` does) on every finished run of the
sweep's base config so far, and picks `search.round_size` points over the searched R (fewer
when less budget is left) with `analysis.suggest.suggest`; the next round waits for the
round's results. Its budget is `trials_per_repetition` times the searched R, in all. Each round's
points are recorded in the results folder (`suggested.json`) before any trains, so a re-run,
after a stop or a kill, finds every earlier point (collected, or resumed as a fixed trial
where unfinished), spends no budget twice and goes on with a new round; the picks are
otherwise a function of the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dualsweep.config import ConfigError, RunConfig, SweepConfig, run_key
from dualsweep.paths import atomic_write
from dualsweep.schema import RUNS_TABLE, SUGGESTED_FILE, Metric
from dualsweep.sweep.algorithms import register_searcher
from dualsweep.sweep.searcher import DONE, Log, Point, Searcher


class SuggestSearcher(Searcher):
    """Rounds of `analysis.suggest.suggest` (see the module docstring)."""

    def __init__(self, sweep: SweepConfig, results_dir: Path, log: Log = print):
        self.sweep, self.results_dir, self.log = sweep, results_dir, log
        self.search = sweep.search
        self.fixed = {run_key(c) for c in sweep.trials()}
        self.budget = self.search.trials_per_repetition * len(self.search.repetitions)
        self.left = self.budget
        self.round: list[Point] = []
        self.training: set[Point] = set()

    def _config(self, alpha: float, r: int) -> RunConfig:
        return self.sweep.base.replace(alpha=alpha, repetitions=r)

    def _recorded(self) -> list[Point]:
        """Every point asked so far, in order: SUGGESTED_FILE, written before a round trains."""
        path = self.results_dir / SUGGESTED_FILE
        if not path.is_file():
            return []
        try:
            return [(float(a), int(r)) for a, r in json.loads(path.read_text())["points"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{path}: unreadable ({type(e).__name__}: {e}); the suggest search's record of "
                "its points (remove it to rebuild it from runs.parquet)"
            ) from None

    def _record(self, points: list[Point]) -> None:
        asked = [*self._recorded(), *points]
        text = json.dumps({"points": [[a, r] for a, r in asked]}) + "\n"
        atomic_write(self.results_dir / SUGGESTED_FILE, lambda tmp: tmp.write_text(text))

    def proposals(self) -> dict[str, RunConfig]:
        """Its earlier rounds' points that are not fixed trials of the sweep anyway."""
        return {key: config for key, config in self._asked().items() if key not in self.fixed}

    def _asked(self) -> dict[str, RunConfig]:
        """Every point asked so far: the recorded ones (so a stopped run's unfinished ones
        resume, and --rebuild-tables loses none), and the tables' rows at a searched R that no
        fixed trial explains (a record lost)."""
        found = {}
        for alpha, r in self._recorded():
            config = self._config(alpha, r)
            found[run_key(config)] = config
        path = self.results_dir / RUNS_TABLE
        if path.is_file():
            from dualsweep.results import read_table

            runs = read_table(path)
            for a, r, key in zip(runs["alpha"], runs["repetitions"], runs["run_key"], strict=True):
                if int(r) in self.search.repetitions and key not in found and key not in self.fixed:
                    config = self._config(float(a), int(r))
                    if run_key(config) == key:  # a row of this sweep's base, not another's
                        found[key] = config
        return found

    @property
    def remaining(self) -> int:
        return self.left

    def start(self, observed: pd.DataFrame) -> int:
        spent = len(self._asked())
        self.left = max(0, self.budget - spent)
        self.log(
            f"[{self.sweep.name}] search (suggest, {self.search.metric}): {spent}/{self.budget} "
            f"points over R = {', '.join(map(str, self.search.repetitions))}; "
            f"{self.left} to propose in rounds of {self.search.round_size}"
        )
        return self.left

    def ask(self, observed: dict[Point, float], slots: int) -> list[Point] | None:
        if not self.round:
            if self.training:
                return []  # the next round is fitted on this one's results
            if self.left <= 0:
                return DONE
            self.round = self._next_round(observed)
            if not self.round:
                return DONE
            self._record(self.round)  # before any trains: a stopped run resumes them
        points, self.round = self.round[:slots], self.round[slots:]
        self.left -= len(points)
        self.training.update(points)
        return points

    def _next_round(self, observed: dict[Point, float]) -> list[Point]:
        from dualsweep.analysis.suggest import suggest
        from dualsweep.analysis.surface import MIN_POINTS, fit_surface

        search = self.search
        column = search.metric
        table = pd.DataFrame(
            [{"alpha": a, "repetitions": r, column: v} for (a, r), v in observed.items()]
        )
        metric = Metric(column=column, lower_is_better=search.lower_is_better, stderr_column=None)
        # Too few runs to fit (the anchors of one R): `suggest` spreads the picks instead.
        fit = fit_surface(table, metric) if len(table) >= MIN_POINTS else None
        size = min(search.round_size, self.left)
        picks = suggest(fit, search.repetitions, size, trained=set(observed))
        self.log(
            f"[{self.sweep.name}] suggest round of {len(picks)}: "
            + ", ".join(f"alpha={p.alpha:g} R={p.repetitions}" for p in picks)
        )
        return [(p.alpha, p.repetitions) for p in picks]

    def tell(self, point: Point, value: float | None) -> None:
        self.training.discard(point)


def register_searchers() -> None:
    """Make every algorithm a sweep file may name buildable (before a sweep runs)."""
    register_searcher("suggest", SuggestSearcher)
