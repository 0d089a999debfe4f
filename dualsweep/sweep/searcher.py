"""What a sweep's search is: a searcher, asked for points to train and told their results.
The searchers by name (`search.algorithm` in a sweep file) are algorithms.py's registry.

A searcher is built once per sweep run, `factory(sweep, results_dir, log)`, and driven by the
runner through one loop, the same for every algorithm:
- `proposals()`: every point it proposed in earlier runs of the sweep, as run configs by run
  key (`unfinished()`: those asked but never told). A re-run collects them and trains those
  without a finished row first, as fixed trials (resuming from their checkpoints).
- `start(observed)`: told what the tables hold (OBSERVED_COLUMNS: the finished runs and their
  metric, NaN where it has none); answers how many points it may still ask (0: done).
- `ask(observed, slots)`: up to `slots` points (alpha, R) to train now (the trials that may
  start at once); `[]`: nothing until a result comes back; DONE: the search is over.
  `observed` is what `start` was told plus every result told since, by (alpha, R).
- `tell(point, value)`: a point's metric (None: the trial failed or has no value).
- `remaining`: points it may still ask; `summary()`: one line on where it stands.

A new algorithm is one module with a `Searcher` subclass, registered by name in
algorithms.py (or, built on the analysis, from the command line: see there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import pandas as pd

from dualsweep.config import RunConfig

Point = tuple[float, int]
"""(alpha, repetitions): where a searcher asks for a run."""
OBSERVED_COLUMNS = ("run_key", "alpha", "repetitions", "value")
DONE = None
"""`ask`'s answer when the search is over."""
Log = Callable[[str], None]


class Searcher(ABC):
    """One sweep's search (the protocol above); subclasses hold their own state."""

    def proposals(self) -> dict[str, RunConfig]:
        return {}

    def unfinished(self) -> dict[str, RunConfig]:
        return {}

    @abstractmethod
    def start(self, observed: pd.DataFrame) -> int: ...

    @abstractmethod
    def ask(self, observed: dict[Point, float], slots: int) -> list[Point] | None: ...

    @abstractmethod
    def tell(self, point: Point, value: float | None) -> None: ...

    @property
    @abstractmethod
    def remaining(self) -> int: ...

    def summary(self) -> str:
        return ""
