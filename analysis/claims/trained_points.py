"""Claims read off the trained points: pure AR overfits (section 2), a mix beats both pure
objectives (section 3). AR and MD are the runs' pair (`analysis.data.pair`): section 2 is
about the first objective (pure at alpha = 1), section 3 compares the mix with both.

What belongs here: the rules that compare the sweep's trained (alpha, R) points directly,
with the noise thresholds of `analysis.claims.noise`: section 2 compares a run with itself
(its final and best loss) against the unpaired pooled threshold, section 3 two alphas at the
sweep's seed against the paired threshold of their R. Claims about the best alpha are in
`analysis.claims.best_alpha`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import compared_columns, metric, pair
from ..tables import main_table, pure_columns
from .formatting import (
    Section,
    decide,
    fmt,
    fmt_alpha,
    fmt_se,
    gated,
    table_lines,
    verdict_lines,
)
from .noise import Limits, point_stderr
from .paired import Thresholds, pooled_limit


# -- 2. pure AR (the first objective) overfits ------------------------------------------
def overfitting(table: pd.DataFrame, limits: Limits, *, undecided: str | None = None) -> Section:
    """Section 2: pure AR's (the first objective's) final vs best held-out loss per R.

    `undecided`: the verdict in place of the rule's where the sweep is too small to decide
    (`analysis.claims.formatting.too_few`); the same in every claim section."""
    first = pair(table)[0]
    name, c, best = first.name.upper(), f"final_{first.held_out}", f"best_{first.held_out}"
    threshold, source = pooled_limit(limits, c)
    ar = table[table["alpha"] == 1].groupby("repetitions")[[c, best]].mean()
    ar = ar.dropna()
    lines = [f"## 2. Pure {name} overfits with repetition", ""]
    lines += [f"Claim: on repeated data, pure {name}'s held-out loss ends above its minimum.", ""]
    rule = (
        f"reproduced if, at the highest R, final minus best held-out {first.title} exceeds the "
        f"noise threshold ({threshold:.3f} nats, {source}) and the final loss exceeds the "
        f"final loss at the lowest R; partly if one of the two holds."
    )
    if len(ar) < 2:
        lines += [f"Pure {name} was trained at fewer than two R.", ""]
        return lines + verdict_lines("not tested", rule), {"verdict": "not tested"}
    low, high = ar.index.min(), ar.index.max()
    gap = ar[c] - ar[best]
    rise = ar[c] - ar.loc[low, c]
    lines += table_lines(
        ["R", "final", "best", "final − best", f"final − final at R={low:g}"],
        [
            [f"{r:g}", fmt(row[c], c), fmt(row[best], c)]
            + [fmt(gap[r], c, signed=True), fmt(rise[r], c, signed=True)]
            for r, row in ar.iterrows()
        ],
    )
    overfits, worse = bool(gap[high] > threshold), bool(rise[high] > 0)
    lines += [
        f"At R={high:g} the gap is {fmt(gap[high], c)} nats "
        f"({'above' if overfits else 'not above'} {threshold:.3f}) and the final loss is "
        f"{fmt(rise[high], c, signed=True)} against R={low:g}.",
        "",
    ]
    verdict = gated(decide(overfits + worse, 2), undecided)
    numbers = {
        "lowest_r": float(low),
        "highest_r": float(high),
        "gap": gap.to_dict(),
        "rise": rise.to_dict(),
        "threshold": threshold,
        "verdict": verdict,
    }
    return lines + verdict_lines(verdict, rule), numbers


# -- 3. a mix beats both pure objectives -----------------------------------------------
def _beyond(margin: float, bar: float, se: float, score: bool) -> bool:
    """The margin exceeds the seed-noise bar (a NaN bar: none measured) and, for a score,
    2 evaluation standard errors of the margin as well."""
    needed = [b for b in (bar, 2 * se if score else np.nan) if np.isfinite(b)]
    return bool(needed) and bool(margin > max(needed))


def _mix_row(
    r,
    pure: tuple[str, str],
    lower_is_better: bool,
    stderr: dict,
    bars: tuple[float, float],
    score: bool,
) -> dict:
    """One R: the margin of the best mix over the better pure objective (positive: mix better);
    `pure`: the main table's columns of the pure objectives at alpha 1 and 0."""
    pure_at = {1.0: getattr(r, pure[0]), 0.0: getattr(r, pure[1])}
    pick = min if lower_is_better else max
    better_alpha = pick((1.0, 0.0), key=lambda a: pure_at[a])
    # Both pure objectives must be trained at this R; otherwise the R is not compared.
    both = np.isfinite(pure_at[1.0]) and np.isfinite(pure_at[0.0])
    better = pure_at[better_alpha] if both else np.nan
    margin = (better - r.best_mix) if lower_is_better else (r.best_mix - better)
    se = float(
        np.hypot(
            stderr.get((r.repetitions, r.best_mix_alpha), np.nan),
            stderr.get((r.repetitions, better_alpha), np.nan),
        )
    )
    compared = bool(np.isfinite(margin))
    paired, unpaired = bars
    return {
        "repetitions": r.repetitions,
        "best_mix_alpha": r.best_mix_alpha,
        "best_mix": r.best_mix,
        pure[0]: pure_at[1.0],
        pure[1]: pure_at[0.0],
        "margin": margin,
        "margin_stderr": se,
        "paired_threshold": paired,
        "unpaired_threshold": unpaired,
        "compared": compared,
        "wins": compared and bool(margin > 0),
        "significant": compared and _beyond(margin, paired, se, score),
        "significant_unpaired": compared and _beyond(margin, unpaired, se, score),
    }


def _mix_metric(
    table: pd.DataFrame, column: str, thresholds: Thresholds, undecided: str | None
) -> Section:
    m = metric(table, column)
    score = column.startswith("score_")
    stderr = point_stderr(table, column) if score else {}
    main = main_table(table, [m])
    pure = pure_columns(main)
    rows = [
        _mix_row(
            r, pure, m.lower_is_better, stderr, _bars(thresholds, column, r.repetitions), score
        )
        for r in main.itertuples()
    ]

    def cell(row, alpha, value) -> str:
        return fmt_se(value, stderr.get((row["repetitions"], alpha), np.nan), column)

    def decided(row) -> str:
        if not row["compared"]:
            return "not compared"
        return ("wins" if row["wins"] else "loses") + (
            ", beyond noise" if row["significant"] else ""
        )

    lines = [f"### `{column}` ({'lower' if m.lower_is_better else 'higher'} is better)", ""]
    headers = ["R", "best mix α", "best mix"]
    headers += [f"pure {c.removeprefix('pure_').upper()}" for c in pure] + ["margin"]
    lines += table_lines(
        [*headers, "threshold: paired / unpaired", "decided"],
        [
            [str(row["repetitions"]), fmt_alpha(row["best_mix_alpha"])]
            + [cell(row, row["best_mix_alpha"], row["best_mix"]), cell(row, 1.0, row[pure[0]])]
            + [cell(row, 0.0, row[pure[1]])]
            + [fmt_se(row["margin"], row["margin_stderr"], column, signed=True)]
            + [f"{fmt(row['paired_threshold'], column)} / {fmt(row['unpaired_threshold'], column)}"]
            + [decided(row)]
            for row in rows
        ],
    )
    compared = [row for row in rows if row["compared"]]
    wins = sum(row["wins"] for row in compared)
    significant = sum(row["significant"] for row in compared)
    unpaired = sum(row["significant_unpaired"] for row in compared)
    lines += [
        f"The best mix wins at {wins} of {len(compared)} R with both pure objectives trained, "
        f"beyond paired noise at {significant}; against the unpaired threshold (two "
        f"independent runs' noise) it would be beyond noise at {unpaired}.",
        "",
    ]
    if not compared:
        verdict = "not tested"
    elif significant == len(compared):  # beyond noise implies a win
        verdict = "reproduced"
    else:
        verdict = "partly" if wins else "not reproduced"
    verdict = gated(verdict, undecided)
    numbers = {"rows": rows, "compared": len(compared), "wins": wins}
    numbers |= {"significant": significant, "significant_unpaired": unpaired, "verdict": verdict}
    rule = _mix_rule(thresholds, column, [row["repetitions"] for row in compared], score)
    return lines + verdict_lines(verdict, rule), numbers


def _bars(thresholds: Thresholds, column: str, r: float) -> tuple[float, float]:
    """The paired and unpaired noise thresholds of `column` at R = `r`."""
    return thresholds.paired(column, r)[0], thresholds.unpaired(column, r)[0]


def _mix_noise(thresholds: Thresholds, column: str, compared: list[float]) -> str:
    """The seed-noise part of section 3's rule: the paired threshold of each compared R with
    the unpaired one beside it, the fallback that stands in for it, or none."""
    source = thresholds.source(column, compared)
    if thresholds.measured_for(column):
        by_r = thresholds.by_r(column, compared) or "none compared"
        return f"the paired threshold of that R ({source}; paired / unpaired per R: {by_r})"
    if np.isfinite(pooled_limit(thresholds.limits, column)[0]):  # the unpaired fallback
        return f"the noise threshold ({source})"
    return ""


def _mix_rule(thresholds: Thresholds, column: str, compared: list[float], score: bool) -> str:
    """Section 3's rule, with the thresholds of the compared R (paired / unpaired)."""
    noise = _mix_noise(thresholds, column, compared)
    if score:
        errors = "2 evaluation standard errors of the margin"
        why = (
            "(conservative: both runs are scored on the same items, so part of their errors "
            "cancels)"
        )
        noise = (
            f"{noise} and {errors} {why}"
            if noise
            else f"{errors}, no seed noise being measured {why}"
        )
    return (
        f"reproduced if the best mix beats the better pure objective at every compared R by "
        f"more than {noise}; partly if it wins at some R; not reproduced if at none. Both "
        "runs are at the sweep's seed, so the margin is a paired difference; the unpaired "
        "threshold (2√2 × the single-run SD: two independent runs) is for comparison only."
    )


def mix_beats_pure(
    table: pd.DataFrame,
    limits: Limits,
    *,
    thresholds: Thresholds | None = None,
    undecided: str | None = None,
) -> Section:
    """Section 3: per metric and R, the best trained mix against both pure objectives.

    `thresholds`: the paired and unpaired noise per R (`noise.Thresholds`); without it, the
    pooled unpaired `limits` stand in for the paired ones."""
    thresholds = thresholds if thresholds is not None else Thresholds(None, limits)
    first, second = (o.name.upper() for o in pair(table))
    lines = ["## 3. A mix beats both pure objectives at every R", ""]
    lines += [
        f"Claim: at every R some mix 0 < α < 1 is better than pure {first} and pure {second}. Only "
        "trained points count. The best of several mixes is picked on the same numbers, "
        "so its margin leans optimistic. The mix and the pure objective it is compared with "
        "are runs at the sweep's seed: their margin is a paired difference, judged against "
        "the paired noise of its R (section 6).",
        "",
    ]
    numbers = {}
    for column in compared_columns(table):
        if table[column].notna().any():
            part, numbers[column] = _mix_metric(table, column, thresholds, undecided)
            lines += part
    return lines, numbers
