"""The Optuna search's storage: one study per searched R in `results/<sweep>/search.db`.

What belongs here: opening the studies and checking they are this sweep's, reconciling them
with the tables, and reading them (proposals, budget spent, ended, best). What asks them for
new alphas is sweep/optuna_search.py.

The question of a study is narrow: at each R, where is the best alpha? A grid spends most of
its models far from it. A `search` section instead trains the pure objectives (alpha 0 and
1) at each R as anchors, then lets one Optuna sampler per R choose `trials_per_repetition`
more alphas on the log-odds scale, each from the results so far (with Tune's concurrency,
the sampler also sees which alphas are still training).

One parameter per study, `logit_alpha`, in [-L, L] with L = ALPHA_LOG_ODDS_BOUND (the
log-odds of 1 - ALPHA_CLIP): the ends are the pure objectives, where the anchors sit. The
studies live in `results/<sweep>/search.db` (SQLite, one study per R, named `R=<R>`), beside
the tables the driver writes; they are the record of what the samplers asked, and the tables the record of
what was trained. A re-run reconciles the two before it asks anything new:
- a proposal asked but never told (the driver was killed) is trained as a fixed trial,
  resuming from its checkpoint (or not at all if it finished), then told its value;
- a finished run of the study's configuration that the study lacks (a deleted or lost
  `search.db`: the committed tables hold every run) is added to it as a completed trial;
so a search resumes where it stopped, and nothing is trained twice. Its trials are keyed
like every other trial, by their run config: a proposal that repeats a trained alpha (say
an anchor) is told that run's value and costs neither training nor budget. An R whose
sampler proposed trained alphas MAX_REPEATS times in a row has ended: its study records
those proposals, so a re-run sees it ended too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dualsweep.config import RunConfig, SweepConfig, run_key
from dualsweep.schema import (
    ALPHA_LOG_ODDS_BOUND,
    SEARCH_FILE,
    alpha_from_log_odds,
    alpha_log_odds,
)

PARAM = "logit_alpha"
MAX_REPEATS = 3
"""Proposals in a row of already-trained alphas after which an R's search ends: the sampler's
best guess is a model it has, so more asks would add nothing."""


def alpha_of(logit: float) -> float:
    """The alpha a proposal trains: the pure objectives at the bounds, else the logistic of
    `logit` to 6 significant digits (tidy run keys; 1e-6 relative is far below any effect)."""
    if logit >= ALPHA_LOG_ODDS_BOUND:
        return 1.0
    if logit <= -ALPHA_LOG_ODDS_BOUND:
        return 0.0
    return float(f"{alpha_from_log_odds(logit):.6g}")


def optuna_module():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    return optuna


def distribution():
    """The study's one parameter: alpha's log-odds, the pure objectives at its ends."""
    return optuna_module().distributions.FloatDistribution(
        -ALPHA_LOG_ODDS_BOUND, ALPHA_LOG_ODDS_BOUND
    )


@dataclass
class Study:
    """One R's Optuna study and what it means in this sweep."""

    repetitions: int
    study: object  # optuna.Study
    storage: object  # its optuna RDBStorage

    def trials(self, base: RunConfig, states=None) -> list[tuple[object, str, RunConfig]]:
        """The study's trials (in `states`, default all), each with the run key and config it
        trains."""
        found = []
        for trial in self.study.get_trials(deepcopy=False, states=states):
            config = base.replace(alpha=alpha_of(trial.params[PARAM]), repetitions=self.repetitions)
            found.append((trial, run_key(config), config))
        return found

    def proposals(self, base: RunConfig) -> dict[str, RunConfig]:
        """Every alpha the study holds, as the run configs they train, by run key."""
        return {key: config for _, key, config in self.trials(base)}


class SearchError(RuntimeError):
    """A stored study does not belong to this sweep file's search."""


def open_studies(sweep: SweepConfig, results_dir: Path) -> dict[int, Study]:
    """The studies of every searched R (created where missing), checked against the sweep."""
    optuna = optuna_module()
    search = sweep.search
    path = results_dir / SEARCH_FILE
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    direction = "minimize" if search.lower_is_better else "maximize"
    studies = {}
    for r in search.repetitions:
        anchor = run_key(sweep.base.replace(alpha=0.0, repetitions=r))
        study = optuna.create_study(
            storage=storage, study_name=f"R={r}", direction=direction, load_if_exists=True
        )
        stored = study.user_attrs
        if not stored:
            study.set_user_attr("metric", search.metric)
            study.set_user_attr("anchor_run_key", anchor)
        elif stored.get("metric") != search.metric or stored.get("anchor_run_key") != anchor:
            what = (
                f"metric {stored.get('metric')}"
                if stored.get("metric") != search.metric
                else "another base config"
            )
            raise SearchError(
                f"search: {path} holds study R={r} of {what}, not of this sweep file; to search "
                f"anew, move {path} aside or give the sweep another name"
            )
        studies[r] = Study(r, study, storage)
    return studies


def unfinished_proposals(studies: dict[int, Study], base: RunConfig) -> dict[str, RunConfig]:
    """Alphas asked but never told (a killed driver): to train as fixed trials, resuming."""
    running = (optuna_module().trial.TrialState.RUNNING,)
    return {key: config for s in studies.values() for _, key, config in s.trials(base, running)}


def sync_studies(
    studies: dict[int, Study],
    base: RunConfig,
    fixed: set[str],
    runs: pd.DataFrame,
    value: Callable[[str], float],
    log: Callable[[str], None] = print,
) -> None:
    """Tell each study what the tables know: the value of every proposal left unfinished, and
    the finished runs of its R and base config it lacks: the sweep's `fixed` trials (anchors,
    points) and searched ones a lost `search.db` forgot, which still count in the budget.

    `runs` is runs.parquet; `value(run_key)` the metric of a finished run (NaN if none)."""
    optuna = optuna_module()
    finished = runs[runs["status"] == "finished"] if len(runs) else runs
    done = set(finished["run_key"]) if len(finished) else set()
    for s in studies.values():
        known = set()
        for trial, key, config in s.trials(base):
            if trial.state == optuna.trial.TrialState.FAIL:
                continue  # trained again as a fixed trial: added below if it finished now
            known.add(key)
            if trial.state != optuna.trial.TrialState.RUNNING:
                continue
            result = value(key) if key in done else math.nan
            if math.isnan(result):
                s.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                log(
                    f"[search R={s.repetitions}] alpha={config.objective.alpha:g} ({key}) has no "
                    "finished run: told failed"
                )
            else:
                s.study.tell(trial.number, result)
        at_r = finished[finished["repetitions"] == s.repetitions] if len(finished) else finished
        added = 0
        for row in at_r.itertuples():
            config = base.replace(alpha=float(row.alpha), repetitions=s.repetitions)
            key = run_key(config)
            if key != row.run_key or key in known:
                continue  # another configuration's run, or one the study has
            result = value(key)
            if math.isnan(result):
                continue
            s.study.add_trial(
                optuna.trial.create_trial(
                    params={PARAM: alpha_log_odds(row.alpha)},
                    distributions={PARAM: distribution()},
                    value=result,
                    user_attrs={"source": "fixed" if key in fixed else "tables"},
                )
            )
            known.add(key)
            added += 1
        if added:
            log(
                f"[search R={s.repetitions}] {added} finished run(s) added to the study from the tables"
            )


def searched_counts(studies: dict[int, Study], base: RunConfig, fixed: set[str]) -> dict[int, int]:
    """Each R's budget spent: the alphas its study trained beyond the fixed points (a failed
    one counts; a proposal that repeated a trained alpha does not)."""
    return {r: len(set(s.proposals(base)) - fixed) for r, s in studies.items()}


def has_ended(study: Study, base: RunConfig) -> bool:
    """The R's sampler proposed trained alphas MAX_REPEATS times in a row, last thing it did:
    its best guess is a model it has, so asking again would add nothing."""
    keys = [key for _, key, _ in study.trials(base)]
    if len(keys) <= MAX_REPEATS:
        return False
    return all(keys[i] in keys[:i] for i in range(len(keys) - MAX_REPEATS, len(keys)))


def best_trials(studies: dict[int, Study]) -> dict[int, tuple[float, float]]:
    """Each R's best (alpha, value) so far."""
    best = {}
    for r, s in studies.items():
        try:
            trial = s.study.best_trial
        except ValueError:  # no completed trial
            continue
        best[r] = (alpha_of(trial.params[PARAM]), float(trial.value))
    return best
