"""A third objective reaches the analysis with no edit in analysis/ (issue 27).

The objective is defined and registered here only: fixed-rate masked language modelling
(BERT-style, 15% of the tokens, no 1/t weight). Tiny runs of the pair (ar, mlm) are trained
in-process, collected into a sweep's tables as the sweep collects its trials, and `make
plots`' entry point runs on them: the objective's columns, tables, figures and claims carry
its name, read from the runs' columns by the schema's naming rule.
"""

from __future__ import annotations

import pandas as pd
import pytest

from dualsweep import schema
from dualsweep.config import run_key
from dualsweep.objectives import registry
from dualsweep.objectives.registry import register

from .helpers import fixed_rate_mlm, tiny_run_config

MLM = schema.ObjectiveColumns("mlm", bound=False, estimated=True)  # fixed_rate_mlm's
ALPHAS, REPETITIONS = (0.0, 0.5, 1.0), (1, 4)


@pytest.fixture(scope="module")
def registered():
    """The objective registered for this module, the registry and its torch-free half in
    the schema restored afterwards (other tests see ar and md only)."""
    saved = (
        dict(registry._REGISTRY),
        dict(schema.OBJECTIVE_COLUMNS),
        set(schema.CAUSAL_OBJECTIVES),
    )
    register(fixed_rate_mlm())
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    schema.OBJECTIVE_COLUMNS.clear()
    schema.OBJECTIVE_COLUMNS.update(saved[1])
    schema.CAUSAL_OBJECTIVES.clear()
    schema.CAUSAL_OBJECTIVES.update(saved[2])


@pytest.fixture(scope="module")
def results_root(registered, tmp_path_factory):
    """results/third: 6 tiny runs of (ar, mlm), 3 alphas x 2 R, collected as a sweep does."""
    from dualsweep.sweep.storage import TrialStorage
    from dualsweep.sweep.trials import collect
    from dualsweep.training.run import train

    root = tmp_path_factory.mktemp("third")
    base = tiny_run_config(objectives=["ar", "mlm"], token_budget=8 * 32 * 12)
    base = base.replace(log_interval=4, eval_interval=4)
    configs = {}
    for r in REPETITIONS:
        for alpha in ALPHAS:
            config = base.replace(alpha=alpha, repetitions=r)
            configs[run_key(config)] = config
    storage = TrialStorage(root / "trials", "third")
    for config in configs.values():
        summary = train(config, storage.trial_dir(config), log=lambda m: None)
        assert summary.status == "finished", summary.error
    collect(storage, root / "results" / "third", configs)
    return root / "results"


def test_the_schema_reads_the_objectives_back_from_the_columns(results_root):
    runs = pd.read_parquet(results_root / "third" / schema.RUNS_TABLE)
    found = schema.objectives_in(runs.columns, pair=("ar", "mlm"))
    assert found == (schema.AR_COLUMNS, MLM)
    # Without the pair: registered order (ar, md, mlm), then by name; md has no columns.
    assert schema.objectives_in(["final_held_out_zz_loss", *runs.columns]) == (
        schema.AR_COLUMNS,
        MLM,
        schema.ObjectiveColumns("zz", bound=False, estimated=False),
    )
    assert schema.objectives_in(runs.columns, pair=("mlm", "ar")) == (MLM, schema.AR_COLUMNS)


def test_plots_write_the_third_objective_s_tables_figures_and_claims(results_root, monkeypatch):
    from dualsweep.analysis import figures, plots

    drawn = {}
    save = figures.save

    def keep(fig, directory, name):
        drawn[name] = fig
        return save(fig, directory, name)

    monkeypatch.setattr(figures, "save", keep)
    written = {
        p.relative_to(results_root / "third").as_posix()
        for p in plots.make_all("third", results_root, log=lambda m: None)
    }
    folder = results_root / "third"
    assert {f"figures/surface_final_held_out_mlm_loss.{e}" for e in ("png", "pdf")} <= written

    # The main table: each R's pure AR (alpha 1) and pure MLM (alpha 0) on the MLM loss.
    runs = pd.read_parquet(folder / schema.RUNS_TABLE)
    main = (folder / "tables" / "main.md").read_text()
    assert "| R | best mix (α) | best mix | pure AR | pure MLM |" in main
    assert "**final_held_out_mlm_loss (lower is better)" in main
    for r in REPETITIONS:
        at = runs[runs["repetitions"] == r].set_index("alpha")["final_held_out_mlm_loss"]
        mix = f"1/2 | {at[0.5]:.3f} | {at[1.0]:.3f} | {at[0.0]:.3f} |"
        assert f"| {r} | {mix}" in main.split("final_held_out_mlm_loss")[1]
    best = (folder / "tables" / "best_alpha.md").read_text()
    assert "best alpha targeting final_held_out_ar_loss vs final_held_out_mlm_loss" in best
    assert "| R | AR-targeted | MLM-targeted |" in best

    # The overfitting figure: the AR loss curves of pure AR and of pure MLM at each R.
    curves = pd.read_parquet(folder / schema.CURVES_TABLE).dropna(subset=["held_out_ar_loss"])
    panel = drawn["overfitting"].axes[0]  # R = 1
    lines = {line.get_label(): line for line in panel.get_lines()}
    pure_mlm = runs[(runs["alpha"] == 0.0) & (runs["repetitions"] == 1)]["run_key"].iloc[0]
    expected = curves[curves["run_key"] == pure_mlm]
    assert list(lines["pure MLM (alpha = 0)"].get_ydata()) == list(expected["held_out_ar_loss"])
    assert "pure AR (alpha = 1)" in lines
    density = drawn["best_alpha_density"]
    assert {ax.get_title() for ax in density.axes if ax.get_title()} == {
        "best alpha for AR loss",
        "best alpha for MLM loss",
    }

    # The report's claims are about the runs' pair.
    report = (folder / schema.REPORT_FILE).read_text()
    assert "## 5. Best alpha is similar for AR and MLM targets" in report
    assert "better than pure AR and pure MLM" in report
    assert "| R | best mix α | best mix | pure AR | pure MLM | margin |" in report
    assert "best alpha similar for AR and MLM targets, `final_held_out_ar_loss vs " in report
