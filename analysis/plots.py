"""`make plots`: every figure and table of a sweep, from its Parquet tables alone.

    python -m analysis.plots tiny [--results results]

writes results/<sweep>/figures/*.{png,pdf}, results/<sweep>/tables/*.{md,tex} and
results/<sweep>/REPORT.md (the paper's claims against the sweep; see analysis/report.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dualsweep.results import ResultsError, load, sweep_dir
from dualsweep.schema import (
    REPORT_FILE,
    RESULTS_ROOT,
    held_out_title,
    is_loss_metric,
    is_score_metric,
)

from .data import AnalysisError, metric, pair, target_pairs, trial_table
from .surface import MIN_POINTS, best_alpha, fit_surface, repetition_grid
from .tables import format_best_alpha, format_main_table, main_table


def targets(table: pd.DataFrame) -> dict[str, str]:
    """The metrics analysed: each objective's final held-out loss always, and the score of each
    scoring mode evaluated."""
    chosen = {
        held_out_title(c): c
        for c in table.columns
        if c.startswith("final_held_out_") and is_loss_metric(c)
    }
    for column in table.columns:
        if is_score_metric(column) and ":" not in column and not column.endswith("_per_token"):
            mode = column.removeprefix("score_")
            chosen[f"{mode.upper() if mode != 'prefix' else 'prefix-LM'} score"] = column
    return chosen


def make_all(
    name: str, results_root: str | Path = RESULTS_ROOT, log: Callable[[str], None] = print
) -> list[Path]:
    from . import claims, figures, report

    started = time.perf_counter()
    results = load(name, results_root)
    table = trial_table(results)
    if table.empty:
        raise AnalysisError(f"sweep {name!r} has no finished runs yet")
    points = table[["repetitions", "alpha"]].drop_duplicates()
    if len(points) < MIN_POINTS:  # checked before writing anything: no partial output
        raise AnalysisError(
            f"sweep {name!r} has {len(points)} finished (alpha, R) points; a surface needs at "
            f"least {MIN_POINTS}"
        )
    directory = sweep_dir(name, results_root)
    figure_dir, table_dir = directory / "figures", directory / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    # Below the minimum every figure and table is still written (they show the pipeline
    # runs), but the report decides no claim, and the figures and tables say so.
    undecided = claims.too_few(table)
    if undecided:
        log(f"  warning: {undecided} (distinct trained (alpha, R) points); see {REPORT_FILE}")
    note = f"{undecided.removesuffix(': not decided')}: not a finding" if undecided else ""

    chosen = targets(table)
    metrics = [metric(table, column) for column in chosen.values()]
    main = main_table(table, metrics)
    for suffix, latex in ((".md", False), (".tex", True)):
        path = table_dir / f"main{suffix}"
        path.write_text(format_main_table(main, latex=latex))
        written.append(path)

    grid = repetition_grid(table)
    trained_r = sorted(table["repetitions"].unique())
    fits, samples, at_trained_r, best_md, best_tex = {}, {}, {}, [], []
    for label, column in chosen.items():
        fit = fit_surface(table, metric(table, column))
        summary, sampled = best_alpha(fit, grid, return_samples=True)
        fits[label], samples[label] = fit, (summary, sampled)
        written += figures.surface(fit, summary, table, figure_dir, note=note)
        at_trained = at_trained_r[column] = best_alpha(fit, trained_r)
        head = f"{column}: GP R^2 {fit.r2:.3f}, leave-one-out RMSE {fit.loo_rmse:.4g}, kernel {fit.kernel}"
        best_md.append(f"{head}\n\n" + format_best_alpha(at_trained, column))
        best_tex.append(f"% {head}\n" + format_best_alpha(at_trained, column, latex=True))
        log(f"  {column}: R^2 {fit.r2:.3f}, LOO RMSE {fit.loo_rmse:.4g}")
    # The paper's targets, AR and MD, are the runs' pair: scores first, else losses.
    objectives = pair(table)
    by_column = {column: label for label, column in chosen.items()}
    labelled = [[by_column.get(c) for c in p] for p in reversed(target_pairs(*objectives))]
    names = [o.name.upper() for o in objectives]
    comparison = _targets_compared(samples, chosen, labelled, names)
    if comparison is not None:
        best_md.append(comparison)
    if note:
        best_md.insert(0, f"**{note}** (see {REPORT_FILE})\n")
        best_tex.insert(0, f"% {note} (see {REPORT_FILE})")
    (table_dir / "best_alpha.md").write_text("\n\n".join(best_md))
    (table_dir / "best_alpha.tex").write_text("\n\n".join(best_tex))
    written += [table_dir / "best_alpha.md", table_dir / "best_alpha.tex"]

    scores, losses = labelled
    density = {k: samples[k] for k in scores if k in samples} or {
        k: samples[k] for k in losses if k in samples
    }
    written += figures.best_alpha_density(density, table, figure_dir, note=note)
    if not results.curves.empty:
        written += figures.overfitting(results.curves, table, figure_dir)
    if {"score_prefix", "score_ar"} <= set(table.columns):
        written += figures.prefix_gain(table, figure_dir)
    # Last: the report links the figures and tables written above.
    # The repository's README quotes the verdicts in a generated block, when it has one.
    readme = Path(results_root).resolve().parent / "README.md"
    written.append(
        report.write_report(
            name, results_root, best_alphas=at_trained_r, results=results, readme=readme
        )
    )
    log(f"{name}: {len(written)} files in {directory} ({time.perf_counter() - started:.1f}s)")
    return written


def _targets_compared(
    samples: dict, chosen: dict, pairs: list[list[str | None]], names: list[str]
) -> str | None:
    """The paper's comparison: best alpha when targeting AR vs MD performance, per R; AR and
    MD are the runs' pair (`names`), `pairs` the labels of their targets, first objective's
    first (scores, then losses: the first pair with both fitted is shown)."""
    x, y = names
    for ar, md in pairs:
        if ar in samples and md in samples:
            a, m = samples[ar][0], samples[md][0]
            lines = [
                f"**best alpha targeting {chosen[ar]} vs {chosen[md]} (posterior medians)**",
                "",
                f"| R | {x}-targeted | {y}-targeted |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r:g} | {p:.3g} | {q:.3g} |"
                for r, p, q in zip(
                    a["repetitions"], a["alpha_median"], m["alpha_median"], strict=True
                )
            ]
            return "\n".join(lines) + "\n"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.plots", description=__doc__.splitlines()[0]
    )
    parser.add_argument("sweep", help="sweep name, e.g. tiny or smoke")
    parser.add_argument(
        "--results", default=RESULTS_ROOT, help="root of the results tables (default: results)"
    )
    args = parser.parse_args(argv)
    try:
        for path in make_all(args.sweep, args.results):
            print(f"  {path}")
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        print(f"plots: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
