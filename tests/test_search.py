"""The `search` section: its configuration, and the Optuna search on synthetic objectives.

No training here: the searcher is driven by hand with a metric of known optimum, as Tune
would drive it one trial at a time. The search through Tune with real trials, killed and
resumed, is in test_sweep.py.
"""

from __future__ import annotations

import math
import sqlite3

import pandas as pd
import pytest
import yaml

from dualsweep.config import ConfigError, Point, load_sweep, run_key, sweep_yaml, to_plain
from dualsweep.schema import ALPHA_LOG_ODDS_BOUND, alpha_log_odds
from dualsweep.sweep.optuna_search import OptunaSearcher
from dualsweep.sweep.search import (
    SearchError,
    alpha_of,
    best_trials,
    has_ended,
    open_studies,
    searched_counts,
    sync_studies,
    unfinished_proposals,
)
from dualsweep.sweep.searcher import OBSERVED_COLUMNS

from .helpers import tiny_run_config

METRIC = "final_held_out_ar_loss"
OPTIMUM = {1: 3.0, 8: -1.0}  # the best alpha's log-odds at each R: 0.953 and 0.269


def loss(r: int, alpha: float) -> float:
    """A bowl in log-odds around OPTIMUM[r] (deterministic: the sampler's only difficulty is
    where to look)."""
    return 4.0 + 0.05 * (alpha_log_odds(alpha) - OPTIMUM[r]) ** 2 + 0.1 * math.log2(r)


def write_search_sweep(path, **search):
    raw = {
        "name": "synthetic",
        "base": to_plain(tiny_run_config()),
        "search": {"repetitions": [1, 8], "trials_per_repetition": 6, **search},
    }
    path.write_text(yaml.safe_dump(raw))
    return load_sweep(path)


def runs_table(sweep, points) -> pd.DataFrame:
    """runs.parquet rows of finished runs at (alpha, R) points, with the synthetic loss."""
    rows = []
    for alpha, r in points:
        config = sweep.base.replace(alpha=alpha, repetitions=r)
        rows.append(
            {"run_key": run_key(config), "alpha": alpha, "repetitions": r, "status": "finished"}
            | {METRIC: loss(r, alpha)}
        )
    return pd.DataFrame(rows)


def value_of(runs: pd.DataFrame):
    values = dict(zip(runs["run_key"], runs[METRIC], strict=True))
    return lambda key: values.get(key, math.nan)


def observed(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """What the runner tells a searcher the tables hold: finished runs and their metric."""
    return runs.rename(columns={metric: "value"})[list(OBSERVED_COLUMNS)]


def run_search(sweep, results_dir, trials: int = 100, sign: float = 1.0):
    """Anchors told from the tables, then the searcher asked and told one trial at a time
    (as Tune with one slot), like the runner's search phase; returns the trained points.
    The metric is `sign` x the loss (-1: a score, maximised)."""
    metric = sweep.search.metric
    fixed = {run_key(c) for c in sweep.trials()}
    studies = open_studies(sweep, results_dir)
    anchors = runs_table(sweep, [(p.alpha, p.repetitions) for p in sweep.points])
    anchors[metric] = sign * anchors[METRIC]
    searcher = OptunaSearcher(studies, sweep.search, sweep.base, fixed, log=lambda line: None)
    searcher.start(observed(anchors, metric))
    trained = []
    for _ in range(trials):
        answer = searcher.ask({}, 1)
        if answer is None:
            break
        ((alpha, r),) = answer
        trained.append((alpha, r))
        searcher.tell((alpha, r), sign * loss(r, alpha))
    return studies, trained


def test_a_search_section_adds_the_anchors_and_is_validated(tmp_path):
    sweep = write_search_sweep(tmp_path / "s.yaml")
    assert set(sweep.points) == {Point(a, r) for a in (0.0, 1.0) for r in (1, 8)}
    assert sweep.search.sampler == "gp" and sweep.search.lower_is_better
    # A point listed in the file and an anchor are one trial.
    raw = yaml.safe_load((tmp_path / "s.yaml").read_text())
    raw["points"] = [[1, 1], [0.5, 8]]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert len(load_sweep(tmp_path / "p.yaml").points) == 5

    def refused(change: dict, message: str) -> None:
        bad = {**raw, "search": {**raw["search"], **change}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=message):
            load_sweep(tmp_path / "bad.yaml")

    refused(
        {"metric": "score_foo"}, r"search.metric: must be one of final_held_out_ar_loss, .*score_ar"
    )
    refused({"repetitions": [1, 1]}, r"search.repetitions: lists an R twice")
    refused({"repetitions": [0]}, r"search.repetitions\[0\]: repetitions must be a positive")
    refused({"trials_per_repetition": 0}, r"search.trials_per_repetition: must be >= 1")
    refused({"sampler": "random"}, r"search.sampler: must be one of gp, tpe")
    refused({"samplr": "gp"}, r"search.samplr: unknown field; did you mean 'sampler'")
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump({**raw, "seeds": [0, 1]}))
    with pytest.raises(ConfigError, match=r"seeds: a sweep with `search` trains the base's seed"):
        load_sweep(tmp_path / "seeds.yaml")


def test_the_log_odds_scale_has_the_pure_objectives_at_its_bounds():
    assert alpha_of(ALPHA_LOG_ODDS_BOUND) == 1.0 and alpha_of(-ALPHA_LOG_ODDS_BOUND) == 0.0
    assert alpha_of(0.0) == 0.5 and alpha_of(math.log(3)) == 0.75  # odds 3:1
    assert alpha_log_odds(1.0) == pytest.approx(ALPHA_LOG_ODDS_BOUND) and alpha_log_odds(
        0.0
    ) == -alpha_log_odds(1.0)
    assert alpha_of(alpha_log_odds(63 / 64)) == pytest.approx(63 / 64, rel=1e-6)


@pytest.mark.parametrize(
    ("sampler", "metric"),
    [("gp", METRIC), ("tpe", METRIC), ("gp", "score_ar")],  # a score: maximised
)
def test_the_search_finds_a_known_best_alpha_within_its_budget(tmp_path, sampler, metric):
    sweep = write_search_sweep(tmp_path / "s.yaml", sampler=sampler, metric=metric)
    sign = -1.0 if metric.startswith("score_") else 1.0
    studies, trained = run_search(sweep, tmp_path, sign=sign)
    for r, (alpha, value) in best_trials(studies).items():
        assert sum(1 for _, tr in trained if tr == r) <= 6  # the budget, anchors aside
        assert value == pytest.approx(sign * loss(r, alpha))
        if sampler == "gp":  # within 0.5 in log-odds of the optimum (0.953: [0.93, 0.97])
            assert abs(alpha_log_odds(alpha) - OPTIMUM[r]) < 0.5, (r, alpha)
        else:  # TPE, which models little from a few results, only beats the anchors
            assert value < min(loss(r, 0.0), loss(r, 1.0))


def test_a_search_resumes_from_its_studies_or_from_the_tables(tmp_path):
    sweep = write_search_sweep(tmp_path / "s.yaml", trials_per_repetition=3)
    fixed = {run_key(c) for c in sweep.trials()}
    _, trained = run_search(sweep, tmp_path)
    assert len(trained) == 6
    studies = open_studies(sweep, tmp_path)  # a new driver: the studies from search.db
    assert searched_counts(studies, sweep.base, fixed) == {1: 3, 8: 3}
    assert run_search(sweep, tmp_path)[1] == []  # the budget is spent: nothing new

    # A driver killed after asking: the proposal is unfinished, trained as a fixed trial on
    # the next run, then told its value from the tables.
    bigger = write_search_sweep(tmp_path / "s.yaml", trials_per_repetition=4)
    studies = open_studies(bigger, tmp_path)
    searcher = OptunaSearcher(studies, bigger.search, bigger.base, fixed, log=lambda line: None)
    assert searcher.start(pd.DataFrame(columns=list(OBSERVED_COLUMNS))) == 2  # one more per R
    assert searcher.ask({}, 1) is not None
    unfinished = unfinished_proposals(studies, bigger.base)
    assert len(unfinished) == 1
    ((key, config),) = unfinished.items()
    runs = runs_table(bigger, [(a, r) for a, r in trained] + [(config.objective.alpha, 1)])
    sync_studies(open_studies(bigger, tmp_path), bigger.base, fixed, runs, value_of(runs))
    studies = open_studies(bigger, tmp_path)
    assert unfinished_proposals(studies, bigger.base) == {}
    assert searched_counts(studies, bigger.base, fixed) == {1: 4, 8: 3}
    best_value = min(t.value for t in studies[1].study.trials if t.value is not None)
    assert best_value == pytest.approx(best_trials(studies)[1][1])

    # search.db lost: the tables rebuild the studies, the budget spent included.
    (tmp_path / "search.db").unlink()
    rebuilt = open_studies(bigger, tmp_path)
    anchors = runs_table(bigger, [(p.alpha, p.repetitions) for p in bigger.points])
    everything = pd.concat([anchors, runs], ignore_index=True)
    sync_studies(rebuilt, bigger.base, fixed, everything, value_of(everything), lambda m: None)
    assert searched_counts(rebuilt, bigger.base, fixed) == {1: 4, 8: 3}
    assert best_trials(rebuilt) == best_trials(studies)


def test_a_study_of_another_metric_is_refused(tmp_path):
    sweep = write_search_sweep(tmp_path / "s.yaml")
    open_studies(sweep, tmp_path)
    other = write_search_sweep(tmp_path / "s.yaml", metric="best_held_out_ar_loss")
    with pytest.raises(SearchError, match=r"search.db holds study R=1 of metric final_held_out"):
        open_studies(other, tmp_path)
    with sqlite3.connect(tmp_path / "search.db") as db:  # a plain Optuna study, readable as such
        names = {row[0] for row in db.execute("select study_name from studies")}
    assert names == {"R=1", "R=8"}


def test_a_written_sweep_file_loads_back_to_the_same_trials(tmp_path):
    sweep = write_search_sweep(tmp_path / "s.yaml")
    text = sweep_yaml(sweep, header="a\nheader", notes={sweep.points[0]: "first"})
    assert text.startswith("# a\n# header\nname: synthetic\n")
    assert "repetitions: 1}  # first\n" in text
    (tmp_path / "w.yaml").write_text(text)
    again = load_sweep(tmp_path / "w.yaml")
    assert again == sweep


def test_plan_counts_the_whole_search_budget(tmp_path):
    from dualsweep.sweep.plan import format_plan, plan_sweep

    sweep = write_search_sweep(tmp_path / "s.yaml")
    plans = plan_sweep(sweep)
    assert len(plans) == 4  # the anchors
    text = format_plan(sweep, plans, peak_flops=1e15, mfu=0.5)
    assert "search: up to 12 more trials (6 per R at R = 1, 8)" in text
    tokens = 16 * plans[0].tokens  # 4 anchors + 12 searched, each the same token budget
    assert f"total with the whole search budget: {tokens:,} training tokens" in text


def test_a_search_whose_optimum_is_a_pure_objective_ends_early_and_stays_ended(
    tmp_path, monkeypatch
):
    # At R = 1 the loss falls all the way to alpha = 1: the sampler's best guess soon is the
    # anchor, proposed again and again; the R's search ends with budget left, for good.
    monkeypatch.setitem(OPTIMUM, 1, 3 * ALPHA_LOG_ODDS_BOUND)
    sweep = write_search_sweep(tmp_path / "s.yaml")
    studies, trained = run_search(sweep, tmp_path)
    at_r1 = [alpha for alpha, r in trained if r == 1]
    assert len(at_r1) < 6 and best_trials(studies)[1][0] == 1.0
    assert has_ended(studies[1], sweep.base) and not has_ended(studies[8], sweep.base)
    assert len([a for a, r in trained if r == 8]) == 6
    assert run_search(sweep, tmp_path)[1] == []  # a re-run asks nothing more at R = 1
