"""Section 7: the two rules of `mix_allocation`, per step against per sequence.

What belongs here: pooling the step rule's runs (the sweep's and its seeds sweep's) at the
allocation sweep's points and comparing the two rules there, point by point, against the
seeds' standard errors. It says which rule is better where, not whether a claim holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dualsweep.schema import is_loss_metric

from ..data import compared_columns
from .formatting import (
    Section,
    fmt_alpha,
    fmt_se,
    table_lines,
    verdict_lines,
)
from .noise import paired

POINT = ["alpha", "repetitions"]


def _point_label(alpha: float, r: float) -> str:
    return f"α {fmt_alpha(alpha)}, R={r:g}"


def allocation_step_side(
    main: pd.DataFrame, seeds: pd.DataFrame | None, points: pd.DataFrame
) -> pd.DataFrame:
    """The step rule's runs at `points`: the main sweep's and the seeds sweep's, pooled.

    Both tables hold only `mix_allocation: step` runs. A run in both, or a seed trained twice,
    counts once, the main sweep's copy first (as in `seed_spread`).
    """
    parts = [t.merge(points, on=POINT) for t in (main, seeds) if t is not None and len(t)]
    if not parts:
        return main.iloc[:0]
    both = pd.concat(parts, ignore_index=True).drop_duplicates("run_key")
    return both.drop_duplicates([*POINT, "seed"])


def _allocation_row(step: pd.DataFrame, sequence: pd.DataFrame, point, column: str) -> dict:
    alpha, r = point

    def at(table: pd.DataFrame) -> pd.Series:
        return table.loc[(table["alpha"] == alpha) & (table["repetitions"] == r), column]

    # paired() is mean, SD (ddof 1) / sqrt(n) and n of the values given: here, the seeds.
    (m1, se1, n1), (m2, se2, n2) = paired(at(step)), paired(at(sequence))
    diff, se = m1 - m2, float(np.hypot(se1, se2))
    compared = bool(np.isfinite(diff) and np.isfinite(se))
    beyond = compared and bool(abs(diff) >= 2 * se)
    step_lower = diff < 0
    better = ("step" if step_lower == is_loss_metric(column) else "sequence") if beyond else None
    return {
        "alpha": float(alpha),
        "repetitions": r,
        "step": m1,
        "step_stderr": se1,
        "step_seeds": n1,
        "sequence": m2,
        "sequence_stderr": se2,
        "sequence_seeds": n2,
        "difference": diff,
        "difference_stderr": se,
        "compared": compared,
        "beyond_noise": beyond,
        "better": better,
    }


def _allocation_metric(step: pd.DataFrame, sequence: pd.DataFrame, column: str) -> Section:
    points = sorted(
        sequence[POINT].drop_duplicates().itertuples(index=False), key=lambda p: (p[1], p[0])
    )
    rows = [_allocation_row(step, sequence, point, column) for point in points]
    lower = is_loss_metric(column)
    lines = [f"### `{column}` ({'lower' if lower else 'higher'} is better)", ""]

    def judged(row) -> str:
        if not row["compared"]:
            return "not compared"
        return f"yes: {row['better']} better" if row["beyond_noise"] else "no"

    lines += table_lines(
        ["α", "R", "step", "seeds step", "sequence", "seeds sequence", "step − sequence"]
        + ["beyond 2 SE"],
        [
            [fmt_alpha(row["alpha"]), f"{row['repetitions']:g}"]
            + [fmt_se(row["step"], row["step_stderr"], column), str(row["step_seeds"])]
            + [fmt_se(row["sequence"], row["sequence_stderr"], column)]
            + [str(row["sequence_seeds"])]
            + [fmt_se(row["difference"], row["difference_stderr"], column, signed=True)]
            + [judged(row)]
            for row in rows
        ],
    )
    compared = [row for row in rows if row["compared"]]
    where = {
        rule: [
            _point_label(row["alpha"], row["repetitions"]) for row in rows if row["better"] == rule
        ]
        for rule in ("step", "sequence")
    }
    if not compared:
        verdict = "not tested"
    elif not any(where.values()):
        verdict = "no difference beyond noise"
    else:
        verdict = "; ".join(f"{rule} better at {', '.join(w)}" for rule, w in where.items() if w)
    rule = (
        "no difference beyond noise if |step − sequence| < 2 SE at every compared point (SE = "
        "sqrt(SE_step² + SE_sequence²), each the seeds' SD (ddof 1) / sqrt(n)); otherwise the "
        f"rule with the {'lower' if lower else 'higher'} mean wherever the difference is at "
        "least 2 SE; not tested if no point has two seeds on each side."
    )
    lines += [
        f"Compared at {len(compared)} of {len(rows)} points; beyond 2 SE at "
        f"{sum(row['beyond_noise'] for row in compared)}.",
        "",
    ]
    numbers = {"rows": rows, "compared": len(compared), "verdict": verdict}
    return lines + verdict_lines(verdict, rule), numbers


def allocation(
    main: pd.DataFrame,
    seeds: pd.DataFrame | None,
    sequence: pd.DataFrame | None,
    used: str,
    name: str,
    allocation_path: str,
) -> Section:
    """Section 7: the step rule against the sequence rule at the allocation sweep's points.

    `main`, `seeds`: trial tables of the sweep and its seeds sweep, `mix_allocation: step` runs
    only; `sequence`: the allocation sweep's `mix_allocation: sequence` runs (None: no such
    sweep); `used`: the main sweep's `mix_allocation`.
    """
    lines = ["## 7. Mix allocation: per step vs per sequence", ""]
    if sequence is None:
        return lines + [f"No allocation sweep (`{allocation_path}`).", ""], {"available": False}
    if sequence.empty:
        lines += [f"The allocation sweep (`{allocation_path}`) has no finished sequence runs.", ""]
        return lines, {"available": False}
    points = sequence[POINT].drop_duplicates()
    step = allocation_step_side(main, seeds, points)
    lines += [
        "The same points trained with each rule of `mix_allocation`: `step` (every batch of a "
        "mix holds both objectives; the sweep's runs and its seeds sweep's) and `sequence` "
        f"(whole sequences AR or MD; `{allocation_path}`). Mean ± standard error over seeds "
        "(SD / sqrt(n)); the difference's error is sqrt(SE_step² + SE_sequence²).",
        "",
    ]
    numbers = {"available": True, "metrics": {}}
    for column in compared_columns(sequence):
        if column in step and sequence[column].notna().any():
            part, numbers["metrics"][column] = _allocation_metric(step, sequence, column)
            lines += part
    lines += [f"The `{name}` sweep's runs use `mix_allocation`: {used}.", ""]
    return lines, numbers | {"used": used}
