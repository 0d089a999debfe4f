"""Claims about the best alpha: it falls as R grows (section 4), and it is similar for AR-
and MD-targeted metrics (section 5).

What belongs here: the rules, decided on paired differences between the sweep's trained
alphas at one seed (`reversal`, `agreement`) against the paired noise thresholds of
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
    decide,
    fmt,
    fmt_alpha,
    gated,
    table_lines,
    verdict_lines,
)
from .paired import Thresholds

PAPER_ALPHA_R = 16  # the paper's heavy-repetition rule: alpha x R ~ 16 at the optimum
TARGET_PAIRS = (("final_held_out_ar_loss", "final_held_out_md_elbo"), ("score_ar", "score_md"))
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


def _sign(column: str) -> float:
    """+1 where lower is better (losses), -1 for scores: sign x (a - b) > 0 means a is worse."""
    return -1.0 if column.startswith("score_") else 1.0


def _best(values: pd.Series, column: str) -> float:
    """The best trained alpha of one R (the first of a tie)."""
    return float((values.dropna() * _sign(column)).idxmin())


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
    a_lo, a_hi = _best(values.loc[lo], column), _best(values.loc[hi], column)
    sign = _sign(column)
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


# -- 5. AR- and MD-targeted best alpha -------------------------------------------------
def agreement(table: pd.DataFrame | None, ar: str, md: str, thresholds: Thresholds) -> list[dict]:
    """Per R with both metrics trained: each target's best trained alpha (a_AR, a_MD), how
    much worse the other's best is on it (same seed: paired), behind_<ar> = y_AR(a_MD) -
    y_AR(a_AR) and behind_<md> = y_MD(a_AR) - y_MD(a_MD) in the worse direction, and whether
    both are within the paired (`agree`) and the unpaired (`agree_unpaired`) threshold of
    their metric at that R."""
    values = {c: by_alpha(table, c) for c in (ar, md)}
    if any(v.empty for v in values.values()):
        return []
    rows = []
    for r in values[ar].index.intersection(values[md].index):
        at = {c: values[c].loc[r].dropna() for c in (ar, md)}
        if any(v.empty for v in at.values()):
            continue
        best = {c: _best(at[c], c) for c in (ar, md)}
        row = {"repetitions": float(r), "best_ar": best[ar], "best_md": best[md]}
        for c, other in ((ar, md), (md, ar)):
            behind = _sign(c) * (at[c].get(best[other], np.nan) - at[c][best[c]]) + 0.0
            row[f"behind_{c}"] = behind  # + 0.0: a zero, not -0.0, where both are one alpha
            row[f"paired_{c}"] = thresholds.paired(c, r)[0]
            row[f"unpaired_{c}"] = thresholds.unpaired(c, r)[0]
        for kind, key in (("paired", "agree"), ("unpaired", "agree_unpaired")):
            row[key] = all(bool(row[f"behind_{c}"] <= row[f"{kind}_{c}"]) for c in (ar, md))
        row["measured"] = bool(np.isfinite([row[f"paired_{c}"] for c in (ar, md)]).all())
        rows.append(row)
    return rows


GP_TARGETS_RULE = (
    "reproduced if the GP's 90% intervals of the two best α overlap at every trained R; "
    "partly if at some; not reproduced if at none"
)


def _targets_rule(ar: str, md: str, rows: list[dict], thresholds: Thresholds) -> str:
    """Section 5's rule, with each metric's thresholds per R and where they come from."""
    rs = [row["repetitions"] for row in rows]
    sources = dict.fromkeys(thresholds.source(c, rs) for c in (ar, md))
    return (
        f"at each R, a_AR and a_MD are the best trained α for `{ar}` and for `{md}`, at the "
        f"sweep's seed; they agree if a_MD is behind a_AR on `{ar}` by no more than the "
        f"paired threshold of `{ar}` at that R, and a_AR behind a_MD on `{md}` by no more "
        f"than that of `{md}` (paired / unpaired per R: `{ar}` {thresholds.by_r(ar, rs) or '–'}"
        f"; `{md}` {thresholds.by_r(md, rs) or '–'}; {'; '.join(sources)}). Reproduced if they "
        "agree at every R; partly if at some; not reproduced if at none. Agreement means the "
        "sweep cannot tell the two apart on paired noise, not that they are equal."
    )


def _agreement_lines(ar: str, md: str, rows: list[dict]) -> list[str]:
    if not rows:
        return ["The sweep has no R with both metrics trained.", ""]
    return table_lines(
        [
            "R",
            "best trained α: AR / MD target",
            f"a_MD behind on `{ar}` (paired / unpaired threshold)",
            f"a_AR behind on `{md}` (paired / unpaired threshold)",
            "agree",
        ],
        [
            [
                f"{row['repetitions']:g}",
                f"{fmt_alpha(row['best_ar'])} / {fmt_alpha(row['best_md'])}",
            ]
            + [
                f"{fmt(row[f'behind_{c}'], c)} ({fmt(row[f'paired_{c}'], c)} / "
                f"{fmt(row[f'unpaired_{c}'], c)})"
                for c in (ar, md)
            ]
            + ["yes" if row["agree"] else "no"]
            for row in rows
        ],
    )


def _posterior(r, side: str) -> str:
    q05, q95 = getattr(r, f"alpha_q05_{side}"), getattr(r, f"alpha_q95_{side}")
    return f"{fmt_alpha(getattr(r, f'alpha_median_{side}'))} [{fmt_alpha(q05)}, {fmt_alpha(q95)}]"


def _gp_overlap_lines(
    ar: str, md: str, joined: pd.DataFrame, overlap: pd.Series, decides: bool
) -> list[str]:
    lines = [f"GP posterior of the best α ({CONTEXT[decides]}):", ""]
    return lines + table_lines(
        ["R", f"`{ar}`: GP median [90%]", f"`{md}`: GP median [90%]", "intervals overlap"],
        [
            [f"{r.repetitions:g}", _posterior(r, "ar"), _posterior(r, "md"), "yes" if o else "no"]
            for r, o in zip(joined.itertuples(), overlap, strict=True)
        ],
    )


def _targets(
    ar: str,
    md: str,
    summaries: Mapping[str, pd.DataFrame],
    table: pd.DataFrame | None,
    thresholds: Thresholds,
    undecided: str | None,
) -> Section:
    joined = summaries[ar].merge(summaries[md], on="repetitions", suffixes=("_ar", "_md"))
    overlap = (joined["alpha_q05_ar"] <= joined["alpha_q95_md"]) & (
        joined["alpha_q05_md"] <= joined["alpha_q95_ar"]
    )
    rows = agreement(table, ar, md, thresholds)
    n, k = len(rows), sum(row["agree"] for row in rows)
    k_unpaired = sum(row["agree_unpaired"] for row in rows)
    by_gp = bool(rows) and not all(row["measured"] for row in rows)
    if by_gp:
        verdict, rule = decide(int(overlap.sum()), len(joined)), GP_TARGETS_RULE + STANDING_IN
    else:
        verdict, rule = decide(k, n), _targets_rule(ar, md, rows, thresholds)
    lines = [f"### `{ar}` vs `{md}`", ""] + _agreement_lines(ar, md, rows)
    lines += _gp_overlap_lines(ar, md, joined, overlap, by_gp)
    lines += [
        f"The best trained alphas agree at {k} of {n} R on paired noise (at {k_unpaired} on "
        f"unpaired noise); the GP's 90% intervals overlap at {int(overlap.sum())} of "
        f"{len(joined)} R.",
        "",
    ] + ([NO_NOISE, ""] if by_gp else [])
    verdict = gated(verdict, undecided)
    numbers = {"agree": k, "agree_unpaired": k_unpaired, "compared": n, "rows": rows}
    numbers |= {"overlap": int(overlap.sum()), "overlap_compared": len(joined)}
    numbers |= {"verdict": verdict, "decided_by": "GP" if by_gp else "paired"}
    return lines + verdict_lines(verdict, rule), numbers


def ar_vs_md_targets(
    best_alphas: Mapping[str, pd.DataFrame],
    table: pd.DataFrame | None = None,
    thresholds: Thresholds = NO_THRESHOLDS,
    *,
    undecided: str | None = None,
) -> Section:
    """Section 5, per pair of target metrics with GP summaries: whether each target's best
    trained alpha is within paired noise of the other's (`table`, `thresholds` as in
    `best_alpha_falls`), with the GP intervals as context."""
    lines = ["## 5. Best alpha is similar for AR and MD targets", ""]
    lines += [
        "Claim: the α that is best for AR performance is close to the best for MD. Decided on "
        "the trained alphas at the sweep's seed: at each R, how much worse each target's best "
        "α is on the other target, against the paired noise of that R (section 6).",
        "",
    ]
    numbers = {}
    for ar, md in TARGET_PAIRS:
        if ar in best_alphas and md in best_alphas:
            part, numbers[f"{ar} vs {md}"] = _targets(
                ar, md, best_alphas, table, thresholds, undecided
            )
            lines += part
    return lines + ([] if numbers else ["No pair of surfaces was fitted.", ""]), numbers
