"""The adaptive designs' report: REPORT.md's text, the README's block and the figures.

What belongs here: writing what `analysis.adaptive_designs` computed (runs needed, interval
widths, trajectories, checks) and the section on designs against a known truth, read from
`dualsweep simulate`'s rows. `analysis.adaptive` runs the command and writes the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dualsweep.schema import SIMULATION_SETUP_FILE, SIMULATIONS_TABLE, alpha_log_odds

from .adaptive_designs import Design, widths
from .claims.formatting import fmt_alpha, table_lines
from .figures import alpha_axis, r_axis, save


def figure_widths(
    designs: list[Design], orders: list[Design], grid_width: float, grid_n: int, directory: Path
):
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for i, order in enumerate(orders):
        t = order.trajectory
        ax.plot(t["n"], t["summed_width"], color="0.7", linewidth=0.8,
                label=f"grid, {len(orders)} random orders" if i == 0 else None)  # fmt: skip
    for design, marker in zip(designs, "os", strict=False):
        t = design.trajectory
        ax.plot(t["n"], t["summed_width"], marker=marker, markersize=3, label=design.label)
        met = t[t["all_inside"]]
        ax.plot(met["n"], met["summed_width"], linestyle="none", marker=marker, markersize=7,
                markerfacecolor="none", color=ax.lines[-1].get_color())  # fmt: skip
    ax.axhline(grid_width, color="black", linestyle="--", label=f"grid ({grid_n} runs)")
    ax.set_xlabel("runs trained (in the order they finished)")
    ax.set_ylabel("best-alpha 90% interval width,\nsummed over R (log-odds)")
    ax.set_title("Circled: every R's best-alpha median inside the grid's 90% interval", fontsize=9)
    ax.legend()
    return save(fig, directory, "interval_width_by_runs")


def figure_points(designs: list[Design], reference: pd.DataFrame, directory: Path, weighs: str):
    """Each design's trained points over the grid's best-alpha ridge; `weighs`: the objective
    alpha weighs (the first of the runs' pair)."""
    fig = Figure(figsize=(5.8 * len(designs), 4.4))
    axes = np.atleast_1d(fig.subplots(1, len(designs), sharey=True))
    x = np.log2(reference["repetitions"])
    for ax, design in zip(axes, designs, strict=True):
        ax.fill_between(x, alpha_log_odds(reference["alpha_q05"]), alpha_log_odds(reference["alpha_q95"]),
                        color="0.85", label="grid: best alpha, 90% interval")  # fmt: skip
        ax.plot(x, alpha_log_odds(reference["alpha_median"]), color="black", label="grid: median")
        runs = design.runs
        points = ax.scatter(np.log2(runs["repetitions"]), alpha_log_odds(runs["alpha"]),
                            c=np.arange(len(runs)), cmap="viridis", s=22, zorder=3)  # fmt: skip
        ax.plot(x, alpha_log_odds(design.final["alpha_median"]), color="tab:red", linestyle="--",
                label=f"{design.label}: median ({len(runs)} runs)")  # fmt: skip
        r_axis(ax, reference["repetitions"])
        alpha_axis(ax, weighs)
        ax.set_title(design.label)
        ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(points, ax=list(axes), label="order trained")
    return save(fig, directory, "design_points")


def _interval(row) -> str:
    return f"{fmt_alpha(row.alpha_median)} [{fmt_alpha(row.alpha_q05)}, {fmt_alpha(row.alpha_q95)}]"


def _train_minutes(runs: pd.DataFrame) -> float:
    """The runs' `train()` time summed (a design's rounds ran with pauses between them, so
    its elapsed time says little)."""
    return float(runs["wall_time_s"].sum() / 60)


def report(
    grid_name: str,
    grid: pd.DataFrame,
    reference: pd.DataFrame,
    orders: list[Design],
    designs: list[Design],
    column: str,
    figures: list[Path],
    out: Path,
    link: str,
    simulated: list[str] = (),
) -> tuple[str, list[str]]:
    """REPORT.md's text, and the README's block (the models-needed table; `link` is the
    report's path from the README). `simulated`: the section on designs against a known
    truth (`simulated_section`), placed after the runs-needed summary and quoted in the
    README's block."""
    grid_width = float(widths(reference).sum())
    lines = [
        f"# Adaptive designs against the `{grid_name}` grid",
        "",
        "Written by `analysis/adaptive.py` (`make adaptive`) from the sweeps' Parquet tables; "
        "regenerate it rather than editing it.",
        "",
        f"Question: how many models does each adaptive design need before its GP posterior of the "
        f"best alpha (`{column}`) agrees with the {len(grid)}-run grid's, and how wide are its "
        "intervals then?",
        "",
        "Rule: a design's runs are taken in the order they finished. After each run the GP "
        "(the same fit as `dualsweep fit`) is refitted on the runs so far, and the posterior "
        "median of the best alpha at each R is checked against the grid's 90% interval. The "
        "design has settled on the grid's answer from the count after which every R stays "
        "inside at every later count; the first count with every R inside is shown too, but "
        "a design can pass through it by luck. Widths are 90% interval widths on log-odds, "
        "summed over R.",
        "",
        "Designs (same configuration as the grid: model, data, budget, evaluation):",
        "",
        "- **suggest rounds** (`tiny-suggest`): the pure objectives at each R, then rounds of "
        "`dualsweep suggest` (`make adaptive`: 6 rounds of `--budget 6`; the GP of this metric, "
        "points that most narrow the best-alpha intervals, space-filling while fewer than 3 "
        "alphas are trained), each round trained before the next is chosen "
        "(sweeps/tiny-suggest-rounds/).",
        "- **Optuna search** (`tiny-optuna`): the pure objectives at each R, then Optuna's "
        "GPSampler choosing up to 6 alphas per R (log-odds) to minimise the metric, with Ray "
        "Tune's concurrency (sweeps/tiny-optuna.yaml); an R whose sampler keeps proposing "
        "trained alphas stops early.",
        f"- **grid, random orders** (baseline): the grid's own {len(grid)} runs taken in "
        f"{len(orders)} random orders (seeds 0 to {len(orders) - 1}). The criterion is relative "
        "to the grid's final answer, so a part of the grid meets it too: this says how early.",
        "",
        "## Runs needed",
        "",
    ]

    def count(n: int | None, runs: int) -> str:
        return str(n) if n else f"not within {runs}"

    rows = []
    for d in designs:
        rows.append(
            [
                d.label,
                str(len(d.runs)),
                count(d.first_inside, len(d.runs)),
                count(d.needed, len(d.runs)),
                f"{d.width_at(d.needed):.2f}" if d.needed else "–",
                f"{float(widths(d.final).sum()):.2f}",
            ]
        )
    # Every order of the grid settles by its last run: its posterior is then the reference.
    settled = [d.needed for d in orders]
    first = [d.first_inside for d in orders]
    rows.append(
        [
            f"grid, random orders ({len(orders)})",
            str(len(grid)),
            f"median {np.median(first):g} (range {min(first)}-{max(first)})",
            f"median {np.median(settled):g} (range {min(settled)}-{max(settled)})",
            f"median {np.median([d.width_at(n) for d, n in zip(orders, settled, strict=True)]):.2f}",
            f"{grid_width:.2f}",
        ]
    )
    table = table_lines(
        [
            "design",
            "runs trained",
            "first inside at every R",
            "inside at every R from",
            "summed width then",
            "summed width, all runs",
        ],  # fmt: skip
        rows,
    )
    summary = []
    for d in designs:
        final_width = float(widths(d.final).sum())
        widths_text = (
            f"Summed width with all its {len(d.runs)} runs: {final_width:.2f}, against the "
            f"grid's {grid_width:.2f} ({final_width / grid_width:.2f}x)."
        )
        if d.needed is None:
            out_r = [
                f"{ref.repetitions:g}"
                for ref, row in zip(reference.itertuples(), d.final.itertuples(), strict=True)
                if not ref.alpha_q05 <= row.alpha_median <= ref.alpha_q95
            ]
            summary.append(
                f"- {d.label}: **does not settle on the grid's answer** within its {len(d.runs)} "
                f"runs (with all of them, the median is outside the grid's interval at R = "
                f"{', '.join(out_r)}"
                + (
                    f"; every R was inside at {d.first_inside} runs, not later"
                    if d.first_inside
                    else ""
                )
                + f"). {widths_text}"
            )
            continue
        saved = len(grid) - d.needed
        verb = (
            f"**settles on the grid's answer at {d.needed} runs**, {saved} fewer than the grid's {len(grid)}"
            if saved > 0
            else f"**settles on the grid's answer at {d.needed} runs: no saving** against the grid's {len(grid)}"
        )
        by_order = (
            "by that measure it saves nothing"
            if d.needed >= np.median(settled)
            else f"{np.median(settled) - d.needed:g} fewer"
        )
        summary.append(
            f"- {d.label}: {verb}; the grid's own runs in random orders settle at a median of "
            f"{np.median(settled):g} ({by_order}). " + widths_text
        )
    lines += table + summary
    if simulated:
        lines += ["", *simulated]
    wide = reference[widths(reference) > 2.0]  # 2 in log-odds: 0.5 to 0.88, 0.9 to 0.985
    if len(wide):
        lines += [
            "",
            f"Caveat: the grid's interval is wide (over 2 in log-odds) at R = "
            f"{', '.join(f'{r:g}' for r in wide['repetitions'])}; lying inside it there is "
            "easy. The check is strict only where the grid pins the best alpha down.",
        ]
    lines += ["", "## Best alpha per R with all runs", ""]
    header = ["R", f"grid ({len(grid)} runs): median [90%]"]
    header += [f"{d.label} ({len(d.runs)} runs)" for d in designs]
    per_r = []
    for i, ref in enumerate(reference.itertuples()):
        cells = [f"{ref.repetitions:g}", _interval(ref)]
        for d in designs:
            row = d.final.iloc[i]
            inside = ref.alpha_q05 <= row.alpha_median <= ref.alpha_q95
            overlap = row.alpha_q05 <= ref.alpha_q95 and ref.alpha_q05 <= row.alpha_q95
            note = (
                "" if inside else " (median outside" + (", intervals overlap)" if overlap else ")")
            )
            cells.append(_interval(row) + note)
        per_r.append(cells)
    lines += table_lines(header, per_r)
    width_rows = []
    for i, ref in enumerate(reference.itertuples()):
        cells = [f"{ref.repetitions:g}", f"{widths(reference)[i]:.2f}"]
        cells += [f"{widths(d.final)[i]:.2f}" for d in designs]
        width_rows.append(cells)
    lines += ["90% interval widths (log-odds):", ""]
    lines += table_lines(["R", "grid", *[d.label for d in designs]], width_rows)

    lines += ["## Trajectories", ""]
    for d in designs:
        t = d.trajectory
        lines += [f"### {d.label}", ""]
        lines += table_lines(
            ["runs", "R inside", "summed width"],
            [
                [str(r.n), f"{r.inside}/{len(reference)}", f"{r.summed_width:.2f}"]
                for r in t.itertuples()
            ],
        )
    lines += ["## Checks", ""]
    for d in designs:
        shared = d.runs.merge(grid[["run_key", column]], on="run_key", suffixes=("", "_grid"))
        if len(shared):
            gap = float((shared[column] - shared[f"{column}_grid"]).abs().max())
            lines.append(
                f"- {d.label}: {len(shared)} of its runs have a grid run's configuration (run key: "
                f"the anchors, and any grid alpha chosen again); largest `{column}` difference "
                f"between the two trainings: {gap:.3g}."
            )
    compute = ", ".join(f"{d.label} {_train_minutes(d.runs):.1f} min" for d in designs)
    lines += [
        f"- Training compute (the runs' `train()` time summed, one core each): grid "
        f"{_train_minutes(grid):.1f} min, {compute}.",
        "",
        "## Figures",
        "",
    ]
    lines += [f"- `{p.relative_to(out.parent).as_posix()}`" for p in figures if p.suffix == ".png"]
    block = [
        f"Written by `make adaptive` from the committed tables (rule, per-R intervals and "
        f"trajectories in [{out.parent.name}/{out.name}]({link})):",
        "",
        *table,
        *summary,
        *(["", *simulated] if simulated else []),
    ]
    return "\n".join(lines) + "\n", block


def simulated_section(folder: Path) -> list[str]:
    """The designs against a known truth (`dualsweep simulate`, `make simulate`): runs needed
    within the tolerance at every R, and the half-the-models answer, per truth surface; read
    from the simulator's rows. Empty where the folder holds none."""
    from .simulate import by_count, runs_needed
    from .simulation_report import half_the_models

    table_path, setup_path = folder / SIMULATIONS_TABLE, folder / SIMULATION_SETUP_FILE
    if not (table_path.is_file() and setup_path.is_file()):
        return []
    rows, setup = pd.read_parquet(table_path), json.loads(setup_path.read_text())
    tolerance, grid_runs = setup["tolerance"], setup["grid_runs"]
    lines = [
        "## Against a known truth",
        "",
        f"The agreement rule above can only compare a design with the grid's own noisy "
        f"posterior. `results/{folder.name}/REPORT.md` (`make simulate`) runs "
        f"the same designs on simulated studies of known truth surfaces, with the GP of "
        f"`dualsweep fit`, and scores each against the true best alpha. Runs needed: the run "
        f"count from which the median error over the studies is within {tolerance:g} "
        f"(log-odds) at every R. Half the models: yes if an adaptive design, with at most "
        f"{grid_runs / 2:g} runs, both stays as accurate as the full {grid_runs}-run grid (its "
        "worst-R median error) and is within the tolerance; partly if one of the two.",
        "",
    ]
    table_rows = []
    for truth, part in rows.groupby("truth", sort=False):
        summary = by_count(part, tolerance)
        half = half_the_models(summary, grid_runs, tolerance)
        for design in summary["design"].unique():
            needed = runs_needed(summary, design, tolerance)
            last = summary[summary["design"] == design].iloc[-1]
            reached = half.get("reached", {}).get(design)
            table_rows.append(
                [
                    f"`{truth}`",
                    design,
                    str(needed) if needed is not None else f"not within {int(last['n'])}",
                    f"{last['worst_error']:.2f} at {int(last['n'])}",
                    "–"
                    if design in ("grid", "checkerboard")
                    else (str(reached) if reached else "never"),
                ]
            )
        table_rows.append([f"`{truth}`", "**half the models**", f"**{half['answer']}**", "", ""])
    lines += table_lines(
        [
            "truth",
            "design",
            "runs needed",
            "worst-R median error, all runs",
            "as good as the full grid from",
        ],
        table_rows,
    )
    return lines
