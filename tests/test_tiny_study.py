"""The committed laptop study (results/tiny*): made by the committed sweep files, and its
REPORT.md says what its tables hold.

These read the committed Parquet tables only (no training): the report is regenerated from
them into a temporary folder and must equal the committed one, and its numbers are checked
against pandas computations on the same tables.
"""

from __future__ import annotations

import re
import shutil

import pytest
from dualsweep.analysis import report
from dualsweep.analysis.plots import make_all

from dualsweep.config import load_sweep, run_key
from dualsweep.results import load

from .helpers import REPO

RESULTS = REPO / "results"
SWEEPS = ("tiny", "tiny-seeds", "tiny-allocation")


@pytest.mark.parametrize("name", SWEEPS)
def test_each_committed_sweep_is_its_sweep_file_finished(name):
    sweep = load_sweep(REPO / "sweeps" / f"{name}.yaml")
    runs = load(name, RESULTS).runs
    runs = runs[runs["in_sweep"]]
    assert sorted(runs["run_key"]) == sorted(run_key(c) for c in sweep.trials())
    assert (runs["status"] == "finished").all() and runs["evaluated"].all()
    evals = load(name, RESULTS).evals
    assert (evals["n_items"] == sweep.base.evaluation.task_items).all()


def test_the_tiny_design_trains_both_pure_objectives_at_every_r_in_30_minutes():
    results = load("tiny", RESULTS)
    runs = results.runs
    assert len(runs) == 50
    for r, at_r in runs.groupby("repetitions"):
        assert {0.0, 1.0} <= set(at_r["alpha"]), r
    assert report.sweep_wall_time(runs, results.evals) <= 30 * 60


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """`make plots tiny` on a copy of the committed tables."""
    root = tmp_path_factory.mktemp("results")
    for name in SWEEPS:
        shutil.copytree(RESULTS / name, root / name)
        for generated in ("figures", "tables", "REPORT.md"):
            target = root / name / generated
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    make_all("tiny", root, log=lambda line: None)
    return root


def test_the_committed_report_is_what_the_code_writes_from_the_tables(regenerated):
    assert (regenerated / "tiny" / "REPORT.md").read_text() == (
        RESULTS / "tiny" / "REPORT.md"
    ).read_text()
    # Every figure and table the committed study links is written again, none left out.
    for folder in ("figures", "tables"):
        committed = sorted(p.name for p in (RESULTS / "tiny" / folder).iterdir())
        assert sorted(p.name for p in (regenerated / "tiny" / folder).iterdir()) == committed
    assert {"overfitting.png", "best_alpha_density.png", "prefix_gain.png"} <= set(
        committed_figures()
    )


def committed_figures() -> list[str]:
    return [p.name for p in (RESULTS / "tiny" / "figures").iterdir()]


def test_the_report_numbers_are_the_tables_numbers():
    text = (RESULTS / "tiny" / "REPORT.md").read_text()
    results = load("tiny", RESULTS)
    runs = results.runs
    assert f"finished runs: {len(runs)} " in text

    # Overfitting: pure AR's final and best held-out loss at each R, as the table rows say.
    ar = runs[runs["alpha"] == 1].set_index("repetitions").sort_index()
    for r, row in ar.iterrows():
        final, best = row["final_held_out_ar_loss"], row["best_held_out_ar_loss"]
        cells = f"| {r} | {final:.3f} | {best:.3f} | {final - best:+.3f} |"
        assert cells in text, cells

    # Evaluation cost: the median share of a trial's time spent evaluating.
    scoring = runs["run_key"].map(results.evals.groupby("run_key")["scoring_time_s"].sum())
    share = 100 * (runs["held_out_eval_time_s"] + scoring) / (runs["wall_time_s"] + scoring)
    assert f"Median share {share.median():.1f}%" in text

    # Sweep wall time, first start to the last run's end.
    wall = report.sweep_wall_time(runs, results.evals) / 60
    assert re.search(rf"sweep wall time: {wall:.1f} min", text)


# -- the adaptive designs (results/tiny-suggest, results/tiny-optuna, results/tiny-adaptive) --
def test_the_committed_adaptive_designs_are_their_sweep_files_finished():
    from dualsweep.sweep.search import has_ended, open_studies, searched_counts

    rounds = [load_sweep(REPO / "sweeps" / "tiny-suggest.yaml")]
    rounds += [
        load_sweep(REPO / "sweeps" / "tiny-suggest-rounds" / f"round-{i}.yaml") for i in range(1, 7)
    ]
    for before, after in zip(rounds, rounds[1:], strict=False):  # each round adds 6 points
        assert after.points[: len(before.points)] == before.points
        assert len(after.points) == len(before.points) + 6 and after.base == before.base
    runs = load("tiny-suggest", RESULTS).runs
    assert sorted(runs["run_key"]) == sorted(run_key(c) for c in rounds[-1].trials())
    assert (runs["status"] == "finished").all() and runs["evaluated"].all()

    sweep = load_sweep(REPO / "sweeps" / "tiny-optuna.yaml")
    runs = load("tiny-optuna", RESULTS).runs
    assert (runs["status"] == "finished").all() and runs["evaluated"].all()
    fixed = {run_key(c) for c in sweep.trials()}
    studies = open_studies(sweep, RESULTS / "tiny-optuna")  # the committed search.db
    proposals = {key for s in studies.values() for key in s.proposals(sweep.base)}
    assert set(runs["run_key"]) == proposals | fixed
    counts = searched_counts(studies, sweep.base, fixed)
    assert len(runs) == len(fixed) + sum(counts.values())
    for r, n in counts.items():  # each R's budget spent, or its search ended
        assert n == sweep.search.trials_per_repetition or has_ended(studies[r], sweep.base)

    # The anchors were trained again, for each design: the same numbers as the grid's runs.
    # (The designs predate the grid's common masks, so their run keys differ; a pure
    # objective draws masks for all rows or none, so common_masks cannot change it.)
    point = ["alpha", "repetitions", "seed"]
    columns = ["final_held_out_ar_loss", "final_held_out_md_elbo", "best_held_out_ar_loss"]
    grid = load("tiny", RESULTS).runs
    grid = grid[grid["alpha"].isin([0.0, 1.0])].set_index(point)[columns]
    for name in ("tiny-suggest", "tiny-optuna"):
        design = load(name, RESULTS).runs.set_index(point)[columns]
        shared = design.index.intersection(grid.index)
        assert len(shared) == 12 and (design.loc[shared] == grid.loc[shared]).all().all()


@pytest.mark.slow
def test_the_committed_adaptive_report_is_what_the_code_writes(tmp_path):
    from dualsweep.analysis import adaptive

    for name in ("tiny", "tiny-suggest", "tiny-optuna", "simulated-designs"):
        shutil.copytree(RESULTS / name, tmp_path / "results" / name)
    assert adaptive.main(["--results", str(tmp_path / "results")]) == 0
    written = (tmp_path / "results" / "tiny-adaptive" / "REPORT.md").read_text()
    assert written == (RESULTS / "tiny-adaptive" / "REPORT.md").read_text()
