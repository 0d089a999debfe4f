"""Adaptive designs against the grid: how many models each needs to find the grid's best alpha.

    python -m analysis.adaptive [--results results] [--grid tiny]
        [--designs tiny-suggest tiny-optuna] [--metric final_held_out_ar_loss]

writes results/<grid>-adaptive/REPORT.md and its figures, from the sweeps' Parquet tables
(the numbers: `analysis.adaptive_designs`; the text and figures: `analysis.adaptive_report`).

The reference is the grid sweep's GP posterior of the best alpha at each of its R. A design's
runs are taken in the order they finished, the order in which its sampler (or its suggest
rounds) learnt of them. After each run, the GP is fitted on the runs so far (from 4 on) and
the best alpha's posterior median at each R is checked against the grid's 90% interval. A
design has settled on the grid's answer from the count after which every median stays
inside at every later count (the first count where all are inside is reported too; it can
be luck). Widths are compared on log-odds, the scale of the alpha grid, summed over R.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualsweep.paths import atomic_write
from dualsweep.results import ResultsError, sweep_dir
from dualsweep.schema import DEFAULT_METRIC, REPORT_FILE, RESULTS_ROOT

from .adaptive_designs import Design, ordered_runs, posterior, trajectory, widths
from .adaptive_report import figure_points, figure_widths, report, simulated_section
from .data import AnalysisError, pair
from .readme import update_readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.adaptive", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--results", default=RESULTS_ROOT)
    parser.add_argument("--grid", default="tiny")
    parser.add_argument("--designs", nargs="+", default=["tiny-suggest", "tiny-optuna"])
    parser.add_argument("--metric", default=DEFAULT_METRIC)
    parser.add_argument("--orders", type=int, default=5, help="random orders of the grid")
    parser.add_argument(
        "--simulated",
        default="simulated-designs",
        help="folder of `dualsweep simulate` under --results, quoted if present",
    )
    args = parser.parse_args(argv)
    out = sweep_dir(f"{args.grid}-adaptive", args.results)
    try:
        grid = ordered_runs(args.grid, args.results, args.metric)
        repetitions = sorted(grid["repetitions"].unique())
        reference = posterior(grid, args.metric, repetitions)
        orders = []
        for seed in range(args.orders):
            shuffled = grid.sample(frac=1.0, random_state=seed).reset_index(drop=True)
            print(f"[adaptive] {args.grid} in random order {seed}")
            trail = trajectory(shuffled, args.metric, reference)
            orders.append(Design(args.grid, shuffled, trail, reference, label="grid, random order"))
        designs = []
        for name in args.designs:
            runs = ordered_runs(name, args.results, args.metric)
            print(f"[adaptive] {name}: {len(runs)} runs")
            designs.append(
                Design(
                    name,
                    runs,
                    trajectory(runs, args.metric, reference),
                    posterior(runs, args.metric, repetitions),
                )
            )
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        print(f"analysis.adaptive: error: {e}", file=sys.stderr)
        return 2
    figures = figure_widths(
        designs, orders, float(widths(reference).sum()), len(grid), out / "figures"
    )
    figures += figure_points(designs, reference, out / "figures", pair(grid)[0].name)
    # The README beside the results folder (the repository's), quoting the report's table.
    readme = Path(args.results).resolve().parent / "README.md"
    link = (out / REPORT_FILE).resolve().relative_to(readme.parent).as_posix()
    simulated = simulated_section(Path(args.results) / args.simulated)
    text, block = report(
        args.grid, grid, reference, orders, designs, args.metric, figures, out / REPORT_FILE, link,
        simulated,
    )  # fmt: skip
    atomic_write(out / REPORT_FILE, lambda tmp: tmp.write_text(text))
    update_readme(readme, out.name, block)
    print(f"[adaptive] wrote {out / REPORT_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
