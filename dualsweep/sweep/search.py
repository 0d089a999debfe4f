"""Adaptive alphas: at each searched R, an Optuna study run through Ray Tune's `OptunaSearch`.

The question of a study is narrow: at each R, where is the best alpha? A grid spends most of
its models far from it. A `search` section instead trains the pure objectives (alpha 0 and
1) at each R as anchors, then lets one Optuna sampler per R choose `trials_per_repetition`
more alphas on the log-odds scale, each from the results so far (with Tune's concurrency,
the sampler also sees which alphas are still training).

One parameter per study, `logit_alpha`, in [-L, L] with L = logit(1 - ALPHA_CLIP): the ends
are the pure objectives, where the anchors sit. The studies live in
`results/<sweep>/search.db` (SQLite, one study per R, named `R=<R>`), beside the tables the
driver writes; they are the record of what the samplers asked, and the tables the record of
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

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dualsweep.config import RunConfig, SweepConfig, run_key
from dualsweep.config.sweep import SearchConfig
from dualsweep.schema import ALPHA_CLIP, SEARCH_FILE

PARAM = "logit_alpha"
LOGIT_BOUND = math.log((1 - ALPHA_CLIP) / ALPHA_CLIP)
STARTUP_TRIALS = 2
"""Results a sampler needs before it models the metric: the two anchors."""


def alpha_of(logit: float) -> float:
    """The alpha a proposal trains: the pure objectives at the bounds, else the logistic of
    `logit` to 6 significant digits (tidy run keys; 1e-6 relative is far below any effect)."""
    if logit >= LOGIT_BOUND:
        return 1.0
    if logit <= -LOGIT_BOUND:
        return 0.0
    return float(f"{1 / (1 + math.exp(-logit)):.6g}")


def logit_of(alpha: float) -> float:
    a = min(max(alpha, ALPHA_CLIP), 1 - ALPHA_CLIP)
    return math.log(a / (1 - a))


def trial_params(config: RunConfig) -> dict:
    """What a Tune trial carries to the trainable (which rebuilds its config from the base)."""
    return {
        "run_key": run_key(config),
        "alpha": config.objective.alpha,
        "repetitions": config.data.repetitions,
        "seed": config.train.seed,
    }


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    return optuna


def _distribution():
    return _optuna().distributions.FloatDistribution(-LOGIT_BOUND, LOGIT_BOUND)


def _sampler(search: SearchConfig, r: int, history: int):
    """A fresh sampler for R's study, seeded by the search's seed, R and the trials the study
    holds: reproducible for the same history, never replaying a seed's draws on resume."""
    import numpy as np

    optuna = _optuna()
    seed = int(np.random.SeedSequence([search.seed, r, history]).generate_state(1)[0] >> 1)
    if search.sampler == "gp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)


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
    optuna = _optuna()
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
    running = (_optuna().trial.TrialState.RUNNING,)
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
    optuna = _optuna()
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
                    params={PARAM: max(-LOGIT_BOUND, min(LOGIT_BOUND, logit_of(row.alpha)))},
                    distributions={PARAM: _distribution()},
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


MAX_REPEATS = 3
"""Proposals in a row of already-trained alphas after which an R's search ends: the sampler's
best guess is a model it has, so more asks would add nothing."""


def make_searcher(
    studies: dict[int, Study],
    remaining: dict[int, int],
    search: SearchConfig,
    metric_key: str,
    base: RunConfig,
    known: dict[str, float],
    new_trial: Callable[[int, float], dict],
    log: Callable[[str], None] = print,
    ended_early: Callable[[int], None] = lambda unused: None,
):
    """A Tune searcher asking each R's `OptunaSearch` in turn until every R's budget is spent.

    The next proposal goes to the R with the fewest trials training, then the most budget
    left: with Tune's concurrency the R proceed side by side, and each sampler sees its own
    R's results as soon as they come. A proposal of an alpha already trained (`known`: run key
    -> metric) is told its value at once and costs neither training nor budget; after
    MAX_REPEATS of them in a row the R's search ends (`ended_early` is told the budget it
    leaves). `new_trial(r, alpha)` turns a new proposal into the trial's parameters (and
    registers its config with the driver)."""
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    mode = "min" if search.lower_is_better else "max"
    searches = {
        r: OptunaSearch(
            space={PARAM: _distribution()},
            metric=metric_key,
            mode=mode,
            sampler=_sampler(search, r, len(s.study.get_trials(deepcopy=False))),
            study_name=s.study.study_name,
            storage=s.storage,
        )
        for r, s in studies.items()
    }

    class AlphaSearch(Searcher):
        def __init__(self):
            super().__init__(metric=metric_key, mode=mode)
            self.remaining = dict(remaining)
            self.running = dict.fromkeys(remaining, 0)
            self.asked: dict[str, tuple[int, str, str]] = {}  # Tune id -> (R, Optuna id, key)

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True  # the space is fixed: one log-odds alpha per R

        def save(self, checkpoint_path: str) -> None:
            pass  # the studies are in search.db, written at every ask and tell

        def suggest(self, trial_id: str):
            while True:
                open_ = [r for r, n in self.remaining.items() if n > 0]
                if not open_:
                    return Searcher.FINISHED
                r = min(open_, key=lambda r: (self.running[r], -self.remaining[r], r))
                proposal = self._propose(r, trial_id)
                if proposal is not None:
                    return proposal

        def _propose(self, r: int, trial_id: str) -> dict | None:
            for attempt in range(MAX_REPEATS):
                ask_id = f"{trial_id}-{attempt}"
                alpha = alpha_of(searches[r].suggest(ask_id)[PARAM])
                key = run_key(base.replace(alpha=alpha, repetitions=r))
                if key in {k for _, _, k in self.asked.values()}:
                    # An alpha training now (GPSampler avoids them; rounding may not): no
                    # second trial of one folder; told failed, the running one will tell.
                    searches[r].on_trial_complete(ask_id, None, error=True)
                    continue
                if key not in known:
                    self.remaining[r] -= 1
                    self.running[r] += 1
                    self.asked[trial_id] = (r, ask_id, key)
                    return {"trial": new_trial(r, alpha)}
                searches[r].on_trial_complete(ask_id, {metric_key: known[key]})
            log(
                f"[search R={r}] the sampler proposed trained alphas {MAX_REPEATS} times in a "
                f"row (last {alpha:g}): its search ends with {self.remaining[r]} of its budget left"
            )
            ended_early(self.remaining[r])
            self.remaining[r] = 0
            return None

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            pass  # a trial reports once, at its end

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            if trial_id not in self.asked:
                return
            r, ask_id, key = self.asked.pop(trial_id)
            self.running[r] -= 1
            value = (result or {}).get(metric_key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                result, error = None, True  # failed (or no value): told as FAIL
            else:
                known[key] = float(value)
            searches[r].on_trial_complete(ask_id, result, error)

    return AlphaSearch()


class _DropOptunaNotes(logging.Filter):
    """GPSampler's note that an optional package (greenlet) would make it faster: nothing a
    user of a sweep should act on, at a proposal every minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "greenlet" not in record.getMessage()


def quiet_optuna_logs() -> None:
    logging.getLogger("optuna").addFilter(_DropOptunaNotes())
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_DropOptunaNotes())
