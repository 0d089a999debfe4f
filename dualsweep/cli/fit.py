"""The `fit` command: a sweep's GP surface for one metric, and the best alpha per R.

What belongs here: loading a sweep's tables, fitting `analysis.surface` and printing the fit
and the best-alpha posterior; the analysis package (scikit-learn) is imported inside it.
"""

from __future__ import annotations

import argparse

from dualsweep.config import ConfigError


def cmd_fit(args: argparse.Namespace) -> int:
    from analysis.data import AnalysisError, metric, trial_table
    from analysis.surface import best_alpha, fit_surface
    from analysis.tables import format_best_alpha
    from dualsweep.results import ResultsError, load

    try:
        table = trial_table(load(args.sweep, args.results))
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
