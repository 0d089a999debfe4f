"""The commands on a sweep's results: `fit` (the GP surface of one metric and the best alpha
per R), `suggest` (the next points to train, written as a sweep file) and `plots` (every
figure, table and the report).

What belongs here: loading a sweep's tables, fitting `analysis.surface`, printing the fit and
the best-alpha posterior, writing the suggested sweep; the analysis package (scikit-learn)
is imported inside the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from dualsweep.cli.checks import sweep_name
from dualsweep.config import ConfigError, Point, load_sweep, run_key, sweep_yaml
from dualsweep.paths import atomic_write


def cmd_fit(args: argparse.Namespace) -> int:
    from dualsweep.analysis.data import AnalysisError, metric, trial_table
    from dualsweep.analysis.surface import best_alpha, fit_surface
    from dualsweep.analysis.tables import format_best_alpha
    from dualsweep.results import ResultsError, load

    try:
        table = trial_table(load(sweep_name(args.sweep, args.results), args.results))
        chosen = metric(table, args.metric)
        fit = fit_surface(table, chosen, noise=args.noise)
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        raise ConfigError(str(e)) from None
    print(
        f"{chosen.column} over {len(fit.y)} runs: R^2 {fit.r2:.4f}, leave-one-out RMSE {fit.loo_rmse:.4g}, "
        f"noise {fit.noise}\nkernel {fit.kernel}\n"
    )
    print(format_best_alpha(best_alpha(fit, sorted(table["repetitions"].unique())), chosen.column))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from dualsweep.analysis.data import AnalysisError, metric, trial_table
    from dualsweep.analysis.suggest import suggest
    from dualsweep.analysis.surface import best_alpha, fit_surface
    from dualsweep.analysis.tables import format_best_alpha
    from dualsweep.cli.checks import sweep_of, writable_folder
    from dualsweep.results import ResultsError, load, sweep_dir

    sweep = sweep_of(args.sweep_file)
    out = Path(args.out)
    writable_folder(out.parent, "--out")
    if out.exists() and not args.force:
        raise ConfigError(f"--out: {out} exists; give a new file name, or --force to replace it")
    column = args.metric or (sweep.search.metric if sweep.search else "final_held_out_ar_loss")
    tables = sweep_dir(sweep.name, args.results)
    try:
        results = load(sweep.name, args.results)
        table = trial_table(results, current_only=False)
        keys = {run_key(c) for c in sweep.trials()}
        missing = keys - set(table["run_key"])
        if missing:
            raise AnalysisError(
                f"{args.sweep_file}: {len(missing)} of its {len(keys)} trials have no finished row "
                f"in {tables}/runs.parquet; run `dualsweep sweep {args.sweep_file}` first"
            )
        if sweep.search:  # and the alphas its search trained
            runs = results.runs
            keys |= set(runs.loc[runs["in_sweep"].fillna(False).astype(bool), "run_key"])
        table = table[table["run_key"].isin(keys)].reset_index(drop=True)
        chosen = metric(table, column)
        fit = fit_surface(table, chosen, noise=args.noise)
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        raise ConfigError(str(e)) from None
    repetitions = sorted(int(r) for r in table["repetitions"].unique())
    print(
        f"{chosen.column} over {len(table)} finished runs of {sweep.name}: R^2 {fit.r2:.4f}, "
        f"leave-one-out RMSE {fit.loo_rmse:.4g}\n"
    )
    print(format_best_alpha(best_alpha(fit, repetitions, seed=args.seed), chosen.column))
    trained = set(zip(table["alpha"].astype(float), table["repetitions"].astype(int), strict=True))
    picks = suggest(fit, repetitions, args.budget, trained=trained, seed=args.seed)
    listed = set(sweep.points)
    new = {}
    for i, pick in enumerate(picks, 1):
        point = Point(alpha=float(f"{pick.alpha:.6g}"), repetitions=pick.repetitions)
        if point in listed or point in new:  # (suggest excludes trained points: a safeguard)
            print(
                f"note: suggestion {i} (alpha={point.alpha:g}, R={point.repetitions}) is listed already"
            )
            continue
        new[point] = f"suggested {i}/{len(picks)}: " + (
            "space-filling (fewer than 3 distinct alphas trained: the fit cannot yet say how "
            "the metric varies with alpha)"
            if pick.space_filling
            else f"summed 90% width {pick.width_before:.2f} -> {pick.expected_width:.2f} "
            "expected (log-odds)"
        )
    suggested = dataclasses.replace(sweep, points=sweep.points + tuple(new))
    header = (
        f"Written by `dualsweep suggest {args.sweep_file} --budget {args.budget}` from "
        f"{len(table)} finished runs in {tables} ({chosen.column}, GP noise {fit.noise}).\n"
        "The points marked `suggested` are where the GP posterior expects a run to narrow the\n"
        "best alpha's 90% intervals most. `dualsweep sweep` on this file trains them under the\n"
        "same sweep name, so they join the sweep's tables (its finished trials are kept)."
    )

    def write_checked(tmp: Path) -> None:
        tmp.write_text(sweep_yaml(suggested, header=header, notes=new))
        load_sweep(tmp)  # what plan and sweep will read

    atomic_write(out, write_checked)
    print(f"\nsuggested {len(new)} points (in order):")
    for point, note in new.items():
        print(f"  alpha={point.alpha:<10g} R={point.repetitions:<4} {note.split(': ', 1)[1]}")
    print(f"written: {out} ({len(suggested.points)} points)")
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    from dualsweep.analysis.data import AnalysisError
    from dualsweep.analysis.plots import make_all
    from dualsweep.results import ResultsError

    name = sweep_name(args.sweep, args.results)
    try:
        for path in make_all(name, args.results):
            print(f"  {path}")
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        raise ConfigError(str(e)) from None
    return 0
