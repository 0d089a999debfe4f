"""A sweep's Optuna search asked and told without training: a design for `dualsweep simulate`.

The searcher is the sweep's own (`search.make_searcher`, its Optuna studies and samplers,
the anchors told from a results table by `search.sync_studies`), so what the simulator
measures is the search a real sweep runs. Only the trainer is replaced: each batch of
`concurrency` proposals (Ray Tune's trials running at once) is observed by the simulator and
told back before the next batch is asked. Studies live in memory.

It has the interface of `analysis.simulate.Design` (`name`, `label`, `start`, `next_batch`)
without importing it: the analysis sits beside the sweep, not below it, and the command line
brings the two together.
"""

from __future__ import annotations

import pandas as pd

from dualsweep.config import RunConfig, run_key
from dualsweep.config.sweep import SearchConfig

from .search import Study, _optuna, make_searcher, quiet_optuna_logs, sync_studies

METRIC_KEY = "loss"


class SimulatedSearch:
    name, label = "optuna", "Optuna search"

    def __init__(self, base: RunConfig, search: SearchConfig, concurrency: int = 2):
        self.base, self.search, self.concurrency = base, search, concurrency

    def start(self, rng) -> None:  # noqa: ARG002 - the samplers are seeded by the search
        optuna = _optuna()
        quiet_optuna_logs()
        direction = "minimize" if self.search.lower_is_better else "maximize"
        self.studies = {}
        for r in self.search.repetitions:
            storage = optuna.storages.InMemoryStorage()
            study = optuna.create_study(storage=storage, study_name=f"R={r}", direction=direction)
            self.studies[r] = Study(r, study, storage)
        self.searcher = None
        self.asked: dict[str, tuple[float, int]] = {}  # Tune trial id -> (alpha, R)
        self.proposed: tuple[float, int] | None = None
        self.count = 0

    def _key(self, alpha: float, r: int) -> str:
        return run_key(self.base.replace(alpha=alpha, repetitions=r))

    def _new_trial(self, r: int, alpha: float) -> dict:
        self.proposed = (alpha, r)
        return {"alpha": alpha, "repetitions": r}

    def next_batch(self, observed: pd.DataFrame) -> list[tuple[float, int]]:
        if observed.empty:  # the anchors: alpha 0 and 1 at each R, fixed points of the sweep
            return [(a, r) for r in self.search.repetitions for a in (0.0, 1.0)]
        values = {
            self._key(float(row.alpha), int(row.repetitions)): float(row.loss)
            for row in observed.itertuples()
        }
        if self.searcher is None:
            runs = observed.assign(
                run_key=[
                    self._key(float(a), int(r))
                    for a, r in zip(observed["alpha"], observed["repetitions"], strict=True)
                ],
                status="finished",
            )
            sync_studies(self.studies, self.base, set(values), runs, values.__getitem__, log=_quiet)
            self.known = dict(values)
            remaining = dict.fromkeys(self.search.repetitions, self.search.trials_per_repetition)
            self.searcher = make_searcher(
                self.studies, remaining, self.search, METRIC_KEY, self.base, self.known,
                self._new_trial, log=_quiet,
            )  # fmt: skip
        for trial_id, (alpha, r) in list(self.asked.items()):
            self.searcher.on_trial_complete(trial_id, {METRIC_KEY: values[self._key(alpha, r)]})
            del self.asked[trial_id]
        batch = []
        for _ in range(self.concurrency):
            trial_id = f"simulated_{self.count:05d}"
            self.count += 1
            self.proposed = None
            answer = self.searcher.suggest(trial_id)
            if not isinstance(answer, dict) or self.proposed is None:
                break  # every R's budget spent, or its sampler kept proposing trained alphas
            self.asked[trial_id] = self.proposed
            batch.append(self.proposed)
        return batch


def _quiet(message: str) -> None:
    """The searcher's notes (an R ended early) are a real sweep's news, not a simulation's."""
