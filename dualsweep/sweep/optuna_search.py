"""The Optuna searcher: each searched R's sampler proposing alphas on the log-odds scale.

The studies (what was asked and told, in `search.db`) are sweep/search.py's; this module is
what asks them: one Ray Tune `OptunaSearch` per R over the study's one parameter, its sampler
seeded by the search's seed, R and the study's history (reproducible proposals for the same
history). It implements `searcher.Searcher`, so the runner drives it like any other search.

The next proposal goes to the R with the fewest trials training, then the most budget left:
with Tune's concurrency the R proceed side by side, and each sampler sees its own R's results
as soon as they come. A proposal of an alpha already trained is told its value at once and
costs neither training nor budget; after MAX_REPEATS of them in a row the R's search ends.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import pandas as pd

from dualsweep.config import RunConfig, SweepConfig, run_key
from dualsweep.config.sweep import SearchConfig

from .search import (
    MAX_REPEATS,
    PARAM,
    Study,
    alpha_of,
    best_trials,
    distribution,
    has_ended,
    open_studies,
    optuna_module,
    searched_counts,
    sync_studies,
    unfinished_proposals,
)
from .searcher import DONE, Log, Point, Searcher

METRIC_KEY = "value"
"""The metric's name inside the Tune searchers: the searcher is told values, not results."""
STARTUP_TRIALS = 2
"""Results a sampler needs before it models the metric: the two anchors."""


def _sampler(search: SearchConfig, r: int, history: int):
    """A fresh sampler for R's study, seeded by the search's seed, R and the trials the study
    holds: reproducible for the same history, never replaying a seed's draws on resume."""
    import numpy as np

    optuna = optuna_module()
    seed = int(np.random.SeedSequence([search.seed, r, history]).generate_state(1)[0] >> 1)
    if search.sampler == "gp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)


class OptunaSearcher(Searcher):
    """Each R's study asked through its own `OptunaSearch` until every R's budget is spent."""

    def __init__(
        self,
        studies: dict[int, Study],
        search: SearchConfig,
        base: RunConfig,
        fixed: set[str],
        log: Log = print,
        name: str = "",
    ):
        self.studies, self.search, self.base, self.fixed, self.log = (
            studies, search, base, fixed, log,
        )  # fmt: skip
        self.prefix = f"[{name}] " if name else ""
        self.left: dict[int, int] = dict.fromkeys(studies, 0)
        self.running = dict.fromkeys(studies, 0)
        self.asked: dict[str, tuple[int, str]] = {}  # run key -> (R, Optuna ask id)
        self.known: dict[str, float] = {}
        self.searches: dict | None = None  # built at the first ask (see _searches)
        self.count = 0

    @classmethod
    def for_sweep(cls, sweep: SweepConfig, results_dir: Path, log: Log = print):
        """The searcher of a sweep, on the studies of its results folder's search.db."""
        quiet_optuna_logs()
        fixed = {run_key(c) for c in sweep.trials()}
        studies = open_studies(sweep, results_dir)
        return cls(studies, sweep.search, sweep.base, fixed, log, sweep.name)

    def proposals(self) -> dict[str, RunConfig]:
        return {
            k: c for study in self.studies.values() for k, c in study.proposals(self.base).items()
        }

    def unfinished(self) -> dict[str, RunConfig]:
        return unfinished_proposals(self.studies, self.base)

    @property
    def remaining(self) -> int:
        return sum(self.left.values())

    def start(self, observed: pd.DataFrame) -> int:
        """Tell the studies what the tables hold, then set each R's budget left."""
        values = dict(zip(observed["run_key"], observed["value"].astype(float), strict=True))
        runs = observed.assign(status="finished")
        sync_studies(
            self.studies,
            self.base,
            self.fixed,
            runs,
            lambda key: values.get(key, math.nan),
            self.log,
        )
        self.known = {key: v for key, v in values.items() if not math.isnan(v)}
        spent = searched_counts(self.studies, self.base, self.fixed)
        ended = {r for r, s in self.studies.items() if has_ended(s, self.base)}
        per_r = self.search.trials_per_repetition
        self.left = {r: 0 if r in ended else max(0, per_r - n) for r, n in spent.items()}
        self.log(
            f"{self.prefix}search ({self.search.sampler}, {self.search.metric}): "
            + ", ".join(
                f"R={r} {spent[r]}/{per_r}" + (" (ended)" if r in ended else "")
                for r in self.studies
            )
            + f"; {self.remaining} to propose"
        )
        self.searches = None
        return self.remaining

    def _searches(self) -> dict:
        """Each R's Tune `OptunaSearch`, its sampler seeded by the study's history as `start`
        left it (built at the first ask: a search with nothing to ask needs no Ray)."""
        from ray.tune.search.optuna import OptunaSearch

        mode = "min" if self.search.lower_is_better else "max"
        return {
            r: OptunaSearch(
                space={PARAM: distribution()},
                metric=METRIC_KEY,
                mode=mode,
                sampler=_sampler(self.search, r, len(s.study.get_trials(deepcopy=False))),
                study_name=s.study.study_name,
                storage=s.storage,
            )
            for r, s in self.studies.items()
        }

    def ask(self, observed: dict[Point, float], slots: int) -> list[Point] | None:
        """Up to `slots` new alphas, one at a time, each to the R that most needs one."""
        points: list[Point] = []
        while len(points) < slots:
            open_ = [r for r, n in self.left.items() if n > 0]
            if not open_:
                return points or DONE
            r = min(open_, key=lambda r: (self.running[r], -self.left[r], r))
            alpha = self._propose(r)
            if alpha is not None:
                points.append((alpha, r))
        return points

    def _propose(self, r: int) -> float | None:
        if self.searches is None:
            self.searches = self._searches()
        search = self.searches[r]
        self.count += 1
        for attempt in range(MAX_REPEATS):
            ask_id = f"ask_{self.count:05d}-{attempt}"
            alpha = alpha_of(search.suggest(ask_id)[PARAM])
            key = run_key(self.base.replace(alpha=alpha, repetitions=r))
            if key in self.asked:
                # An alpha training now (GPSampler avoids them; rounding may not): no second
                # trial of one folder; told failed, the running one will tell.
                search.on_trial_complete(ask_id, None, error=True)
                continue
            if key not in self.known:
                self.left[r] -= 1
                self.running[r] += 1
                self.asked[key] = (r, ask_id)
                return alpha
            search.on_trial_complete(ask_id, {METRIC_KEY: self.known[key]})
        self.log(
            f"[search R={r}] the sampler proposed trained alphas {MAX_REPEATS} times in a "
            f"row (last {alpha:g}): its search ends with {self.left[r]} of its budget left"
        )
        self.left[r] = 0
        return None

    def tell(self, point: Point, value: float | None) -> None:
        alpha, r = point
        key = run_key(self.base.replace(alpha=alpha, repetitions=r))
        if key not in self.asked:
            return
        r, ask_id = self.asked.pop(key)
        self.running[r] -= 1
        if value is None or math.isnan(value):  # failed (or no value): told as FAIL
            self.searches[r].on_trial_complete(ask_id, None, True)
            return
        self.known[key] = float(value)
        self.searches[r].on_trial_complete(ask_id, {METRIC_KEY: float(value)}, False)

    def summary(self) -> str:
        best = best_trials(self.studies)
        return "best so far: " + ", ".join(
            f"R={r} alpha={a:.4g} ({v:.4g})" for r, (a, v) in sorted(best.items())
        )


class _DropOptunaNotes(logging.Filter):
    """GPSampler's note that an optional package (greenlet) would make it faster: nothing a
    user of a sweep should act on, at a proposal every minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "greenlet" not in record.getMessage()


def quiet_optuna_logs() -> None:
    logging.getLogger("optuna").addFilter(_DropOptunaNotes())
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_DropOptunaNotes())
