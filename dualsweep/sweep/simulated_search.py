"""A sweep's Optuna search asked and told without training: a design for `dualsweep simulate`.

The searcher is the sweep's own (`optuna_search.OptunaSearcher`, its Optuna studies and
samplers, the anchors told as a real sweep's tables tell them), so what the simulator
measures is the search a real sweep runs. Only the trainer is replaced: each batch of
`concurrency` proposals (Ray Tune's trials running at once, each asked for as its slot
frees) is observed by the simulator and told back before the next batch is asked. Studies
live in memory.

It has the interface of `analysis.simulate.Design` (`name`, `label`, `start`, `next_batch`)
without importing it: the analysis sits beside the sweep, not below it, and the command line
brings the two together.
"""

from __future__ import annotations

import pandas as pd

from dualsweep.config import RunConfig, run_key
from dualsweep.config.sweep import SearchConfig

from .optuna_search import OptunaSearcher, quiet_optuna_logs
from .search import Study, optuna_module
from .searcher import Point


class SimulatedSearch:
    name, label = "optuna", "Optuna search"

    def __init__(self, base: RunConfig, search: SearchConfig, concurrency: int = 2):
        self.base, self.search, self.concurrency = base, search, concurrency

    def start(self, rng) -> None:  # noqa: ARG002 - the samplers are seeded by the search
        optuna = optuna_module()
        quiet_optuna_logs()
        direction = "minimize" if self.search.lower_is_better else "maximize"
        self.studies = {}
        for r in self.search.repetitions:
            storage = optuna.storages.InMemoryStorage()
            study = optuna.create_study(storage=storage, study_name=f"R={r}", direction=direction)
            self.studies[r] = Study(r, study, storage)
        self.searcher: OptunaSearcher | None = None
        self.asked: list[Point] = []

    def _key(self, alpha: float, r: int) -> str:
        return run_key(self.base.replace(alpha=alpha, repetitions=r))

    def next_batch(self, observed: pd.DataFrame) -> list[Point]:
        if observed.empty:  # the anchors: alpha 0 and 1 at each R, fixed points of the sweep
            return [(a, r) for r in self.search.repetitions for a in (0.0, 1.0)]
        values = {
            (float(row.alpha), int(row.repetitions)): float(row.loss)
            for row in observed.itertuples()
        }
        if self.searcher is None:
            keys = {self._key(a, r): (a, r) for a, r in values}
            told = pd.DataFrame(
                {
                    "run_key": list(keys),
                    "alpha": [a for a, _ in keys.values()],
                    "repetitions": [r for _, r in keys.values()],
                    "value": [values[point] for point in keys.values()],
                }
            )
            self.searcher = OptunaSearcher(self.studies, self.search, self.base, set(keys), _quiet)
            self.searcher.start(told)
        for point in self.asked:
            self.searcher.tell(point, values[point])
        self.asked = []
        for _ in range(self.concurrency):
            answer = self.searcher.ask(values, 1)
            if not answer:
                break  # every R's budget spent, or its sampler kept proposing trained alphas
            self.asked.extend(answer)
        return list(self.asked)


def _quiet(message: str) -> None:
    """The searcher's notes (an R ended early) are a real sweep's news, not a simulation's."""
