"""The searchers by name: what `search.algorithm` in a sweep file may say.

Layering: the sweep sits below the command line and beside the analysis (see
simulated_search.py), so this layer may not import `dualsweep.analysis`. An algorithm built
on the analysis (`suggest`, the GP design of `dualsweep suggest`: cli/searchers.py) is
therefore registered from above: the command line calls `register_searcher` before it runs a
sweep, and a sweep naming an algorithm nobody registered is refused in one line. The Optuna
search is the sweep's own and always registered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dualsweep.config import ConfigError, SweepConfig

from .searcher import Log, Searcher

Factory = Callable[[SweepConfig, Path, Log], Searcher]
"""Builds a sweep's searcher: (sweep, its results folder, log)."""


def _optuna(sweep: SweepConfig, results_dir: Path, log: Log) -> Searcher:
    from .optuna_search import OptunaSearcher  # (Optuna and Ray load only when searching)

    return OptunaSearcher.for_sweep(sweep, results_dir, log)


_SEARCHERS: dict[str, Factory] = {"optuna": _optuna}


def register_searcher(name: str, factory: Factory) -> None:
    """Make `search.algorithm: <name>` build its searcher with `factory` (idempotent)."""
    _SEARCHERS[name] = factory


def searcher_for(sweep: SweepConfig, results_dir: Path, log: Log = print) -> Searcher:
    """The searcher of a sweep with a `search` section, as its algorithm names."""
    name = sweep.search.algorithm
    if name not in _SEARCHERS:
        raise ConfigError(
            f"search.algorithm: {name!r} is not registered here (known: "
            f"{', '.join(sorted(_SEARCHERS))}); run the sweep with `dualsweep sweep`, which "
            "registers every algorithm"
        )
    return _SEARCHERS[name](sweep, results_dir, log)
