"""Analysis: the GP surface recovers a known optimum; tables equal pandas; figures are written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dualsweep.analysis.data import AnalysisError, metric, trial_table
from dualsweep.analysis.surface import best_alpha, fit_surface, loo_rmse
from dualsweep.analysis.tables import (
    alpha_label,
    format_best_alpha,
    format_main_table,
    latex_escape,
    main_table,
)

from dualsweep.schema import alpha_from_log_odds

from .helpers import REPETITIONS, REPO, best_logit, synthetic_results


@pytest.fixture(scope="module")
def table():
    return trial_table(synthetic_results())


def test_trial_table(table):
    assert len(table) == 50 and "broken" not in set(table["run_key"])
    row = table.iloc[0]
    # score_ar is the mean of the two task scores; its error sqrt(2^2 + 2^2) / 2.
    assert row["score_ar"] == pytest.approx(
        (row["score_ar:continuation"] + row["score_ar:word_order"]) / 2
    )
    assert row["score_ar_stderr"] == pytest.approx(np.sqrt(8) / 2)


def test_fit_recovers_the_known_best_alpha(table):
    fit = fit_surface(table, metric(table, "score_ar"))
    assert fit.r2 > 0.99
    summary = best_alpha(fit, REPETITIONS, samples=1000)
    truth = alpha_from_log_odds(best_logit(np.array(REPETITIONS, dtype=float)))
    inside = (summary["alpha_q05"] <= truth) & (truth <= summary["alpha_q95"])
    assert inside.all(), summary.assign(truth=truth)
    assert (summary["p_interior"] > 0.95).all()  # a mix beats both pure objectives everywhere
    assert summary["ar_repetitions_median"].to_numpy() == pytest.approx(
        summary["alpha_median"] * REPETITIONS
    )


def test_loss_metrics_are_minimised(table):
    fit = fit_surface(table, metric(table, "held_out_ar_loss"))  # alias of final_held_out_ar_loss
    assert fit.metric.lower_is_better
    summary = best_alpha(fit, [1, 256], samples=500)
    truth = alpha_from_log_odds(best_logit(np.array([1.0, 256.0])))
    assert ((summary["alpha_q05"] <= truth) & (truth <= summary["alpha_q95"])).all()


def test_per_point_noise_from_standard_errors(table):
    fit = fit_surface(table, metric(table, "score_ar"), noise="stderr")
    assert fit.noise == "stderr" and "WhiteKernel" not in fit.kernel
    with pytest.raises(AnalysisError, match="no standard errors"):
        fit_surface(table, metric(table, "final_held_out_ar_loss"), noise="stderr")


def test_leave_one_out_closed_form_equals_refitting(table):
    from sklearn.gaussian_process import GaussianProcessRegressor

    fit = fit_surface(table.iloc[:20], metric(table, "score_md"))
    errors = []
    for i in range(len(fit.X)):
        keep = np.arange(len(fit.X)) != i
        gp = GaussianProcessRegressor(
            fit.latent.kernel_, alpha=fit.latent.alpha, normalize_y=False, optimizer=None
        )
        # The closed form fixes the normalisation of the full fit; refit on the same scale.
        mean, scale = fit.latent._y_train_mean, fit.latent._y_train_std
        gp.fit(fit.X[keep], (fit.y[keep] - mean) / scale)
        errors.append(fit.y[i] - (gp.predict(fit.X[i : i + 1])[0] * scale + mean))
    assert loo_rmse(fit.latent, fit.X, fit.y) == pytest.approx(
        np.sqrt(np.mean(np.square(errors))), rel=1e-6
    )


def test_clear_errors(table):
    with pytest.raises(
        AnalysisError, match=r"^--metric: no metric column 'perplexity'; available: .*score_ar"
    ):
        metric(table, "perplexity")
    with pytest.raises(
        AnalysisError, match=r"3 finished runs with a value; the surface needs at least 4"
    ):
        fit_surface(table.iloc[:3], metric(table, "score_ar"))


def test_main_table_equals_pandas(table):
    metrics = [metric(table, "score_ar"), metric(table, "final_held_out_ar_loss")]
    main = main_table(table, metrics).set_index(["metric", "repetitions"])
    for r in REPETITIONS:
        at_r = table[table["repetitions"] == r]
        mixes = at_r[(at_r["alpha"] > 0) & (at_r["alpha"] < 1)]
        row = main.loc[("score_ar", r)]
        assert row["best_mix"] == mixes["score_ar"].max()
        assert row["best_mix_alpha"] == mixes.loc[mixes["score_ar"].idxmax(), "alpha"]
        pure_ar = at_r.loc[at_r["alpha"] == 1, "score_ar"]
        assert (row["pure_ar"] == pure_ar.iloc[0]) if len(pure_ar) else np.isnan(row["pure_ar"])
        assert (
            main.loc[("final_held_out_ar_loss", r), "best_mix"]
            == mixes["final_held_out_ar_loss"].min()
        )


def test_alpha_labels():
    assert [alpha_label(a) for a in (0, 1 / 256, 63 / 64, 1, 0.3)] == [
        "0",
        "1/256",
        "63/64",
        "1",
        "0.3",
    ]


@pytest.mark.slow  # all figures of a synthetic sweep; tests/test_tiny_study.py covers make_all on real tables
def test_make_plots_writes_every_figure_and_table(tmp_path, monkeypatch):
    from dualsweep.analysis import plots

    results = synthetic_results()
    folder = tmp_path / "results" / "synthetic"
    folder.mkdir(parents=True)
    for name, frame in (
        ("runs", results.runs),
        ("curves", results.curves),
        ("evals", results.evals),
    ):
        frame.to_parquet(folder / f"{name}.parquet")
    written = {
        p.relative_to(folder).as_posix()
        for p in plots.make_all("synthetic", tmp_path / "results", log=lambda m: None)
    }
    figures = [
        "overfitting",
        "best_alpha_density",
        "prefix_gain",
        "surface_score_ar",
        "surface_score_md",
        "surface_final_held_out_ar_loss",
    ]
    assert {f"figures/{f}.{ext}" for f in figures for ext in ("png", "pdf")} <= written
    assert {
        "tables/main.md",
        "tables/main.tex",
        "tables/best_alpha.md",
        "tables/best_alpha.tex",
    } <= written
    assert all((folder / p).stat().st_size > 0 for p in written)
    markdown = (folder / "tables" / "best_alpha.md").read_text()
    assert "best alpha targeting score_ar vs score_md" in markdown
    assert "\\begin{tabular}" in (folder / "tables" / "main.tex").read_text()
    assert "REPORT.md" in written and "**Verdict:" in (folder / "REPORT.md").read_text()


def test_plots_without_results_says_so(tmp_path, capsys):
    from dualsweep.analysis import plots

    assert plots.main(["nothing", "--results", str(tmp_path)]) == 2
    assert "run `dualsweep sweep` on its sweep file first" in capsys.readouterr().err


def test_analysis_needs_neither_torch_nor_ray_and_keeps_the_users_backend():
    # A notebook user's matplotlib backend (here: svg) is the same after importing the
    # analysis (figures are drawn on Figure objects, never through a backend switch).
    code = (
        "import sys, matplotlib, dualsweep.analysis.plots, dualsweep.analysis.figures, dualsweep.analysis.surface, dualsweep.analysis.report;"
        "heavy = {'torch', 'lightning', 'ray'} & set(sys.modules); assert not heavy, heavy;"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "svg"}
    )


# -- LaTeX tables ----------------------------------------------------------------------
LATEX_SPECIALS = "\\&%$#_{}~^"


def unescaped(tex: str) -> list[str]:
    """The LaTeX special characters of `tex` outside markup: what is left of each line (not
    a comment) once the caption's braces, row ends, escaped characters, one-symbol math,
    commands with their simple arguments and column separators are taken out."""
    found = []
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        text = re.sub(r"^\\caption\{(.*)\}$", r"\1", line)
        text = re.sub(r" \\\\$", "", text)
        text = re.sub(r"\\[&%$#_{}]", "", text)
        text = re.sub(r"\$(\\[a-zA-Z]+|[<>-])\$", "", text)
        text = re.sub(r"\\[a-zA-Z]+(\[[a-z]*\])?(\{[a-z]*\})*", "", text)
        found += [f"{c} in {line!r}" for c in text.replace(" & ", " ") if c in LATEX_SPECIALS]
    return found


def test_latex_escape_every_special_character():
    assert latex_escape("final_held_out_ar_loss") == r"final\_held\_out\_ar\_loss"
    assert latex_escape("50%") == r"50\%" and latex_escape("a&b") == r"a\&b"
    assert latex_escape(r"\ & % $ # _ { } ~ ^") == (
        r"\textbackslash{} \& \% \$ \# \_ \{ \} \textasciitilde{} \textasciicircum{}"
    )
    # Symbols become commands, and a replacement is never escaped again (one pass).
    assert latex_escape("α·R ± 1 – 2, P(0 < α)") == (
        r"$\alpha$$\cdot$R $\pm$ 1 -- 2, P(0 $<$ $\alpha$)"
    )
    assert unescaped("plain_text 50% a&b") and not unescaped(latex_escape("plain_text 50% a&b"))


def nasty_tables(table) -> dict[str, str]:
    """The LaTeX tables of the synthetic sweep, with every special character in a metric name."""
    main = main_table(table, [metric(table, "final_held_out_ar_loss"), metric(table, "score_ar")])
    main.loc[main["metric"] == "score_ar", "metric"] = r"score_a&b 50% #1 {x} ~y ^z \w $"
    fit = fit_surface(table, metric(table, "score_ar"))
    summary = best_alpha(fit, [1, 16], samples=200)
    return {
        "main": format_main_table(main, latex=True),
        "best_alpha": format_best_alpha(summary, "final_held_out_ar_loss", latex=True),
    }


def test_latex_tables_escape_every_header_cell_and_caption(table):
    tex = nasty_tables(table)
    caption = r"\caption{final\_held\_out\_ar\_loss (lower is better): best dual model"
    assert caption in tex["main"]
    assert (
        r"\caption{score\_a\&b 50\% \#1 \{x\} \textasciitilde{}y \textasciicircum{}z "
        r"\textbackslash{}w \$ (higher is better)" in tex["main"]
    )
    assert (
        r"\caption{posterior of the best alpha for final\_held\_out\_ar\_loss}"
        in (tex["best_alpha"])
    )
    assert (
        r"R & best $\alpha$ (median) & 90\% interval & P(0 $<$ $\alpha$ $<$ 1)"
        in (tex["best_alpha"])
    )
    for name, text in tex.items():
        assert text.isascii(), name  # pdflatex's default input and fonts need no package
        assert not unescaped(text), (name, unescaped(text))
    committed = sorted((REPO / "results").glob("*/tables/*.tex"))
    assert committed, "no committed LaTeX tables"
    for path in committed:
        assert path.read_text().isascii() and not unescaped(path.read_text()), path


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_tables_compile_with_pdflatex(table, tmp_path):
    """Each table, the committed ones too, in a minimal booktabs document."""
    tables = {f"synthetic_{name}": text for name, text in nasty_tables(table).items()}
    for path in sorted((REPO / "results").glob("*/tables/*.tex")):
        tables[f"{path.parent.parent.name}_{path.stem}"] = path.read_text()
    for name, text in tables.items():
        (tmp_path / f"{name}_table.tex").write_text(text)
        (tmp_path / f"{name}.tex").write_text(
            "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
            f"\\input{{{name}_table}}\n\\end{{document}}\n"
        )
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (name, done.stdout[-2000:])
        assert (tmp_path / f"{name}.pdf").stat().st_size > 0


# -- figures ---------------------------------------------------------------------------
def test_prefix_gain_error_bars_combine_both_scores_errors(tmp_path, monkeypatch):
    from dualsweep.analysis import figures

    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, directory, name: drawn.append(fig) or [])
    rows = pd.DataFrame(
        {
            "repetitions": [1, 1, 1, 4],
            "alpha": [0.5, 0.5, 1.0, 0.5],  # two seeds at (1, 1/2)
            "score_prefix": [30.0, 32.0, 20.0, 25.0],
            "score_ar": [28.0, 28.0, 21.0, 20.0],
            "score_prefix_stderr": [3.0, 4.0, 3.0, 6.0],
            "score_ar_stderr": [4.0, 3.0, 4.0, 8.0],
        }
    )
    figures.prefix_gain(rows, tmp_path)
    ax = drawn[0].axes[0]
    bars = {}
    for container in ax.containers:
        _, _, (segments,) = container
        for (_, low), (_, high) in segments.get_segments():
            bars[(container.get_label(), round((low + high) / 2, 6))] = (high - low) / 2
    # A run's gain has error hypot(se_prefix, se_ar) = 5; two seeds' mean sqrt(25 + 25) / 2.
    assert bars == pytest.approx(
        {("R = 1", 3.0): np.sqrt(50) / 2, ("R = 1", -1.0): 5.0, ("R = 4", 5.0): 10.0}
    )
    legend = ax.get_legend().get_title().get_text()
    assert "sqrt(SE_prefix² + SE_AR²)" in legend and "correlation ignored" in legend


def test_pdf_figures_do_not_change_with_last_bit_noise(tmp_path):
    """The same figure from values that differ in their last bits (as a GP fit does between
    machines) is the same PDF, byte for byte: no creation date, and colour limits rounded."""
    from dualsweep.analysis.figures import colour_limits, save
    from matplotlib.figure import Figure

    values = np.linspace(21.123456789, 38.987654321, 60).reshape(6, 10)
    for name, noise in (("a", 0.0), ("b", 3e-12)):
        fig = Figure()
        ax = fig.subplots()
        vmin, vmax = colour_limits(values * (1 + noise))
        image = ax.pcolormesh(values * (1 + noise), vmin=vmin, vmax=vmax, rasterized=True)
        fig.colorbar(image, ax=ax)
        save(fig, tmp_path / name, "figure")
    assert colour_limits(values) == pytest.approx((21.12, 38.99))
    a, b = (Path(tmp_path, name, "figure.pdf").read_bytes() for name in "ab")
    assert a == b and b"CreationDate" not in a
