"""The commands on a sweep's results: `fit` (the GP surface of one metric and the best alpha
per R), `suggest` (the next points to train, written as a sweep file) and `plots` (every
figure, table and the report).

What belongs here: parsing the arguments, one call of the analysis (`analysis.surface` for
fit, `analysis.suggest.suggest_round` for suggest), printing and writing what it returns; the
analysis package (scikit-learn) is imported inside the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dualsweep.cli.checks import sweep_name
from dualsweep.config import ConfigError, load_sweep, sweep_yaml
from dualsweep.paths import atomic_write
from dualsweep.schema import DEFAULT_METRIC


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
    from dualsweep.analysis.data import AnalysisError
    from dualsweep.analysis.suggest import suggest_round, sweep_table
    from dualsweep.cli.checks import sweep_of, writable_folder
    from dualsweep.results import ResultsError, load, sweep_dir

    sweep = sweep_of(args.sweep_file)
    out = Path(args.out)
    writable_folder(out.parent, "--out")
    if out.exists() and not args.force:
        raise ConfigError(f"--out: {out} exists; give a new file name, or --force to replace it")
    column = args.metric or (sweep.search.metric if sweep.search else DEFAULT_METRIC)
    tables = sweep_dir(sweep.name, args.results)
    try:
        table = sweep_table(
            sweep, load(sweep.name, args.results), sweep_file=args.sweep_file, source=str(tables)
        )
        chosen = suggest_round(
            sweep,
            table,
            args.budget,
            column=column,
            noise=args.noise,
            seed=args.seed,
            command=f"dualsweep suggest {args.sweep_file} --budget {args.budget}",
            source=str(tables),
        )
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        raise ConfigError(str(e)) from None
    print(chosen.report)

    def write_checked(tmp: Path) -> None:
        tmp.write_text(sweep_yaml(chosen.sweep, header=chosen.header, notes=chosen.notes))
        load_sweep(tmp)  # what plan and sweep will read

    atomic_write(out, write_checked)
    print(f"\nsuggested {len(chosen.notes)} points (in order):")
    for point, note in chosen.notes.items():
        print(f"  alpha={point.alpha:<10g} R={point.repetitions:<4} {note.split(': ', 1)[1]}")
    print(f"written: {out} ({len(chosen.sweep.points)} points)")
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
