"""results/<sweep>/REPORT.md: the paper's claims beside what the sweep measured.

What belongs here: the report's header (size, budget, timing, provenance) and links, putting
the sections of `analysis.claims` in order, and writing the file. `make plots` calls
`write_report` with the GP best-alpha summaries it already fitted, so the report costs no
refit. Every number comes from the Parquet tables of the sweep and of its optional companions
in the same results root: `<name>-seeds` (other seeds at some of the sweep's points, for the
noise thresholds, paired per R and unpaired, and the step side of the allocation comparison)
and `<name>-allocation` (`mix_allocation: sequence` runs at some points); none is typed in by
hand except the paper's own (`claims.PAPER_470M`) and the targets (`claims.EVAL_SHARE_TARGET`,
`claims.SCORE_STDERR_TARGET`). The README's block of verdicts is built in `analysis.readme`;
`readme_block` and `update_readme` stay importable from here, where `write_report` uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dualsweep.paths import atomic_write
from dualsweep.results import SweepResults, load, sweep_dir
from dualsweep.schema import REPORT_FILE, RESULTS_ROOT, RUNS_TABLE, ObjectiveColumns

from . import claims
from .data import AnalysisError, pair, trial_table
from .readme import readme_block, update_readme
from .verdicts import IN_WORDS, verdicts

SEEDS_SUFFIX = "-seeds"
ALLOCATION_SUFFIX = "-allocation"


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _range(runs: pd.DataFrame, column: str, unit: str) -> str:
    values = pd.to_numeric(runs[column], errors="coerce").dropna() if column in runs else []
    if not len(values):
        return "not recorded"
    low, mid, high = values.min(), values.median(), values.max()
    return f"median {mid:,.0f} {unit} (min {low:,.0f}, max {high:,.0f})"


def _distinct(runs: pd.DataFrame, column: str) -> str:
    """The column's value, or each value with its number of runs where they differ."""
    values = runs[column].dropna() if column in runs else pd.Series(dtype=object)
    values = values[values.astype(str) != ""]
    if values.empty:
        return "not recorded"
    counts = values.value_counts()

    def show(v) -> str:
        return f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)

    if len(counts) == 1:
        return show(counts.index[0])
    return ", ".join(f"{show(v)} ({n} runs)" for v, n in counts.items())


def sweep_wall_time(runs: pd.DataFrame, evals: pd.DataFrame) -> float:
    """Seconds from the first run's start to the last run's end, its scoring included.

    A run's end is its `finished_at` (the end of training and held-out evaluation) plus its
    multiple-choice `scoring_time_s` (done right after), as the rows record no later time.
    """
    if runs.empty:
        return np.nan

    def times(column: str) -> pd.Series:
        values = runs[column] if column in runs else pd.Series(pd.NaT, index=runs.index)
        return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")

    scoring = pd.Series(0.0, index=runs.index)
    if not evals.empty and "scoring_time_s" in evals:
        scoring = runs["run_key"].map(claims.scoring_time(evals)).fillna(0.0)
    ends = times("finished_at") + pd.to_timedelta(scoring, unit="s")
    return float((ends.max() - times("started_at").min()).total_seconds())


def header(
    name: str,
    runs: pd.DataFrame,
    table: pd.DataFrame,
    evals: pd.DataFrame | None = None,
    *,
    min_points: int = claims.MIN_VERDICT_POINTS,
) -> claims.Section:
    """Section 1: the sweep's size, budget, timing and provenance (its finished runs)."""
    done = runs[runs["run_key"].isin(table["run_key"])]
    wall = sweep_wall_time(done, evals if evals is not None else pd.DataFrame())
    allocation = _distinct(done, "mix_allocation")
    lines = [
        f"# Sweep `{name}`: the paper's claims against what it measured",
        "",
        "Written by `analysis/report.py` (`make plots`) from the sweep's Parquet tables; "
        "regenerate it rather than editing it.",
        "",
        f"- finished runs: {len(table)} (other rows in `runs.parquet`: {len(runs) - len(done)})",
        f"- distinct trained (α, R) points: {claims.point_count(table)} at "
        f"{table['repetitions'].nunique()} R; sections 2-5 decide a claim only from "
        f"{claims.minimum_rule(min_points)}",
        f"- model size (`n_parameters`): {_distinct(done, 'n_parameters')}",
        f"- training tokens per run: {_distinct(done, 'tokens')}",
        f"- sweep wall time: {_duration(wall)} (first `started_at` to the last run's "
        "`finished_at` plus its scoring time; each run's last attempt)",
        f"- wall time per run (`wall_time_s`, the `train()` call; multiple-choice scoring "
        f"comes after): {_range(done, 'wall_time_s', 's')}",
        f"- training throughput: {_range(done, 'tokens_per_s', 'tokens/s')}",
        f"- mix allocation: {allocation}",
        f"- code version: {_distinct(done, 'code_version')}",
        "",
    ]
    return lines, {"finished_runs": len(table), "sweep_wall_time_s": wall}


def too_few_note(table: pd.DataFrame, min_points: int) -> list[str]:
    """The warning at the top of a report whose sweep is too small to decide any claim."""
    n = claims.point_count(table)
    return [
        f"**Too few runs to decide: {n} distinct trained (α, R) points, below the minimum "
        f"of {min_points} (the rule and its reason above).** The verdicts of sections 2-5 "
        "say *not decided*; their tables, the GP fits and the figures show that the pipeline "
        "runs, not findings. Sections 7 and 10 keep their own rules (two seeds per compared "
        "point; measured cost).",
        "",
    ]


def links(files: Sequence[str]) -> claims.Section:
    """Section 11: relative links to the figures and tables beside the report."""
    lines = ["## 11. Figures and tables", ""]
    shown = [f for f in sorted(files) if f.endswith((".png", ".md"))]
    for f in shown:
        pdf = f.removesuffix(".png") + ".pdf"
        lines.append(
            f"- [{f}]({f})" + (f" ([pdf]({pdf}))" if f.endswith(".png") and pdf in files else "")
        )
    return lines + ([""] if shown else ["None written yet.", ""]), {"files": shown}


def build_report(
    name: str,
    results: SweepResults,
    best_alphas: Mapping[str, pd.DataFrame],
    *,
    seeds: SweepResults | None = None,
    allocation: SweepResults | None = None,
    files: Sequence[str] = (),
    min_points: int = claims.MIN_VERDICT_POINTS,
) -> tuple[str, dict]:
    """REPORT.md's text and the numbers it states, by section.

    `best_alphas`: metric column -> `analysis.surface.best_alpha` summary at the trained R.
    `seeds`, `allocation`: the companion seeds and allocation sweeps, if any. `files`: figure
    and table paths relative to the sweep's folder, for the links. `min_points`: the trained
    points below which no claim is decided (`claims.MIN_VERDICT_POINTS`; tests of the rules
    on a hand-built small sweep pass fewer).
    """
    table = trial_table(results)
    if table.empty:
        raise AnalysisError(f"sweep {name!r} has no finished runs yet")
    undecided = claims.too_few(table, min_points)
    objectives = pair(table)  # sections 2-5 and the verdicts name them
    seeds_table = trial_table(seeds) if seeds is not None else None
    spread = (
        claims.seed_spread(table, seeds_table)
        if seeds_table is not None and len(seeds_table)
        else None
    )
    limits = claims.noise_limits(spread)
    thresholds = claims.Thresholds(
        claims.paired_spread(table, seeds_table) if spread is not None else None, limits
    )
    sections = {
        "header": header(name, results.runs, table, results.evals, min_points=min_points),
        "overfitting": claims.overfitting(table, limits, undecided=undecided),
        "mix_beats_pure": claims.mix_beats_pure(
            table, limits, thresholds=thresholds, undecided=undecided
        ),
        "best_alpha_falls": claims.best_alpha_falls(
            best_alphas, table, thresholds, undecided=undecided
        ),
        "ar_vs_md_targets": claims.ar_vs_md_targets(
            best_alphas, table, thresholds, undecided=undecided
        ),
    }
    numbers = {key: stated for key, (_, stated) in sections.items()}
    seeds_path = f"results/{name}{SEEDS_SUFFIX}/{RUNS_TABLE}"
    done = results.runs[results.runs["run_key"].isin(table["run_key"])]
    sharing = {name: done}
    if seeds_table is not None and len(seeds_table):
        sharing[f"{name}{SEEDS_SUFFIX}"] = seeds.runs[
            seeds.runs["run_key"].isin(seeds_table["run_key"])
        ]
    sections["seed_noise"] = claims.seed_noise(
        spread,
        limits,
        _claimed(numbers, objectives[0]),
        seeds_path,
        thresholds,
        claims.common_random_numbers(sharing),
    )
    sections["allocation"] = claims.allocation(
        trial_table(_with_allocation(results, "step")),
        trial_table(_with_allocation(seeds, "step")) if seeds is not None else None,
        trial_table(_with_allocation(allocation, "sequence")) if allocation is not None else None,
        _distinct(done, "mix_allocation"),
        name,
        f"results/{name}{ALLOCATION_SUFFIX}/{RUNS_TABLE}",
    )
    sections["prefix_vs_ar"] = claims.prefix_vs_ar(table)
    sections["paper_numbers"] = claims.paper_numbers(table)
    sections["evaluation_cost"] = claims.evaluation_cost(done, results.evals, table)
    sections["links"] = links(files)
    numbers = {key: stated for key, (_, stated) in sections.items()}
    numbers["objectives"] = [o.name for o in objectives]
    numbers["decided"] = {
        "trained_points": claims.point_count(table),
        "min_points": min_points,
        "verdict": undecided or "enough runs",
    }
    lines = sections.pop("header")[0]
    lines += too_few_note(table, min_points) if undecided else []
    lines += glance(numbers)
    for part, _ in sections.values():
        lines += part
    return "\n".join(lines).rstrip() + "\n", numbers


def _with_allocation(results: SweepResults, value: str) -> SweepResults:
    """The results' runs trained with `mix_allocation` `value` (all where it is not recorded)."""
    runs = results.runs
    if "mix_allocation" in runs:
        runs = runs[runs["mix_allocation"] == value]
    return SweepResults(runs, results.curves, results.evals)


def glance(numbers: dict) -> list[str]:
    """The verdicts of sections 2-5, 7 and 10 in one list (`analysis.verdicts`), each
    pointing at its section."""
    lines = ["Verdicts (rules and numbers in the sections below):", ""]
    lines += [
        f"- {what}: **{stated['verdict']}** (section {n})"
        for n, what, _, stated in verdicts(numbers, IN_WORDS, ", ")
    ]
    return lines + [""]


def _claimed(numbers: dict, first: ObjectiveColumns) -> list[claims.Claimed]:
    """The differences sections 2-3 claim, for the seed-noise check of section 6: a run
    against itself (unpaired, pooled threshold; section 2 is about the `first` objective)
    or two alphas at one seed (paired)."""
    found = []
    overfit = numbers["overfitting"]
    if "gap" in overfit:
        high = overfit["highest_r"]
        gap = {high: overfit["gap"][high]}
        what = f"pure {first.name.upper()} final − best loss at the highest R"
        found.append((what, f"final_{first.held_out}", gap, False))
    for column, stated in numbers["mix_beats_pure"].items():
        margins = {row["repetitions"]: row["margin"] for row in stated["rows"] if row["compared"]}
        found.append(("best-mix margin over the better pure objective", column, margins, True))
    return found


def load_companion(
    name: str, suffix: str, results_root: str | Path = RESULTS_ROOT
) -> SweepResults | None:
    """The companion sweep `<name><suffix>`, or None where it has no runs table."""
    companion = f"{name}{suffix}"
    return (
        load(companion, results_root)
        if (sweep_dir(companion, results_root) / RUNS_TABLE).is_file()
        else None
    )


def load_seeds(name: str, results_root: str | Path = RESULTS_ROOT) -> SweepResults | None:
    """The companion sweep `<name>-seeds`, or None where it has no runs table."""
    return load_companion(name, SEEDS_SUFFIX, results_root)


def write_report(
    name: str,
    results_root: str | Path = RESULTS_ROOT,
    *,
    best_alphas: Mapping[str, pd.DataFrame],
    results: SweepResults | None = None,
    readme: Path | None = None,
    min_points: int = claims.MIN_VERDICT_POINTS,
) -> Path:
    """Write results/<name>/REPORT.md (atomically) and return its path; with `readme`, also
    refresh that README's generated block of this sweep's verdicts (see `update_readme`).
    `min_points`: as in `build_report`."""
    directory = sweep_dir(name, results_root)
    files = [
        p.relative_to(directory).as_posix()
        for folder in ("figures", "tables")
        for p in sorted((directory / folder).glob("*"))
        if p.is_file()
    ]
    text, numbers = build_report(
        name,
        results if results is not None else load(name, results_root),
        best_alphas,
        seeds=load_seeds(name, results_root),
        allocation=load_companion(name, ALLOCATION_SUFFIX, results_root),
        files=files,
        min_points=min_points,
    )
    path = directory / REPORT_FILE
    atomic_write(path, lambda tmp: tmp.write_text(text))
    if readme is not None:
        update_readme(readme, name, readme_block(name, numbers))
    return path
