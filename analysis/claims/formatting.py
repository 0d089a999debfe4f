"""What every claim section shares: the shape of a section and the Markdown helpers that
print numbers, tables and verdicts (the metric columns they compare come from the runs'
columns: `analysis.data.compared_columns`).

What belongs here: formatting, the verdict rule common to all sections (`decide`) and the
minimum of data below which no claim is decided (`MIN_VERDICT_POINTS`, `too_few`); no
statistics and no claim. Every other module of `analysis.claims` builds on this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..tables import alpha_label

Section = tuple[list[str], dict]  # a section's Markdown lines and the numbers it states

# The claims (sections 2-5) are read off a surface over two inputs, log2 R and logit alpha.
# Below 10 distinct points per input, the n = 10 d rule of thumb for Gaussian-process designs
# (Loeppky, Sacks & Welch 2009, Technometrics 51:366), the fit interpolates its few points
# (in-sample R^2 1.000 from 4) and a verdict would report the design, not the models.
MIN_VERDICT_POINTS = 20
CLAIM_VERDICTS = ("reproduced", "partly", "not reproduced")
MINIMUM_REASON = (
    "10 per input of the surface, log2 R and logit α: the n = 10 d rule of thumb for "
    "Gaussian-process designs, Loeppky, Sacks & Welch 2009"
)


def fmt(value: float, column: str, *, signed: bool = False) -> str:
    """Losses with 3 decimals, scores with 1; a dash for a missing value."""
    if value is None or not np.isfinite(value):
        return "–"
    digits = 1 if column.startswith("score_") else 3
    return f"{value:{'+' if signed else ''}.{digits}f}"


def fmt_se(value: float, stderr: float, column: str, *, signed: bool = False) -> str:
    text = fmt(value, column, signed=signed)
    return text if text == "–" or not np.isfinite(stderr) else f"{text} ± {fmt(stderr, column)}"


def fmt_alpha(value: float) -> str:
    return "–" if not np.isfinite(value) else alpha_label(float(value))


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows] + [""]


def verdict_lines(verdict: str, rule: str) -> list[str]:
    return [f"**Verdict: {verdict}.** Rule: {rule}", ""]


def decide(held: int, needed: int) -> str:
    """Every condition held: reproduced; some: partly; none: not reproduced; none to check: not tested."""
    if not needed:
        return "not tested"
    return "reproduced" if held == needed else "partly" if held else "not reproduced"


def point_count(table: pd.DataFrame) -> int:
    """Distinct (alpha, R) points with a finished run: seeds of one point count once."""
    return len(table[["alpha", "repetitions"]].drop_duplicates())


def minimum_rule(minimum: int = MIN_VERDICT_POINTS) -> str:
    """The minimum, as the report states it (with its reason where it is the default)."""
    reason = f" ({MINIMUM_REASON})" if minimum == MIN_VERDICT_POINTS else ""
    return (
        f"at least {minimum} distinct trained (α, R) points, seeds of one point counting "
        f"once{reason}"
    )


def too_few(table: pd.DataFrame, minimum: int = MIN_VERDICT_POINTS) -> str | None:
    """The verdict every claim of sections 2-5 gets when the sweep has fewer than `minimum`
    trained points (`MIN_VERDICT_POINTS`), or None where it has enough to decide."""
    n = point_count(table)
    return None if n >= minimum else f"too few runs ({n} < {minimum}): not decided"


def gated(verdict: str, undecided: str | None) -> str:
    """The rule's verdict, or `undecided` (from `too_few`) in place of a claim's verdict.

    "not tested" (the design lacks what the rule compares) stays: it says more.
    """
    return undecided if undecided is not None and verdict in CLAIM_VERDICTS else verdict
