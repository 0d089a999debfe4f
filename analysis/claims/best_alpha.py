"""Claims about the best alpha from the GP surface's posterior: it falls as R grows
(section 4), and it is similar for AR- and MD-targeted metrics (section 5).

What belongs here: the rules read from `analysis.surface.best_alpha` summaries at the
trained R (fitted by `make plots`, passed in); no fitting.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .formatting import (
    Section,
    decide,
    fmt_alpha,
    gated,
    table_lines,
    verdict_lines,
)

PAPER_ALPHA_R = 16  # the paper's heavy-repetition rule: alpha x R ~ 16 at the optimum
TARGET_PAIRS = (("final_held_out_ar_loss", "final_held_out_md_elbo"), ("score_ar", "score_md"))


# -- 4. best alpha falls with R --------------------------------------------------------
def _falls(column: str, summary: pd.DataFrame, undecided: str | None) -> Section:
    s = summary.sort_values("repetitions").reset_index(drop=True)
    lines = [f"### `{column}`", ""]
    lines += table_lines(
        ["R", "best α (median)", "90% interval", "P(0 < α < 1)", "α·R (median)"],
        [
            [f"{r.repetitions:g}", fmt_alpha(r.alpha_median)]
            + [f"[{fmt_alpha(r.alpha_q05)}, {fmt_alpha(r.alpha_q95)}]", f"{r.p_interior:.2f}"]
            + [f"{r.ar_repetitions_median:.3g}"]
            for r in s.itertuples()
        ],
    )
    rule = (
        "reproduced if the posterior median at the highest R is below the one at the lowest R "
        "and their 90% intervals do not overlap; partly if only the medians fall."
    )
    if len(s) < 2:
        lines += ["The surface was read at fewer than two R.", ""]
        return lines + verdict_lines("not tested", rule), {"verdict": "not tested"}
    low, high, top = s.iloc[0], s.iloc[-1], s.tail(2)
    falls = bool(high.alpha_median < low.alpha_median)
    apart = bool(high.alpha_q95 < low.alpha_q05)
    verdict = ("reproduced" if apart else "partly") if falls else "not reproduced"
    verdict = gated(verdict, undecided)
    at_top = ", ".join(
        f"R={r.repetitions:g}: {r.ar_repetitions_median:.3g} "
        f"[{r.alpha_q05 * r.repetitions:.3g}, {r.alpha_q95 * r.repetitions:.3g}]"
        for r in top.itertuples()
    )
    lines += [f"α·R at the optimum [90%], highest R: {at_top} (paper: ~{PAPER_ALPHA_R}).", ""]
    numbers = {"median_lowest_r": float(low.alpha_median)}
    numbers |= {"median_highest_r": float(high.alpha_median), "verdict": verdict}
    numbers["alpha_r"] = dict(zip(top["repetitions"], top["ar_repetitions_median"], strict=True))
    return lines + verdict_lines(verdict, rule), numbers


def best_alpha_falls(
    best_alphas: Mapping[str, pd.DataFrame], *, undecided: str | None = None
) -> Section:
    """Section 4: the GP posterior of the best alpha at the trained R, per metric."""
    lines = ["## 4. Best alpha falls as R grows", ""]
    lines += [
        "Claim: the best α falls with R, to α·R ≈ 16 under heavy repetition. From the GP "
        "surface's posterior of the best α at each trained R (`tables/best_alpha.md`).",
        "",
    ]
    numbers = {}
    for column, summary in best_alphas.items():
        part, numbers[column] = _falls(column, summary, undecided)
        lines += part
    return lines + ([] if numbers else ["No surface was fitted.", ""]), numbers


# -- 5. AR- and MD-targeted best alpha -------------------------------------------------
def _targets(
    ar: str, md: str, summaries: Mapping[str, pd.DataFrame], undecided: str | None
) -> Section:
    joined = summaries[ar].merge(summaries[md], on="repetitions", suffixes=("_ar", "_md"))
    overlap = (joined["alpha_q05_ar"] <= joined["alpha_q95_md"]) & (
        joined["alpha_q05_md"] <= joined["alpha_q95_ar"]
    )

    def posterior(r, side: str) -> str:
        q05, q95 = getattr(r, f"alpha_q05_{side}"), getattr(r, f"alpha_q95_{side}")
        return (
            f"{fmt_alpha(getattr(r, f'alpha_median_{side}'))} [{fmt_alpha(q05)}, {fmt_alpha(q95)}]"
        )

    lines = [f"### `{ar}` vs `{md}`", ""]
    lines += table_lines(
        ["R", f"`{ar}`: median [90%]", f"`{md}`: median [90%]", "intervals overlap"],
        [
            [f"{r.repetitions:g}", posterior(r, "ar"), posterior(r, "md"), "yes" if o else "no"]
            for r, o in zip(joined.itertuples(), overlap, strict=True)
        ],
    )
    n, k = len(joined), int(overlap.sum())
    verdict = gated(decide(k, n), undecided)
    rule = (
        "reproduced if the 90% intervals overlap at every trained R; partly if at some; not "
        "reproduced if at none. Overlap means the sweep cannot tell the two apart, not that "
        "they are equal."
    )
    lines += [f"The intervals overlap at {k} of {n} R.", ""]
    return lines + verdict_lines(verdict, rule), {"overlap": k, "compared": n, "verdict": verdict}


def ar_vs_md_targets(
    best_alphas: Mapping[str, pd.DataFrame], *, undecided: str | None = None
) -> Section:
    """Section 5: the best alpha for an AR-targeted vs the matching MD-targeted metric."""
    lines = ["## 5. Best alpha is similar for AR and MD targets", ""]
    lines += ["Claim: the α that is best for AR performance is close to the best for MD.", ""]
    numbers = {}
    for ar, md in TARGET_PAIRS:
        if ar in best_alphas and md in best_alphas:
            part, numbers[f"{ar} vs {md}"] = _targets(ar, md, best_alphas, undecided)
            lines += part
    return lines + ([] if numbers else ["No pair of surfaces was fitted.", ""]), numbers
