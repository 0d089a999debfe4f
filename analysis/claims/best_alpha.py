"""Claims about the best alpha: it falls as R grows (section 4); and what both best-alpha
claims share (the trained values per R and alpha, the best of them, the GP's stand-in rule).
Section 5 (the best alpha for each objective's targets) is in `analysis.claims.targets`.

What belongs here: the rule, decided on paired differences between the sweep's trained
alphas at one seed (`reversal`) against the paired noise thresholds of
`analysis.claims.noise`; beside them, as context, the GP surface's posterior of the best
alpha (`analysis.surface.best_alpha` summaries at the trained R, fitted by `make plots` and
passed in), whose former interval rules decide only for a metric with no noise threshold at
all (a score without a seeds sweep). No fitting.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .formatting import (
    Section,
    fmt,
    fmt_alpha,
    gated,
    table_lines,
    verdict_lines,
)
from .paired import Thresholds

PAPER_ALPHA_R = 16  # the paper's heavy-repetition rule: alpha x R ~ 16 at the optimum
NO_THRESHOLDS = Thresholds(None, {})
STANDING_IN = " (the former GP rule, standing in: no seed-noise threshold for this metric)."
NO_NOISE = (
    "No seed-noise threshold for this metric (no seeds sweep measured it): the former GP rule "
    "decides in place of the paired one."
)
CONTEXT = {True: "the verdict", False: "context, not the verdict"}  # by whether it decides


def by_alpha(table: pd.DataFrame | None, column: str) -> pd.DataFrame:
    """The trained values (R x alpha; a point's seeds averaged), empty without them."""
    if table is None or column not in table:
        return pd.DataFrame()
    return table.groupby(["repetitions", "alpha"])[column].mean().unstack("alpha")


def worse_sign(column: str) -> float:
    """+1 where lower is better (losses), -1 for scores: sign x (a - b) > 0 means a is worse."""
    return -1.0 if column.startswith("score_") else 1.0


def best_trained(values: pd.Series, column: str) -> float:
    """The best trained alpha of one R (the first of a tie)."""
    return float((values.dropna() * worse_sign(column)).idxmin())


# -- 4. best alpha falls with R --------------------------------------------------------
def reversal(table: pd.DataFrame | None, column: str, thresholds: Thresholds) -> dict | None:
    """The best trained alphas a_lo, a_hi at the lowest and highest R with two or more trained
    alphas, among the alphas trained at both, and how much worse each is at the other's R
    (same seed: paired differences): `behind_lowest_r` = how much worse a_hi is than a_lo at
    the lowest R, `behind_highest_r` = how much worse a_lo is than a_hi at the highest; both
    positive where the order reverses. `beyond`: a_hi < a_lo and both exceed the paired
    threshold of their R (`beyond_unpaired`: the unpaired one). None where the sweep lacks
    two such R, or two alphas trained at both."""
    values = by_alpha(table, column)
    values = values[values.notna().sum(axis=1) >= 2] if len(values) else values
    if len(values) < 2:
        return None
    lo, hi = float(values.index.min()), float(values.index.max())
    ends = values.loc[[lo, hi]].dropna(axis=1)  # the alphas trained at both
    if ends.shape[1] < 2:
        return None
    values = ends
    a_lo, a_hi = best_trained(values.loc[lo], column), best_trained(values.loc[hi], column)
    sign = worse_sign(column)
    found = {
        "lowest_r": lo,
        "highest_r": hi,
        "best_lowest_r": a_lo,
        "best_highest_r": a_hi,
        "behind_lowest_r": sign * (values.loc[lo, a_hi] - values.loc[lo, a_lo]) + 0.0,
        "behind_highest_r": sign * (values.loc[hi, a_lo] - values.loc[hi, a_hi]) + 0.0,
        "falls": a_hi < a_lo,
    }
    for side, r in (("lowest_r", lo), ("highest_r", hi)):
        found[f"paired_{side}"] = thresholds.paired(column, r)[0]
        found[f"unpaired_{side}"] = thresholds.unpaired(column, r)[0]
    for kind, key in (("paired", "beyond"), ("unpaired", "beyond_unpaired")):
        found[key] = found["falls"] and all(
            found[f"behind_{side}"] > found[f"{kind}_{side}"] for side in ("lowest_r", "highest_r")
        )
    found["measured"] = bool(
        np.isfinite([found["paired_lowest_r"], found["paired_highest_r"]]).all()
    )
    return found


def _beyond_where(swap: dict, kind: str) -> str:
    """At which ends the reversal exceeds the `kind` ("paired" or "unpaired") threshold."""
    ends = [
        f"R={swap[side]:g}"
        for side in ("lowest_r", "highest_r")
        if swap[f"behind_{side}"] > swap[f"{kind}_{side}"]
    ]
    return "both ends" if len(ends) == 2 else (ends[0] + " only" if ends else "neither end")


def _reversal_lines(swap: dict | None, column: str, decides: bool) -> list[str]:
    if swap is None:
        lacks = "two R with two trained alphas each, or two alphas trained at both"
        return [f"Paired: the sweep lacks {lacks}.", ""]
    a_lo, a_hi = fmt_alpha(swap["best_lowest_r"]), fmt_alpha(swap["best_highest_r"])
    lo, hi = f"R={swap['lowest_r']:g}", f"R={swap['highest_r']:g}"
    text = f"Paired ({CONTEXT[decides]}): best trained α {a_lo} at {lo}, {a_hi} at {hi}"
    if not swap["falls"]:
        return [f"{text}: the best α does not fall.", ""]
    return [
        f"{text}: it falls. {a_hi} is behind {a_lo} at {lo} by "
        f"{fmt(swap['behind_lowest_r'], column)} (paired threshold "
        f"{fmt(swap['paired_lowest_r'], column)}, unpaired "
        f"{fmt(swap['unpaired_lowest_r'], column)}); {a_lo} is behind {a_hi} at {hi} by "
        f"{fmt(swap['behind_highest_r'], column)} (paired "
        f"{fmt(swap['paired_highest_r'], column)}, unpaired "
        f"{fmt(swap['unpaired_highest_r'], column)}). Beyond paired noise at "
        f"{_beyond_where(swap, 'paired')}; against the unpaired thresholds it would be at "
        f"{_beyond_where(swap, 'unpaired')}.",
        "",
    ]


GP_FALLS_RULE = (
    "reproduced if the GP's posterior median of the best α at the highest R is below the one "
    "at the lowest R and their 90% intervals do not overlap; partly if only the medians fall"
)


def _gp_falls(s: pd.DataFrame) -> dict | None:
    """The former GP rule's outcome on the summary's two end R, or None with fewer than two."""
    if len(s) < 2:
        return None
    low, high = s.iloc[0], s.iloc[-1]
    falls, apart = bool(high.alpha_median < low.alpha_median), bool(high.alpha_q95 < low.alpha_q05)
    verdict = ("reproduced" if apart else "partly") if falls else "not reproduced"
    return {"low": low, "high": high, "falls": falls, "apart": apart, "verdict": verdict}


def _falls_rule(swap: dict | None, column: str, thresholds: Thresholds) -> str:
    """Section 4's rule, with the two R, their thresholds and where those come from."""
    if swap is None:
        ends, at_lo, at_hi = "the lowest and highest R with two trained alphas", "", ""
    else:
        lo, hi = swap["lowest_r"], swap["highest_r"]
        ends = f"the lowest and highest R (R={lo:g}, R={hi:g})"
        at_lo = (
            f" ({fmt(swap['paired_lowest_r'], column)}; unpaired "
            f"{fmt(swap['unpaired_lowest_r'], column)})"
        )
        at_hi = (
            f" ({fmt(swap['paired_highest_r'], column)}; unpaired "
            f"{fmt(swap['unpaired_highest_r'], column)})"
        )
    source = thresholds.source(column, [swap["lowest_r"], swap["highest_r"]] if swap else [])
    return (
        f"with a_lo and a_hi the best trained α at {ends}, among the alphas trained at both, "
        f"at the sweep's seed: reproduced if "
        f"a_hi < a_lo and the order reverses beyond paired noise at both ends, a_hi behind "
        f"a_lo at the lowest R by more than the paired threshold of that R{at_lo} and a_lo "
        f"behind a_hi at the highest R by more than that of its R{at_hi}; partly if a_hi < "
        f"a_lo but not both beyond it; not reproduced if a_hi ≥ a_lo. Paired threshold: "
        f"{source}."
    )


def _gp_lines(s: pd.DataFrame, gp: dict | None, decides: bool) -> list[str]:
    """The GP posterior per R, the former rule's outcome and alpha x R at the top R."""
    lines = table_lines(
        ["R", "GP best α (median)", "90% interval", "P(0 < α < 1)", "α·R (median)"],
        [
            [f"{r.repetitions:g}", fmt_alpha(r.alpha_median)]
            + [f"[{fmt_alpha(r.alpha_q05)}, {fmt_alpha(r.alpha_q95)}]", f"{r.p_interior:.2f}"]
            + [f"{r.ar_repetitions_median:.3g}"]
            for r in s.itertuples()
        ],
    )
    if gp is None:
        return lines
    at_top = ", ".join(
        f"R={r.repetitions:g}: {r.ar_repetitions_median:.3g} "
        f"[{r.alpha_q05 * r.repetitions:.3g}, {r.alpha_q95 * r.repetitions:.3g}]"
        for r in s.tail(2).itertuples()
    )
    return lines + [
        f"GP ({CONTEXT[decides]}): the posterior median goes from "
        f"{fmt_alpha(gp['low'].alpha_median)} at R={gp['low'].repetitions:g} to "
        f"{fmt_alpha(gp['high'].alpha_median)} at R={gp['high'].repetitions:g} "
        f"({'falls' if gp['falls'] else 'does not fall'}); the 90% intervals at the two "
        f"ends {'do not overlap' if gp['apart'] else 'overlap'}. The former GP rule "
        f"({GP_FALLS_RULE}) {'says' if decides else 'would say'}: {gp['verdict']}.",
        "",
        f"α·R at the optimum [90%], highest R: {at_top} (paper: ~{PAPER_ALPHA_R}).",
        "",
    ]


def _falls_verdict(
    swap: dict | None, gp: dict | None, column: str, thresholds: Thresholds
) -> tuple[str, str, str]:
    """The verdict, its rule and what decided it: the paired reversal, or the GP where the
    metric has no noise threshold."""
    rule = _falls_rule(swap, column, thresholds)
    if swap is None:
        return "not tested", rule, "paired"
    if not swap["measured"]:
        return (
            (gp["verdict"], GP_FALLS_RULE + STANDING_IN, "GP") if gp else ("not tested", rule, "GP")
        )
    verdict = "reproduced" if swap["beyond"] else "partly" if swap["falls"] else "not reproduced"
    return verdict, rule, "paired"


def _falls(
    column: str,
    summary: pd.DataFrame,
    table: pd.DataFrame | None,
    thresholds: Thresholds,
    undecided: str | None,
) -> Section:
    s = summary.sort_values("repetitions").reset_index(drop=True)
    swap, gp = reversal(table, column, thresholds), _gp_falls(s)
    verdict, rule, decided_by = _falls_verdict(swap, gp, column, thresholds)
    by_gp = decided_by == "GP"
    lines = [f"### `{column}`", ""] + _gp_lines(s, gp, by_gp)
    lines += _reversal_lines(swap, column, not by_gp) + ([NO_NOISE, ""] if by_gp else [])
    verdict = gated(verdict, undecided)
    numbers = {"verdict": verdict, "paired": swap, "decided_by": decided_by}
    if gp is not None:
        top = s.tail(2)
        numbers |= {"median_lowest_r": float(gp["low"].alpha_median)}
        numbers |= {"median_highest_r": float(gp["high"].alpha_median), "gp_verdict": gp["verdict"]}
        numbers["alpha_r"] = dict(
            zip(top["repetitions"], top["ar_repetitions_median"], strict=True)
        )
    return lines + verdict_lines(verdict, rule), numbers


def best_alpha_falls(
    best_alphas: Mapping[str, pd.DataFrame],
    table: pd.DataFrame | None = None,
    thresholds: Thresholds = NO_THRESHOLDS,
    *,
    undecided: str | None = None,
) -> Section:
    """Section 4, per metric with a GP summary: the order of the best trained alphas at the
    lowest and highest R on paired noise (`table`: the sweep's runs; `thresholds`: the
    noise of section 6), with the GP posterior of the best alpha as context."""
    lines = ["## 4. Best alpha falls as R grows", ""]
    lines += [
        "Claim: the best α falls with R, to α·R ≈ 16 under heavy repetition. Decided on the "
        "trained alphas: the lowest and highest R's best α, each compared with the other at "
        "the sweep's seed (a paired difference, against the paired noise of its R, section "
        "6). The GP surface's posterior of the best α at each trained R "
        "(`tables/best_alpha.md`) is shown beside it.",
        "",
    ]
    numbers = {}
    for column, summary in best_alphas.items():
        part, numbers[column] = _falls(column, summary, table, thresholds, undecided)
        lines += part
    return lines + ([] if numbers else ["No surface was fitted.", ""]), numbers
