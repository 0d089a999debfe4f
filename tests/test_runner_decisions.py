"""The runner's decisions without Ray: pending and failed trials, what a searcher is told
and asked, the search loop, and a whole sweep driven with a fake trainer and searcher.

The Optuna searcher's own proposals are tests/test_search.py's; the suggest searcher's
rounds are here, on a synthetic surface.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import yaml

from dualsweep.config import ConfigError, load_sweep, run_key, to_plain
from dualsweep.sweep.algorithms import register_searcher, searcher_for
from dualsweep.sweep.decisions import (
    SearchLoop,
    failed_keys,
    interrupted_message,
    observed_points,
    observed_table,
    pending_keys,
    result_value,
)
from dualsweep.sweep.searcher import DONE, Searcher

from .helpers import tiny_run_config


def decision_sweep(path, **search):
    raw = {"name": "decide", "base": to_plain(tiny_run_config()), "points": [[0.5, 1]]}
    if search:
        raw["search"] = {"repetitions": [1, 2], "trials_per_repetition": 2, **search}
    path.write_text(yaml.safe_dump(raw))
    return load_sweep(path)


def test_pending_and_failed_keep_the_sweep_order():
    configs = dict.fromkeys(["c", "a", "b"])
    assert pending_keys(configs, {"a"}) == ["c", "b"]
    assert failed_keys(configs, {"a", "b", "c", "other"}) == []
    message = interrupted_message("s", 1, 3, searched=True)
    assert message.startswith("sweep s interrupted with 1/3 trials finished;")
    assert "finish the other 2 (" in message and message.endswith("the search where it stopped)")
    assert interrupted_message("s", 0, 4, searched=False).endswith("from their last checkpoint)")


def test_a_searcher_is_told_the_finished_runs_and_their_metric():
    runs = pd.DataFrame(
        {
            "run_key": ["k1", "k2", "k3"],
            "alpha": [0.0, 0.5, 1.0],
            "repetitions": [1, 1, 2],
            "status": ["finished", "failed", "finished"],
        }
    )
    scores = pd.DataFrame({"score_ar": [0.25, 0.75]}, index=pd.Index(["k1", "k2"], name="run_key"))
    table = observed_table(runs, scores, "score_ar")
    assert list(table["run_key"]) == ["k1", "k3"]  # the failed run is not observed
    assert table["value"].iloc[0] == 0.25 and math.isnan(table["value"].iloc[1])  # k3: no score
    assert list(table["repetitions"]) == [1, 2]
    none = observed_table(runs, None, "final_held_out_ar_loss")  # a metric no table has
    assert none["value"].isna().all()
    assert observed_table(pd.DataFrame(), None, "x").empty


def test_only_the_sweeps_own_runs_with_a_value_are_points():
    base = tiny_run_config()
    own = run_key(base.replace(alpha=0.25, repetitions=2))
    table = pd.DataFrame(
        {
            "run_key": [own, "another-config", own],
            "alpha": [0.25, 0.5, 0.25],
            "repetitions": [2, 2, 2],
            "value": [3.5, 1.0, math.nan],
        }
    )
    assert observed_points(table.iloc[:2], base) == {(0.25, 2): 3.5}
    assert observed_points(table.iloc[2:], base) == {}


def test_a_result_is_told_as_its_value_or_a_failure():
    assert result_value({"loss": 2.5}, "loss", error=False) == 2.5
    assert result_value({"loss": 2.5}, "loss", error=True) is None
    assert result_value({"loss": math.nan}, "loss", error=False) is None
    assert result_value(None, "loss", error=False) is None


class Scripted(Searcher):
    """Answers from a script of (answer, points it may still ask after); records what it is
    told and what it saw."""

    def __init__(self, script, remaining):
        self.script, self.left, self.told, self.seen = list(script), remaining, [], []

    def start(self, observed):
        return self.left

    def ask(self, observed, slots):
        self.seen.append(dict(observed))
        answer, self.left = self.script.pop(0)
        return answer

    def tell(self, point, value):
        self.told.append((point, value))

    @property
    def remaining(self):
        return self.left


def test_the_search_loop_asks_per_slot_waits_and_tells():
    base = tiny_run_config()
    # 4 points expected; the first ask gives one, the second nothing yet, the third one and
    # drops 1 of the budget (an R ended early), then done.
    searcher = Scripted([([(0.5, 1)], 3), ([], 3), ([(0.25, 2)], 1), (DONE, 0)], remaining=4)
    dropped, new = [], {}
    loop = SearchLoop(searcher, base, {(0.0, 1): 4.0}, new.setdefault, dropped.append)
    first = loop.next("t1")
    assert first.objective.alpha == 0.5 and first.data.repetitions == 1
    assert list(new) == [run_key(first)] and loop.launched == [run_key(first)]
    assert loop.next("t2") is None and dropped == []  # wait: nothing until a result
    loop.complete("t1", 3.0)
    assert searcher.told == [((0.5, 1), 3.0)]
    second = loop.next("t3")
    assert second.objective.alpha == 0.25
    # 2 launched + 1 left = 3 of the 4 expected: the progress count drops by 1.
    assert dropped == [1]
    assert searcher.seen[-1] == {(0.0, 1): 4.0, (0.5, 1): 3.0}  # told results are observed
    loop.complete("t3", None)  # failed: told as None, not observed
    assert searcher.told[-1] == ((0.25, 2), None) and (0.25, 2) not in loop.observed
    loop.complete("unknown", 1.0)  # a trial it never asked for is ignored
    assert loop.next("t4") == "done"


class FakeTrainer:
    """Trains nothing: records what it was asked, proposes through the loop like Tune."""

    def __init__(self):
        self.trained, self.searched = [], []

    def train(self, configs, pending, *, done_before):
        self.trained.append(list(pending))
        return []

    def search(self, configs, loop, *, done_before):
        for i in range(10):
            config = loop.next(f"t{i}")
            if config == "done":
                break
            self.searched.append(run_key(config))
            loop.complete(f"t{i}", None)  # every searched trial fails
        return []


def test_a_sweep_driven_with_a_fake_trainer_and_searcher(tmp_path, monkeypatch):
    from dualsweep.sweep import algorithms
    from dualsweep.sweep.runner import run_sweep

    monkeypatch.setattr(algorithms, "_SEARCHERS", dict(algorithms._SEARCHERS))  # restored after

    sweep = decision_sweep(tmp_path / "s.yaml", algorithm="scripted")
    with pytest.raises(ConfigError, match=r"search.algorithm: 'scripted' is not registered"):
        searcher_for(sweep, tmp_path, print)
    scripted = Scripted([([(0.25, 1)], 1), ([(0.75, 2)], 0), (DONE, 0)], remaining=2)
    register_searcher("scripted", lambda sweep, results_dir, log: scripted)
    trainer, lines = FakeTrainer(), []
    outcome = run_sweep(
        sweep,
        results_root=tmp_path / "results",
        storage=tmp_path / "runs",
        trainer=trainer,
        log=lines.append,
    )
    fixed = [run_key(c) for c in sweep.trials()]
    assert trainer.trained == [fixed]  # the point and the 4 anchors, in file order
    assert len(fixed) == 5 and len(trainer.searched) == 2
    # Nothing trained for real: all 7 trials (5 fixed, 2 searched) are failed, 7 launched.
    assert outcome.trials == 7 and outcome.finished == 0 and outcome.launched == 7
    assert outcome.failed == fixed + trainer.searched
    assert [point for point, _ in scripted.told] == [(0.25, 1), (0.75, 2)]


def test_the_suggest_searcher_asks_in_rounds(tmp_path):
    from dualsweep.cli.searchers import SuggestSearcher

    sweep = decision_sweep(tmp_path / "s.yaml", algorithm="suggest", round_size=3)
    searcher = SuggestSearcher(sweep, tmp_path, log=lambda line: None)
    assert searcher.start(pd.DataFrame()) == 4  # 2 per R at R = 1, 2; none in the tables

    def loss(alpha, r):  # lowest at alpha 0.75 (log-odds 1.1) at every R
        return 4.0 + 0.1 * (math.log((alpha + 1e-3) / (1 - alpha + 1e-3)) - 1.1) ** 2 + 0.01 * r

    observed = {(a, r): loss(a, r) for r in (1, 2) for a in (0.0, 1.0)}
    first = [searcher.ask(observed, 1)[0] for _ in range(3)]  # a round of 3, one per slot
    assert len(set(first)) == 3 and searcher.remaining == 1
    assert all(0 < a < 1 and r in (1, 2) for a, r in first)  # space-filling: interior alphas
    assert searcher.ask(observed, 1) == []  # the next round waits for this one's results
    for point in first:
        observed[point] = loss(*point)
        searcher.tell(point, observed[point])
    (last,) = searcher.ask(observed, 2)  # the budget's last point
    assert last not in observed and searcher.remaining == 0
    searcher.tell(last, None)
    assert searcher.ask(observed, 1) is DONE
    # Every asked point was recorded before it trained: a new run (after a kill, or with the
    # tables rebuilt) resumes them all and has no budget left.
    again = SuggestSearcher(sweep, tmp_path, log=lambda line: None)
    asked = {run_key(sweep.base.replace(alpha=a, repetitions=r)) for a, r in [*first, last]}
    assert set(again.proposals()) == asked - {run_key(c) for c in sweep.trials()}
    assert again.start(pd.DataFrame()) == 0


def test_the_suggest_searcher_spreads_its_first_round_over_one_rs_anchors(tmp_path):
    # Two runs cannot be fitted (fewer than the GP's 4 hyperparameters): the first round
    # fills the space in log-odds instead, and nothing raises.
    from dualsweep.cli.searchers import SuggestSearcher

    raw_sweep = decision_sweep(tmp_path / "s.yaml", algorithm="suggest", round_size=2)
    sweep = dataclasses.replace(
        raw_sweep, search=dataclasses.replace(raw_sweep.search, repetitions=(1,))
    )
    searcher = SuggestSearcher(sweep, tmp_path, log=lambda line: None)
    assert searcher.start(pd.DataFrame()) == 2
    picks = searcher.ask({(0.0, 1): 4.5, (1.0, 1): 4.2}, 2)
    assert len(picks) == 2 and all(0 < a < 1 and r == 1 for a, r in picks)


def test_the_suggest_searcher_counts_its_rows_of_the_tables_not_the_anchors(tmp_path):
    # A lost record: the tables hold the anchors (fixed), one searched run of this base, and a
    # row of another base at a searched R. Only the searched run is a proposal, spent budget.
    from dualsweep.cli.searchers import SuggestSearcher

    sweep = decision_sweep(tmp_path / "s.yaml", algorithm="suggest", round_size=3)
    searched = sweep.base.replace(alpha=0.25, repetitions=2)
    other = sweep.base.replace(alpha=0.75, repetitions=2, seed=7)
    rows = [*sweep.trials(), searched, other]
    pd.DataFrame(
        {
            "run_key": [run_key(c) for c in rows],
            "alpha": [c.objective.alpha for c in rows],
            "repetitions": [c.data.repetitions for c in rows],
        }
    ).to_parquet(tmp_path / "runs.parquet")
    searcher = SuggestSearcher(sweep, tmp_path, log=lambda line: None)
    assert list(searcher.proposals()) == [run_key(searched)]
    assert searcher.start(pd.DataFrame()) == 3  # 4 in all, 1 spent
