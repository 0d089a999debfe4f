"""What every claim section shares: the metric columns they compare, the shape of a
section, and the Markdown helpers that print numbers, tables and verdicts.

What belongs here: formatting and the verdict rule common to all sections (`decide`); no
statistics and no claim. Every other module of `analysis.claims` builds on this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.tables import alpha_label

LOSSES = ("final_held_out_ar_loss", "final_held_out_md_elbo")
SCORES = ("score_ar", "score_md", "score_prefix")

Section = tuple[list[str], dict]  # a section's Markdown lines and the numbers it states


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
