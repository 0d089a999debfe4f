"""`dualsweep simulate`: designs measured against a known truth surface, no training.

What belongs here: turning the arguments into `analysis.simulate` tasks (the designs, built
from a sweep file's points and R, the Optuna design from `dualsweep.sweep.simulated_search`),
running them, and writing the table, the report and the figures to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

from dualsweep.cli.checks import sweep_of, writable_folder
from dualsweep.config import ConfigError
from dualsweep.paths import atomic_write
from dualsweep.schema import REPORT_FILE, SIMULATION_SETUP_FILE, SIMULATIONS_TABLE

LABELS = {
    "grid": "grid (random order)",
    "checkerboard": "checkerboard (random order)",
    "suggest": "suggest rounds",
    "optuna": "Optuna search",
}


def _designs(args: argparse.Namespace, sweep) -> tuple[list, list[str]]:
    """The designs asked for, and a line describing each."""
    from dualsweep.analysis.simulate import ROUND_SIZE, FixedOrder, SuggestRounds

    points = [(p.alpha, p.repetitions) for p in sweep.points]
    repetitions = sorted({r for _, r in points})
    alphas = sorted({a for a, _ in points})
    designs, lines = [], []
    for name in dict.fromkeys(args.designs):
        if name == "grid":
            designs.append(FixedOrder("grid", LABELS[name], points))
            lines.append(
                f"- grid: the {len(points)} points of {sweep.name}, in a random order per study"
            )
        elif name == "checkerboard":
            cells = [(a, r) for a, r in points if (alphas.index(a) + repetitions.index(r)) % 2 == 0]
            designs.append(FixedOrder("checkerboard", LABELS[name], cells))
            lines.append(
                f"- checkerboard: the {len(cells)} of those points whose alpha and R indices "
                "have an even sum, in a random order per study"
            )
        elif name == "suggest":
            designs.append(SuggestRounds(repetitions, len(points)))
            lines.append(
                f"- suggest rounds: alpha 0 and 1 at each R, then rounds of {ROUND_SIZE} points of "
                f"`dualsweep suggest` (same fit and defaults) up to {len(points)} runs"
            )
        elif name == "optuna":
            from dualsweep.config.sweep import SearchConfig
            from dualsweep.sweep.simulated_search import SimulatedSearch

            search = sweep.search or SearchConfig(
                repetitions=tuple(repetitions),
                trials_per_repetition=max(
                    1, (len(points) - 2 * len(repetitions)) // len(repetitions)
                ),
            )
            concurrency = sweep.max_concurrent_trials or 2
            designs.append(SimulatedSearch(sweep.base, search, concurrency))
            lines.append(
                f"- Optuna search: alpha 0 and 1 at each R, then the sweep's searcher "
                f"({search.sampler} sampler, seed {search.seed}) choosing "
                f"{search.trials_per_repetition} alphas per R, {concurrency} proposals asked "
                "before the results are told (trials running at once)"
            )
    return designs, lines


def cmd_simulate(args: argparse.Namespace) -> int:
    from dualsweep.analysis.data import AnalysisError
    from dualsweep.analysis.simulate import (
        Noise,
        Task,
        default_checkpoints,
        load_truth,
        simulate,
        true_best_alphas,
    )

    out = Path(args.out)
    writable_folder(out, "--out")
    try:  # fail before any work on a truth that cannot be imported or is not finite
        noise = Noise(args.noise, args.seed_effect)
        truths = [load_truth(spec) for spec in args.truth]
        sweep = sweep_of(args.sweep)
        repetitions = tuple(sorted({p.repetitions for p in sweep.points}))
        for truth in truths:
            true_best_alphas(truth, repetitions)
    except AnalysisError as e:
        raise ConfigError(str(e)) from None
    designs, design_lines = _designs(args, sweep)
    total = len(sweep.points)
    checkpoints = default_checkpoints(total, start=2 * len(repetitions))
    tasks = [
        Task(design, spec, noise, study, args.seed, checkpoints, repetitions, args.samples)
        for spec in args.truth
        for design in designs
        for study in range(args.studies)
    ]
    jobs = args.jobs or os.cpu_count() or 1
    print(
        f"[simulate] {len(tasks)} tasks ({len(args.truth)} truth(s) x {len(designs)} design(s) x "
        f"{args.studies} studies) in {min(jobs, len(tasks))} processes"
    )
    started = time.monotonic()
    tables = []
    for spec in args.truth:
        mine = [t for t in tasks if t.truth == spec]
        tables.append(simulate(mine, jobs=min(jobs, len(mine))).assign(truth=spec))
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    minutes = (time.monotonic() - started) / 60
    command = "dualsweep simulate " + shlex.join(
        [*("--truth", *args.truth), "--noise", f"{args.noise:g}", "--seed-effect", f"{args.seed_effect:g}",
         "--studies", str(args.studies), "--designs", *dict.fromkeys(args.designs), "--sweep", args.sweep,
         "--tolerance", f"{args.tolerance:g}", "--seed", str(args.seed), "--out", args.out]
    )  # fmt: skip
    setup = {
        "lines": [
            f"Command: `{command}` ({minutes:.1f} min in {min(jobs, len(tasks))} processes).",
            "",
            f"- design space: sweep `{sweep.name}`, {total} points at R = "
            f"{', '.join(str(r) for r in repetitions)}",
            f"- noise: SD {args.noise:g} per run, plus SD {args.seed_effect:g} shared by every "
            "alpha at one R of a study",
            f"- {args.studies} studies per truth and design (seed {args.seed}); a point drawn "
            "by two designs of one study has one value (common random numbers)",
            f"- run counts scored: {', '.join(str(n) for n in checkpoints)}; "
            f"{args.samples} posterior samples per fit",
            "- designs:",
            *(f"  {line}" for line in design_lines),
        ],
        "tolerance": args.tolerance,
        "grid_runs": total,
    }
    write_outputs(out, table, setup)
    print(f"[simulate] wrote {out / SIMULATIONS_TABLE}, {out / REPORT_FILE} ({minutes:.1f} min)")
    return 0


def write_outputs(out: Path, table, setup: dict) -> None:
    """The rows, the setup they were drawn under, and the report and figures built from them."""
    atomic_write(out / SIMULATIONS_TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(
        out / SIMULATION_SETUP_FILE, lambda tmp: tmp.write_text(json.dumps(setup, indent=1) + "\n")
    )
    write_report(out)


def write_report(out: Path) -> Path:
    """REPORT.md and figures of --out, from its simulations.parquet and setup.json alone."""
    import pandas as pd

    from dualsweep.analysis import simulation_report
    from dualsweep.analysis.simulate import by_count

    table = pd.read_parquet(out / SIMULATIONS_TABLE)
    setup = json.loads((out / SIMULATION_SETUP_FILE).read_text())
    figures = {}
    for i, (truth, rows) in enumerate(table.groupby("truth", sort=False)):
        name = f"designs_{i + 1}_{truth.rsplit(':', 1)[-1]}"
        simulation_report.figure(by_count(rows, setup["tolerance"]), LABELS, out / "figures", name)
        figures[truth] = f"figures/{name}.png"
    text, _ = simulation_report.build(
        table,
        setup=setup["lines"],
        tolerance=setup["tolerance"],
        labels=LABELS,
        grid_runs=setup["grid_runs"],
        figures=figures,
    )
    path = out / REPORT_FILE
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path
