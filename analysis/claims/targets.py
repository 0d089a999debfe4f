"""Section 5: the best alpha is similar for the targets of each objective of the pair.

What belongs here: the rule, decided on paired differences between the sweep's trained
alphas at one seed (`agreement`: each target's best alpha, and how far behind it is on the
other target) against the paired noise thresholds of `analysis.claims.paired`, with the GP
surface's posterior intervals as context (or as the verdict for a metric with no noise
threshold). The paper's claim is about AR and MD; here it is about the runs' pair
(`analysis.data.pair`): the first objective's targets against the second's. No fitting.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dualsweep.schema import objectives_in

from ..data import pair, target_pairs
from .best_alpha import (
    CONTEXT,
    NO_NOISE,
    NO_THRESHOLDS,
    STANDING_IN,
    best_trained,
    by_alpha,
    worse_sign,
)
from .formatting import Section, decide, fmt, fmt_alpha, gated, table_lines, verdict_lines
from .paired import Thresholds


def objective_of(column: str) -> str:
    """The objective a target metric is about: `score_<name>`, `final_held_out_<name>_...`."""
    if column.startswith("score_"):
        return column.removeprefix("score_")
    (found,) = objectives_in([column])
    return found.name


def agreement(table: pd.DataFrame | None, a: str, b: str, thresholds: Thresholds) -> list[dict]:
    """Per R with both target metrics `a` and `b` trained (e.g. the AR and the MD loss): each
    target's best trained alpha (`best_<objective>`: a_A, a_B), how much worse the other's
    best is on it (same seed: paired), behind_<a> = y_a(a_B) - y_a(a_A) and behind_<b> =
    y_b(a_A) - y_b(a_B) in the worse direction, and whether both are within the paired
    (`agree`) and the unpaired (`agree_unpaired`) threshold of their metric at that R."""
    values = {c: by_alpha(table, c) for c in (a, b)}
    if any(v.empty for v in values.values()):
        return []
    rows = []
    for r in values[a].index.intersection(values[b].index):
        at = {c: values[c].loc[r].dropna() for c in (a, b)}
        if any(v.empty for v in at.values()):
            continue
        best = {c: best_trained(at[c], c) for c in (a, b)}
        row = {"repetitions": float(r)} | {f"best_{objective_of(c)}": best[c] for c in (a, b)}
        for c, other in ((a, b), (b, a)):
            behind = worse_sign(c) * (at[c].get(best[other], np.nan) - at[c][best[c]]) + 0.0
            row[f"behind_{c}"] = behind  # + 0.0: a zero, not -0.0, where both are one alpha
            row[f"paired_{c}"] = thresholds.paired(c, r)[0]
            row[f"unpaired_{c}"] = thresholds.unpaired(c, r)[0]
        for kind, key in (("paired", "agree"), ("unpaired", "agree_unpaired")):
            row[key] = all(bool(row[f"behind_{c}"] <= row[f"{kind}_{c}"]) for c in (a, b))
        row["measured"] = bool(np.isfinite([row[f"paired_{c}"] for c in (a, b)]).all())
        rows.append(row)
    return rows


GP_TARGETS_RULE = (
    "reproduced if the GP's 90% intervals of the two best α overlap at every trained R; "
    "partly if at some; not reproduced if at none"
)


def _upper(a: str, b: str) -> tuple[str, str]:
    """The two targets' objectives as the report names them: AR, MD."""
    return objective_of(a).upper(), objective_of(b).upper()


def _targets_rule(a: str, b: str, rows: list[dict], thresholds: Thresholds) -> str:
    """Section 5's rule, with each metric's thresholds per R and where they come from."""
    rs = [row["repetitions"] for row in rows]
    sources = dict.fromkeys(thresholds.source(c, rs) for c in (a, b))
    x, y = _upper(a, b)
    return (
        f"at each R, a_{x} and a_{y} are the best trained α for `{a}` and for `{b}`, at the "
        f"sweep's seed; they agree if a_{y} is behind a_{x} on `{a}` by no more than the "
        f"paired threshold of `{a}` at that R, and a_{x} behind a_{y} on `{b}` by no more "
        f"than that of `{b}` (paired / unpaired per R: `{a}` {thresholds.by_r(a, rs) or '–'}"
        f"; `{b}` {thresholds.by_r(b, rs) or '–'}; {'; '.join(sources)}). Reproduced if they "
        "agree at every R; partly if at some; not reproduced if at none. Agreement means the "
        "sweep cannot tell the two apart on paired noise, not that they are equal."
    )


def _agreement_lines(a: str, b: str, rows: list[dict]) -> list[str]:
    if not rows:
        return ["The sweep has no R with both metrics trained.", ""]
    x, y = _upper(a, b)
    best = [f"best_{objective_of(c)}" for c in (a, b)]
    return table_lines(
        [
            "R",
            f"best trained α: {x} / {y} target",
            f"a_{y} behind on `{a}` (paired / unpaired threshold)",
            f"a_{x} behind on `{b}` (paired / unpaired threshold)",
            "agree",
        ],
        [
            [
                f"{row['repetitions']:g}",
                f"{fmt_alpha(row[best[0]])} / {fmt_alpha(row[best[1]])}",
            ]
            + [
                f"{fmt(row[f'behind_{c}'], c)} ({fmt(row[f'paired_{c}'], c)} / "
                f"{fmt(row[f'unpaired_{c}'], c)})"
                for c in (a, b)
            ]
            + ["yes" if row["agree"] else "no"]
            for row in rows
        ],
    )


def _posterior(r, side: str) -> str:
    q05, q95 = getattr(r, f"alpha_q05_{side}"), getattr(r, f"alpha_q95_{side}")
    return f"{fmt_alpha(getattr(r, f'alpha_median_{side}'))} [{fmt_alpha(q05)}, {fmt_alpha(q95)}]"


def _gp_overlap_lines(
    a: str, b: str, joined: pd.DataFrame, overlap: pd.Series, decides: bool
) -> list[str]:
    lines = [f"GP posterior of the best α ({CONTEXT[decides]}):", ""]
    return lines + table_lines(
        ["R", f"`{a}`: GP median [90%]", f"`{b}`: GP median [90%]", "intervals overlap"],
        [
            [f"{r.repetitions:g}", _posterior(r, "a"), _posterior(r, "b"), "yes" if o else "no"]
            for r, o in zip(joined.itertuples(), overlap, strict=True)
        ],
    )


def _targets(
    a: str,
    b: str,
    summaries: Mapping[str, pd.DataFrame],
    table: pd.DataFrame | None,
    thresholds: Thresholds,
    undecided: str | None,
) -> Section:
    joined = summaries[a].merge(summaries[b], on="repetitions", suffixes=("_a", "_b"))
    overlap = (joined["alpha_q05_a"] <= joined["alpha_q95_b"]) & (
        joined["alpha_q05_b"] <= joined["alpha_q95_a"]
    )
    rows = agreement(table, a, b, thresholds)
    n, k = len(rows), sum(row["agree"] for row in rows)
    k_unpaired = sum(row["agree_unpaired"] for row in rows)
    by_gp = bool(rows) and not all(row["measured"] for row in rows)
    if by_gp:
        verdict, rule = decide(int(overlap.sum()), len(joined)), GP_TARGETS_RULE + STANDING_IN
    else:
        verdict, rule = decide(k, n), _targets_rule(a, b, rows, thresholds)
    lines = [f"### `{a}` vs `{b}`", ""] + _agreement_lines(a, b, rows)
    lines += _gp_overlap_lines(a, b, joined, overlap, by_gp)
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
    """Section 5, per pair of target metrics of the runs' two objectives with GP summaries
    (their losses, their scores): whether each target's best trained alpha is within paired
    noise of the other's (`table`, `thresholds` as in `best_alpha_falls`), with the GP
    intervals as context. Without `table`, the pair is read from the summaries' metrics."""
    first, second = pair(table if table is not None else pd.DataFrame(columns=list(best_alphas)))
    x, y = first.name.upper(), second.name.upper()
    lines = [f"## 5. Best alpha is similar for {x} and {y} targets", ""]
    lines += [
        f"Claim: the α that is best for {x} performance is close to the best for {y}. Decided "
        "on the trained alphas at the sweep's seed: at each R, how much worse each target's "
        "best α is on the other target, against the paired noise of that R (section 6).",
        "",
    ]
    numbers = {}
    for a, b in target_pairs(first, second):
        if a in best_alphas and b in best_alphas:
            part, numbers[f"{a} vs {b}"] = _targets(a, b, best_alphas, table, thresholds, undecided)
            lines += part
    return lines + ([] if numbers else ["No pair of surfaces was fitted.", ""]), numbers
