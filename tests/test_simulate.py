"""`dualsweep simulate`: designs scored against a truth whose best alpha is known."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dualsweep.analysis import truths
from dualsweep.analysis.simulate import (
    FixedOrder,
    Noise,
    Observations,
    Task,
    by_count,
    run_task,
    runs_needed,
    simulate,
    true_best_alphas,
)
from dualsweep.analysis.surface import dense_alphas

from dualsweep.cli import main
from dualsweep.schema import alpha_log_odds

REPO = Path(__file__).resolve().parents[1]
GRID_ALPHAS = (0.0, 1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16, 63 / 64, 1.0)
REPETITIONS = (1, 2, 4, 8, 16, 32)


def known_truth(alpha: float, r: float) -> float:
    """Best alpha exactly 1/2 at every R (log-odds 0), a bowl in log-odds."""
    return 1.0 + 0.02 * float(alpha_log_odds(alpha)) ** 2


def test_true_best_alpha_is_the_dense_grid_argmin():
    best = true_best_alphas(known_truth, [1, 32])
    assert best == pytest.approx({1: 0.5, 32: 0.5})  # log-odds 0: the 201-point grid's middle
    paper = true_best_alphas(truths.paper_shaped, [1, 32])
    # 16 / (R + 15.25): 0.985 at R = 1, 0.339 at R = 32, read to the dense grid's spacing
    step = float(np.diff(alpha_log_odds(dense_alphas()[1:-1])).max())
    for r, target in ((1, 16 / 16.25), (32, 16 / 47.25)):
        assert abs(alpha_log_odds(paper[r]) - alpha_log_odds(target)) <= step / 2 + 1e-9
    assert true_best_alphas(truths.flat, [1, 32])[1] == true_best_alphas(truths.flat, [1, 32])[32]


def test_observations_share_draws_by_point_and_the_seed_effect_by_r():
    same = Observations(known_truth, Noise(0.1, 0.0), seed=3, study=1)
    again = Observations(known_truth, Noise(0.1, 0.0), seed=3, study=1)
    other = Observations(known_truth, Noise(0.1, 0.0), seed=3, study=2)
    assert same(0.5, 4) == again(0.5, 4)  # one point, one value, whichever design asks
    assert same(0.5, 4) != other(0.5, 4)
    assert same(0.5, 4) != same(0.75, 4)
    shared = Observations(known_truth, Noise(0.0, 0.2), seed=3, study=1)
    offsets = [shared(a, 4) - known_truth(a, 4) for a in (0.0, 0.5, 0.9)]
    assert offsets[0] != 0.0 and np.allclose(offsets, offsets[0])  # one offset for the whole R
    assert shared(0.5, 8) - known_truth(0.5, 8) != pytest.approx(offsets[0])
    with pytest.raises(Exception, match="--noise"):
        Noise(-1.0)


def _grid_rows(truth, noise: float, studies: int, checkpoints=(12, 24, 48)) -> pd.DataFrame:
    points = [(a, r) for a in GRID_ALPHAS for r in REPETITIONS]
    tasks = [
        Task(FixedOrder("grid", "grid", points), truth, Noise(noise), k, 0, checkpoints, REPETITIONS, 400)
        for k in range(studies)
    ]  # fmt: skip
    return simulate(tasks, jobs=1, log=lambda message: None)


def test_the_grid_finds_a_known_best_alpha_better_with_more_runs():
    # The paper-shaped truth: best alpha 16 / (R + 15.25), from 0.985 at R = 1 to 0.339 at 32.
    rows = _grid_rows(truths.paper_shaped, 0.05, studies=6)
    assert np.allclose(
        rows.groupby("repetitions")["true_alpha"].first(),
        [16 / (r + 15.25) for r in REPETITIONS],
        rtol=0.06,  # the dense grid's spacing (0.069 in log-odds) around each
    )
    summary = by_count(rows, tolerance=1.0).set_index("n")
    # More of the grid's runs pin the best alpha down: the worst R's median error shrinks
    # from 12 random grid points to 24 and to 48 (measured 1.39, 0.73, 0.49), and the 90%
    # intervals narrow (summed widths 29.1, 16.5, 14.9).
    assert (
        summary.loc[48, "worst_error"]
        < summary.loc[24, "worst_error"]
        < summary.loc[12, "worst_error"]
    )
    assert summary.loc[48, "worst_error"] < 1.0
    assert (
        summary.loc[48, "summed_width"]
        < summary.loc[24, "summed_width"]
        < summary.loc[12, "summed_width"]
    )
    # Each study sees its own noise: the per-R errors of two studies differ.
    final = rows[rows["n"] == 48]
    assert final.groupby("study")["error"].sum().nunique() > 1
    # The 90% intervals hold the truth about 90% of the time, a little more: measured 0.972
    # of 108 intervals (6 studies x 6 R x 3 counts); the GP's intervals lean conservative.
    # Every interval holding it would mean intervals too wide to say anything, and fewer
    # than 84% (a binomial at 0.9 stays above it with 95% probability) intervals that claim
    # more than the fit knows.
    assert 0.84 <= rows["covered"].mean() < 1.0
    assert runs_needed(summary.reset_index(), "grid", 1.0) == 24


def test_a_design_that_stops_early_is_scored_up_to_its_last_run():
    points = [(a, r) for a in GRID_ALPHAS[::2] for r in REPETITIONS]  # 24 points
    task = Task(
        FixedOrder("grid", "grid", points),
        known_truth,
        Noise(0.02),
        0,
        0,
        (12, 24, 48),
        REPETITIONS,
        200,
    )
    rows = pd.DataFrame(run_task(task))
    assert sorted(rows["n"].unique()) == [12, 24]
    assert set(rows["design_runs"]) == {24}


def test_simulate_command_with_a_truth_from_the_callers_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_truth.py").write_text(
        textwrap.dedent(
            """
            import math

            def loss(alpha, r):
                a = min(max(alpha, 1 / 1024), 1 - 1 / 1024)
                return 2.0 + 0.02 * (math.log(a / (1 - a)) - math.log(3.0)) ** 2  # best 3/4
            """
        )
    )
    sweep = tmp_path / "small.yaml"
    sweep.write_text(
        textwrap.dedent(
            f"""
            name: small
            base: {REPO / "sweeps" / "tiny.yaml"}
            grid:
              alpha: [0, 1/4, 1/2, 3/4, 15/16, 1]
              repetitions: [1, 4, 16]
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["simulate", "--truth", "my_truth:loss", "--noise", "0.02", "--studies", "1"]
    argv += ["--designs", "grid", "checkerboard", "suggest", "optuna", "--sweep", str(sweep)]
    argv += ["--samples", "200", "--jobs", "1", "--out", str(out)]
    assert main(argv) == 0
    rows = pd.read_parquet(out / "simulations.parquet")
    assert set(rows["design"]) == {"grid", "checkerboard", "suggest", "optuna"}
    assert set(rows["truth"]) == {"my_truth:loss"}
    assert np.allclose(alpha_log_odds(rows["true_alpha"]), math.log(3.0), atol=0.05)
    # grid: 18 points, checkerboard: 9 (even index sums of 6 alphas x 3 R)
    assert rows.groupby("design")["design_runs"].max().to_dict() == {
        "grid": 18, "checkerboard": 9, "suggest": 18, "optuna": 18
    }  # fmt: skip
    report = (out / "REPORT.md").read_text()
    assert "## Truth `my_truth:loss`" in report
    assert "**Half the models (9 runs): " in report and "| suggest rounds |" in report
    assert (out / "figures" / "designs_1_loss.png").is_file()
    # The report is the rows' and setup's: rebuilt from them alone, it is the same text.
    from dualsweep.cli.simulate import write_report

    before = report
    write_report(out)
    assert (out / "REPORT.md").read_text() == before


def test_simulate_refuses_a_truth_it_cannot_import(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["simulate", "--truth", "no_such_module:loss", "--noise", "0.1", "--out", "out"])
    assert code == 2
    assert "no_such_module" in capsys.readouterr().err
    assert not (tmp_path / "out" / "simulations.parquet").exists()


def test_half_the_models_reads_accuracy_and_tolerance():
    from dualsweep.analysis.simulation_report import half_the_models

    def rows(design, errors):
        return [{"design": design, "n": n, "worst_error": e} for n, e in errors.items()]

    grid = rows("grid", {12: 2.0, 24: 1.2, 36: 0.9, 50: 0.8})
    # suggest: within tolerance 1.0 from 24 and at or below the grid's final 0.8 from 24
    fast = rows("suggest", {12: 3.0, 24: 0.7, 36: 0.6, 50: 0.5})
    summary = pd.DataFrame(grid + fast)
    half = half_the_models(summary, 50, 1.0)
    assert half["answer"] == "yes" and half["reached"] == {"suggest": 24}
    assert half["within_tolerance"] == {"suggest": 24} and half["grid_within_tolerance"] == 36
    assert half["grid_at_half_n"] == 24 and half["grid_at_half"] == 1.2
    # Within tolerance at 24 but as accurate as the full grid only from 36: partly.
    slow = rows("suggest", {12: 3.0, 24: 0.9, 36: 0.7, 50: 0.5})
    assert half_the_models(pd.DataFrame(grid + slow), 50, 1.0)["answer"] == "partly"
    # Neither by half: no.
    late = rows("suggest", {12: 3.0, 24: 1.5, 36: 0.7, 50: 0.5})
    assert half_the_models(pd.DataFrame(grid + late), 50, 1.0)["answer"] == "no"
