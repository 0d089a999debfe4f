"""REPORT.md of `dualsweep simulate`: each design's error against the truth, by run count.

What belongs here: turning the rows of `analysis.simulate` (simulations.parquet) into the
report's tables, its answer to "can an adaptive design find the grid's answer with half the
models", and its figure. Every number is computed here from the rows; the setup (noise,
studies, command line) is passed in as the command line recorded it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .claims.formatting import fmt_alpha, table_lines
from .figures import save
from .simulate import by_count, reaches, runs_needed

FIXED_DESIGNS = ("grid", "checkerboard")


def _count(n: int | None, runs: int) -> str:
    return str(n) if n is not None else f"not within {runs}"


def half_the_models(summary: pd.DataFrame, grid_runs: int, tolerance: float) -> dict:
    """Whether an adaptive design gets the grid's answer with at most half the grid's runs,
    read two ways: (accuracy) it stays at or below the full grid's worst-R median error from
    some count <= half on; (tolerance) it is within `tolerance` at every R from such a count.
    The answer is yes if some design meets both, partly if one, no if neither."""
    grid = summary[summary["design"] == "grid"].set_index("n")
    if grid_runs not in grid.index:
        return {"answer": "not tested", "reason": "the grid design was not run to its end"}
    target = float(grid.loc[grid_runs, "worst_error"])
    half = grid_runs / 2
    at_half = grid[grid.index <= half]
    reached, within = {}, {}
    for design in summary["design"].unique():
        if design in FIXED_DESIGNS:
            continue
        reached[design] = reaches(summary, design, target)
        within[design] = runs_needed(summary, design, tolerance)
    accurate = {d for d, n in reached.items() if n is not None and n <= half}
    tolerant = {d for d, n in within.items() if n is not None and n <= half}
    if not reached:
        answer = "not tested"
    elif accurate & tolerant:
        answer = "yes"
    else:
        answer = "partly" if accurate | tolerant else "no"
    return {
        "answer": answer,
        "target": target,
        "reached": reached,
        "within_tolerance": within,
        "grid_within_tolerance": runs_needed(summary, "grid", tolerance),
        "grid_at_half": float(at_half["worst_error"].iloc[-1]) if len(at_half) else float("nan"),
        "grid_at_half_n": int(at_half.index[-1]) if len(at_half) else None,
    }


def truth_section(
    truth: str, table: pd.DataFrame, tolerance: float, labels: Mapping[str, str], grid_runs: int
) -> tuple[list[str], dict]:
    """One truth's part of the report, and the numbers it states; designs in the order of
    `labels`, then any other."""
    summary = by_count(table, tolerance)
    order = {d: i for i, d in enumerate(labels)}
    summary = summary.sort_values(
        ["design", "n"], key=lambda c: c.map(order).fillna(len(order)) if c.name == "design" else c
    ).reset_index(drop=True)
    repetitions = sorted(table["repetitions"].unique())
    true = table.groupby("repetitions")["true_alpha"].first()
    lines = [f"## Truth `{truth}`", ""]
    lines += table_lines(
        ["R", *(f"{r:g}" for r in repetitions)],
        [["true best α", *(fmt_alpha(true[r]) for r in repetitions)]],
    )
    rows, stated = [], {}
    for design in summary["design"].unique():
        s = summary[summary["design"] == design]
        last = s.iloc[-1]
        used = int(table.loc[table["design"] == design, "design_runs"].median())
        needed = runs_needed(summary, design, tolerance)
        stated[design] = {"needed": needed, "worst_error": float(last["worst_error"])}
        stated[design] |= {"coverage": float(last["coverage"]), "runs": used}
        rows.append(
            [
                labels.get(design, design),
                str(used),
                _count(needed, used),
                f"{last['worst_error']:.2f}",
                f"{last['coverage']:.0%}",
                f"{last['summed_width']:.1f}",
            ]
        )
    lines += [
        f"Runs needed: the run count from which the median error over the studies is within "
        f"{tolerance:g} (log-odds) at every R, at every later count.",
        "",
    ]
    lines += table_lines(
        [
            "design",
            "runs (median)",
            f"runs needed (≤ {tolerance:g})",
            "worst-R median error, all runs",
            "coverage, all runs",
            "summed width, all runs",
        ],
        rows,
    )
    half = half_the_models(summary, grid_runs, tolerance)
    stated["half_the_models"] = half
    if half["answer"] != "not tested":

        def runs(found: dict) -> str:
            return ", ".join(f"{labels.get(d, d)} {_count(n, grid_runs)}" for d, n in found.items())

        lines += [
            f"**Half the models ({grid_runs / 2:g} runs): {half['answer']}.** Read two ways. "
            f"Accuracy: the full grid ({grid_runs} runs) ends with a worst-R median error of "
            f"{half['target']:.2f}; the run count from which each adaptive design stays at or "
            f"below it: {runs(half['reached'])}. Tolerance: within {tolerance:g} at every R "
            f"from {runs(half['within_tolerance'])}, against "
            f"{_count(half['grid_within_tolerance'], grid_runs)} for the grid in random order. "
            f"The grid itself at {half['grid_at_half_n']} runs: {half['grid_at_half']:.2f}; "
            "what more runs of any design can still remove is the difference between the two.",
            "",
        ]
    for design in summary["design"].unique():
        s = summary[summary["design"] == design]
        lines += [f"### {labels.get(design, design)}", ""]
        lines += table_lines(
            [
                "runs",
                *(f"R={r:g}" for r in repetitions),
                "worst R",
                "coverage",
                "width",
                "all R ≤ tol",
            ],
            [
                [str(row["n"])]
                + [f"{row.get(f'error_R{int(r)}', np.nan):.2f}" for r in repetitions]
                + [f"{row['worst_error']:.2f}", f"{row['coverage']:.0%}"]
                + [f"{row['summed_width']:.1f}", f"{row['within_tolerance']:.0%}"]
                for _, row in s.iterrows()
            ],
        )
    return lines, {"summary": summary, **stated}


def figure(
    summary: pd.DataFrame, labels: Mapping[str, str], directory: Path, name: str
) -> list[Path]:
    """Worst-R median error and coverage against the run count, one line per design."""
    fig = Figure(figsize=(9.0, 3.6))
    error_ax, coverage_ax = fig.subplots(1, 2)
    for design in summary["design"].unique():
        s = summary[summary["design"] == design]
        label = labels.get(design, design)
        error_ax.plot(s["n"], s["worst_error"], marker="o", ms=3, label=label)
        coverage_ax.plot(s["n"], s["coverage"], marker="o", ms=3, label=label)
    error_ax.set(xlabel="runs", ylabel="worst-R median |error| (log-odds)")
    coverage_ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    coverage_ax.set(xlabel="runs", ylabel="90% interval coverage", ylim=(0, 1.02))
    error_ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, directory, name)


def build(
    table: pd.DataFrame,
    *,
    setup: Sequence[str],
    tolerance: float,
    labels: Mapping[str, str],
    grid_runs: int,
    figures: Mapping[str, str] = {},  # noqa: B006 - read only
) -> tuple[str, dict]:
    """The report's text (setup lines first, as the command recorded them) and its numbers."""
    lines = [
        "# Designs against a known truth",
        "",
        "Written by `dualsweep simulate` from its rows (`simulations.parquet` beside this "
        "file); regenerate it rather than editing it.",
        "",
        *setup,
        "",
        "Rule: at each run count, the GP of `dualsweep fit` is fitted on the simulated runs so "
        "far and the posterior median of the best alpha read at every R; its error is "
        "|logit(median) − logit(true best α)|, alphas clipped to [1/1024, 1023/1024] as the "
        "surface clips them (0.9 against 0.99 is an error of 2.4). Coverage: the share of "
        "(study, R) whose 90% interval holds the true best α. Width: the 90% interval's, "
        "log-odds, summed over R (median over studies). Errors are medians over the studies.",
        "",
    ]
    numbers = {}
    for truth, rows in table.groupby("truth", sort=False):
        part, numbers[truth] = truth_section(truth, rows, tolerance, labels, grid_runs)
        lines += part
        if truth in figures:
            lines += [f"Figure: [{figures[truth]}]({figures[truth]})", ""]
    answers = {t: n["half_the_models"]["answer"] for t, n in numbers.items()}
    lines += ["## Can an adaptive design get the grid's answer with half the models?", ""]
    lines += [f"- `{t}`: **{a}**" for t, a in answers.items()]
    return "\n".join(lines).rstrip() + "\n", numbers
