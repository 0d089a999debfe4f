"""Tables: the main comparison (best dual model vs each pure objective) and best-alpha summaries.

The main table is computed directly from the trained runs, no model in between: at each R,
the best trained mix (0 < alpha < 1) on each metric against the pure objectives' runs at
that R (a dash where the design did not train one): `pure_<first>` at alpha = 1 and
`pure_<second>` at alpha = 0, the runs' pair (`analysis.data.pair`). Written as Markdown and
LaTeX.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

from dualsweep.schema import Metric

from .data import pair


def alpha_label(alpha: float) -> str:
    """1/256, 63/64, 0.3: dyadic values (the paper's grid) as fractions, others as decimals."""
    fraction = Fraction(alpha).limit_denominator(1024)
    dyadic = fraction.denominator & (fraction.denominator - 1) == 0
    if dyadic and abs(float(fraction) - alpha) < 1e-12:
        return (
            str(fraction.numerator)
            if fraction.denominator == 1
            else f"{fraction.numerator}/{fraction.denominator}"
        )
    return f"{alpha:.3g}"


def main_table(table: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """Long form: one row per (R, metric) with the best mix and each pure objective's value
    (`pure_<name>`, the first objective at alpha = 1, then the second at alpha = 0).

    Seeds are averaged first: a point's value is the mean over its seeds.
    """
    first, second = (f"pure_{o.name}" for o in pair(table))
    rows = []
    for metric in metrics:
        points = (
            table.groupby(["repetitions", "alpha"])[metric.column].mean().dropna().reset_index()
        )
        for r, at_r in points.groupby("repetitions"):
            mixes = at_r[(at_r["alpha"] > 0) & (at_r["alpha"] < 1)]
            pure = dict(zip(at_r["alpha"], at_r[metric.column], strict=True))
            best = None
            if len(mixes):
                best = mixes.loc[
                    mixes[metric.column].idxmin()
                    if metric.lower_is_better
                    else mixes[metric.column].idxmax()
                ]
            rows.append(
                {
                    "repetitions": int(r),
                    "metric": metric.column,
                    "best_mix_alpha": float(best["alpha"]) if best is not None else np.nan,
                    "best_mix": float(best[metric.column]) if best is not None else np.nan,
                    first: pure.get(1.0, np.nan),
                    second: pure.get(0.0, np.nan),
                    "lower_is_better": metric.lower_is_better,
                }
            )
    columns = ["repetitions", "metric", "best_mix_alpha", "best_mix", first, second]
    return pd.DataFrame(rows, columns=[*columns, "lower_is_better"])


def _number(value: float, digits: int) -> str:
    return "–" if value != value else f"{value:.{digits}f}"


# Every character LaTeX treats specially in text, and the non-ASCII symbols the tables use,
# as what prints them: one pass of str.translate, so a replacement is never escaped again.
# `<`, `>` and `|` compile as they are but print other glyphs in LaTeX's default font
# encoding (OT1), so they become math or text commands too.
LATEX_ESCAPES = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": "$<$",
        ">": "$>$",
        "|": r"\textbar{}",
        "–": "--",
        "−": "$-$",
        "α": r"$\alpha$",
        "±": r"$\pm$",
        "·": r"$\cdot$",
        "×": r"$\times$",
        "√": r"$\surd$",
        "≈": r"$\approx$",
        "≤": r"$\leq$",
        "≥": r"$\geq$",
    }
)


def latex_escape(text: str) -> str:
    """`text` as LaTeX that prints it: every special character escaped, the tables' symbols
    as commands. What the map lacks is left as it is (a non-ASCII character then needs a
    font that has it)."""
    return str(text).translate(LATEX_ESCAPES)


def _render(headers: list[str], body: list[list[str]], latex: bool, caption: str) -> str:
    """A table as Markdown or, with `latex`, a booktabs table whose every header, cell and
    caption is plain text escaped by `latex_escape`."""
    if latex:

        def row(cells: list[str]) -> str:
            return " & ".join(latex_escape(cell) for cell in cells) + " \\\\"

        lines = [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{latex_escape(caption)}}}",
            "\\begin{tabular}{" + "l" + "r" * (len(headers) - 1) + "}",
            "\\toprule",
            row(headers),
            "\\midrule",
            *(row(cells) for cells in body),
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
        ]
        return "\n".join(lines)
    lines = [f"**{caption}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def pure_columns(main: pd.DataFrame) -> tuple[str, str]:
    """`main_table`'s columns of the pure objectives: alpha = 1, then alpha = 0."""
    first, second = (c for c in main.columns if c.startswith("pure_"))
    return first, second


def format_main_table(main: pd.DataFrame, *, latex: bool = False) -> str:
    pure = pure_columns(main)
    parts = []
    for metric, rows in main.groupby("metric", sort=False):
        digits = 3 if not metric.startswith("score_") else 1
        better = "lower" if rows["lower_is_better"].iloc[0] else "higher"
        headers = ["R", "best mix (α)", "best mix"]
        headers += [f"pure {c.removeprefix('pure_').upper()}" for c in pure]
        body = [
            [
                str(r.repetitions),
                "–" if r.best_mix_alpha != r.best_mix_alpha else alpha_label(r.best_mix_alpha),
                _number(r.best_mix, digits),
                *(_number(getattr(r, c), digits) for c in pure),
            ]
            for r in rows.itertuples()
        ]
        parts.append(
            _render(
                headers,
                body,
                latex,
                f"{metric} ({better} is better): best dual model vs pure objectives",
            )
        )
    return "\n\n".join(parts) + "\n"


def format_best_alpha(summary: pd.DataFrame, metric: str, *, latex: bool = False) -> str:
    headers = ["R", "best α (median)", "90% interval", "P(0 < α < 1)", "α·R (median)"]
    body = [
        [
            f"{r.repetitions:g}",
            f"{r.alpha_median:.3g}",
            f"[{r.alpha_q05:.3g}, {r.alpha_q95:.3g}]",
            f"{r.p_interior:.2f}",
            f"{r.ar_repetitions_median:.3g}",
        ]
        for r in summary.itertuples()
    ]
    return _render(headers, body, latex, f"posterior of the best alpha for {metric}") + "\n"
