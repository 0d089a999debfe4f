"""The paper's claims as rules: each takes the sweep's numbers and says whether it holds.

What belongs here: one pure function per claim section of REPORT.md (tables in; Markdown
lines and a dict of the numbers it states out), with its verdict rule written in code and
printed beside the verdict, and the seed-noise thresholds those rules use. Assembling the
report and writing it belong to `analysis.report`.

Verdicts: "reproduced", "partly", "not reproduced", or "not tested" where the sweep lacks
the runs a rule needs; the allocation comparison (section 7) says which rule is better where,
and the evaluation-cost targets (section 10) are "met", "not met" or "not recorded". Values of a point trained with several seeds are their mean, as in
`analysis.tables.main_table`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.data import metric
from analysis.tables import alpha_label, main_table

LOSSES = ("final_held_out_ar_loss", "final_held_out_md_elbo")
SCORES = ("score_ar", "score_md", "score_prefix")
FALLBACK_LOSS_THRESHOLD = 0.05  # nats: the loss noise threshold when no seeds sweep exists
PAPER_ALPHA_R = 16  # the paper's heavy-repetition rule: alpha x R ~ 16 at the optimum
# The paper's 470M table, downstream average: (R, dual model = best mix, pure AR).
PAPER_470M = ((1, 26.9, 26.1), (32, 23.9, 22.0), (128, 19.1, 9.4))
EVAL_SHARE_TARGET = 15.0  # %: evaluation should take at most this share of a trial's time
SCORE_STDERR_TARGET = 2.0  # points: target for the task-averaged scores' standard error
TARGET_PAIRS = (("final_held_out_ar_loss", "final_held_out_md_elbo"), ("score_ar", "score_md"))

Section = tuple[list[str], dict]
Limits = Mapping[str, tuple[float, str]]  # metric -> (noise threshold, where it came from)


# -- formatting ------------------------------------------------------------------------
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


# -- seed noise ------------------------------------------------------------------------
def seed_spread(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Points trained with several seeds: n_seeds and the SD (ddof 1) of each metric.

    The main sweep's runs at a seeds-sweep point join it (they are its seed 0); a run in both
    tables, or a seed trained twice, counts once, the main sweep's copy first.
    """
    points = seeds[["alpha", "repetitions"]].drop_duplicates()
    both = pd.concat([table.merge(points, on=["alpha", "repetitions"]), seeds], ignore_index=True)
    both = both.drop_duplicates("run_key").drop_duplicates(["alpha", "repetitions", "seed"])
    columns = [c for c in (*LOSSES, *SCORES) if c in both]
    grouped = both.groupby(["alpha", "repetitions"])
    spread = grouped[columns].std(ddof=1)
    spread.insert(0, "n_seeds", grouped.size())
    return spread[spread["n_seeds"] >= 2].reset_index()


SEED_RULE = "2√2 × the pooled seed SD"


def pooled_sd(spread: pd.DataFrame, column: str) -> float:
    """The seed SD pooled over the seeded points: sqrt(sum (n - 1) SD^2 / sum (n - 1))."""
    rows = spread[["n_seeds", column]].dropna()
    dof = rows["n_seeds"] - 1
    return float(np.sqrt((dof * rows[column] ** 2).sum() / dof.sum()))


def noise_limits(spread: pd.DataFrame | None) -> dict[str, tuple[float, str]]:
    """Per metric, the difference seed noise alone reaches between two single-seed runs:
    their difference has SD sqrt(2) x sigma, and 2 of those is 2 sqrt(2) x sigma, with sigma
    the seed SD pooled over the seeded points. Losses without one fall back to 0.05 nats."""
    limits = {}
    if spread is not None:
        for c in (*LOSSES, *SCORES):
            if c in spread and spread[c].notna().any():
                limits[c] = (2 * np.sqrt(2) * pooled_sd(spread, c), SEED_RULE)
    for c in LOSSES:
        limits.setdefault(c, (FALLBACK_LOSS_THRESHOLD, "fallback: no seed SD measured"))
    return limits


def seed_noise(
    spread: pd.DataFrame | None,
    limits: Limits,
    claims: Sequence[tuple[str, str, Mapping[float, float]]],
    seeds_path: str,
) -> Section:
    """Section 6: the seed SDs, the thresholds from them, and which claimed differences pass.

    `claims`: (what, metric, {R: difference}) for each difference sections 2-3 state.
    """
    lines = ["## 6. Seed noise", ""]
    if spread is None or spread.empty:
        lines += [
            f"No seeds sweep with repeated points (`{seeds_path}`): losses use "
            f"{FALLBACK_LOSS_THRESHOLD} nats as the noise threshold, scores their evaluation "
            "standard errors only.",
            "",
        ]
        return lines, {"available": False}
    measured = {c: v for c, (v, source) in limits.items() if source == SEED_RULE}
    lines += table_lines(
        ["α", "R", "seeds", *(f"SD `{c}`" for c in measured)],
        [
            [fmt_alpha(r["alpha"]), f"{r['repetitions']:g}", str(int(r["n_seeds"]))]
            + [fmt(r[c], c) for c in measured]
            for _, r in spread.iterrows()
        ],
    )
    lines += [
        "Threshold: the difference two single-seed runs reach by seed noise alone, "
        "2√2 × the seed SD pooled over these points (sqrt(sum (n − 1) SD² / sum (n − 1))): "
        + ", ".join(f"`{c}` {fmt(v, c)}" for c, v in measured.items())
        + ".",
        "",
    ]
    exceeding = {}
    for what, column, differences in claims:
        if column not in measured:
            continue
        above = [r for r, d in differences.items() if d > measured[column]]
        exceeding[(what, column)] = above
        values = ", ".join(
            f"R={r:g}: {fmt(d, column, signed=True)}" for r, d in differences.items()
        )
        where = ", ".join(f"{r:g}" for r in above) or "none"
        lines.append(
            f"- {what} (`{column}`): exceeds {fmt(measured[column], column)} at "
            f"{len(above)} of {len(differences)} R (R = {where}); {values}"
        )
    return lines + [""], {"available": True, "thresholds": measured, "exceeding": exceeding}


# -- 2. pure AR overfits ---------------------------------------------------------------
def overfitting(table: pd.DataFrame, limits: Limits) -> Section:
    """Section 2: pure AR's final vs best held-out loss per R."""
    c = "final_held_out_ar_loss"
    threshold, source = limits[c]
    ar = table[table["alpha"] == 1].groupby("repetitions")[[c, "best_held_out_ar_loss"]].mean()
    ar = ar.dropna()
    lines = ["## 2. Pure AR overfits with repetition", ""]
    lines += ["Claim: on repeated data, pure AR's held-out loss ends above its minimum.", ""]
    rule = (
        f"reproduced if, at the highest R, final minus best held-out AR loss exceeds the "
        f"noise threshold ({threshold:.3f} nats, {source}) and the final loss exceeds the "
        f"final loss at the lowest R; partly if one of the two holds."
    )
    if len(ar) < 2:
        lines += ["Pure AR was trained at fewer than two R.", ""]
        return lines + verdict_lines("not tested", rule), {"verdict": "not tested"}
    low, high = ar.index.min(), ar.index.max()
    gap = ar[c] - ar["best_held_out_ar_loss"]
    rise = ar[c] - ar.loc[low, c]
    lines += table_lines(
        ["R", "final", "best", "final − best", f"final − final at R={low:g}"],
        [
            [f"{r:g}", fmt(row[c], c), fmt(row["best_held_out_ar_loss"], c)]
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
    verdict = decide(overfits + worse, 2)
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
def point_stderr(table: pd.DataFrame, column: str) -> dict[tuple[float, float], float]:
    """(R, alpha) -> standard error of the point's seed mean, sqrt(sum of squares) / seeds."""
    se = f"{column}_stderr"
    if se not in table:
        return {}
    return (
        table.groupby(["repetitions", "alpha"])[se]
        .apply(lambda s: float(np.sqrt((s**2).sum()) / len(s)) if s.notna().all() else np.nan)
        .to_dict()
    )


def _mix_row(r, lower_is_better: bool, stderr: dict, bar: float | None) -> dict:
    """One R: the margin of the best mix over the better pure objective (positive: mix better)."""
    pick = min if lower_is_better else max
    better_alpha = pick((1.0, 0.0), key=lambda a: r.pure_ar if a == 1.0 else r.pure_md)
    # Both pure objectives must be trained at this R; otherwise the R is not compared.
    both = np.isfinite(r.pure_ar) and np.isfinite(r.pure_md)
    better = (r.pure_ar if better_alpha == 1.0 else r.pure_md) if both else np.nan
    margin = (better - r.best_mix) if lower_is_better else (r.best_mix - better)
    se = float(
        np.hypot(
            stderr.get((r.repetitions, r.best_mix_alpha), np.nan),
            stderr.get((r.repetitions, better_alpha), np.nan),
        )
    )
    compared = bool(np.isfinite(margin))
    return {
        "repetitions": r.repetitions,
        "best_mix_alpha": r.best_mix_alpha,
        "best_mix": r.best_mix,
        "pure_ar": r.pure_ar,
        "pure_md": r.pure_md,
        "margin": margin,
        "margin_stderr": se,
        "compared": compared,
        "wins": compared and bool(margin > 0),
        "significant": compared and bool(margin > (2 * se if bar is None else bar)),
    }


def _mix_metric(table: pd.DataFrame, column: str, limits: Limits) -> Section:
    m = metric(table, column)
    score = column.startswith("score_")
    stderr = point_stderr(table, column) if score else {}
    threshold, source = limits.get(column, (np.nan, ""))
    rows = [
        _mix_row(r, m.lower_is_better, stderr, None if score else threshold)
        for r in main_table(table, [m]).itertuples()
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
    lines += table_lines(
        ["R", "best mix α", "best mix", "pure AR", "pure MD", "margin", "decided"],
        [
            [str(row["repetitions"]), fmt_alpha(row["best_mix_alpha"])]
            + [cell(row, row["best_mix_alpha"], row["best_mix"]), cell(row, 1.0, row["pure_ar"])]
            + [cell(row, 0.0, row["pure_md"])]
            + [fmt_se(row["margin"], row["margin_stderr"], column, signed=True), decided(row)]
            for row in rows
        ],
    )
    compared = [row for row in rows if row["compared"]]
    wins = sum(row["wins"] for row in compared)
    significant = sum(row["significant"] for row in compared)
    noise = "2 standard errors of the margin" if score else f"{threshold:.3f} nats ({source})"
    lines += [
        f"The best mix wins at {wins} of {len(compared)} R with both pure objectives trained, "
        f"beyond {noise} at {significant}.",
        "",
    ]
    if not compared:
        verdict = "not tested"
    elif significant == len(compared):  # beyond noise implies a win
        verdict = "reproduced"
    else:
        verdict = "partly" if wins else "not reproduced"
    rule = (
        f"reproduced if the best mix beats the better pure objective at every compared R by "
        f"more than {noise}; partly if it wins at some R; not reproduced if at none."
    )
    numbers = {"rows": rows, "compared": len(compared), "wins": wins}
    numbers |= {"significant": significant, "verdict": verdict}
    return lines + verdict_lines(verdict, rule), numbers


def mix_beats_pure(table: pd.DataFrame, limits: Limits) -> Section:
    """Section 3: per metric and R, the best trained mix against both pure objectives."""
    lines = ["## 3. A mix beats both pure objectives at every R", ""]
    lines += [
        "Claim: at every R some mix 0 < α < 1 is better than pure AR and pure MD. Only "
        "trained points count. The best of several mixes is picked on the same numbers, "
        "so its margin leans optimistic.",
        "",
    ]
    numbers = {}
    for column in (*LOSSES, *SCORES):
        if column in table and table[column].notna().any():
            part, numbers[column] = _mix_metric(table, column, limits)
            lines += part
    return lines, numbers


# -- 4. best alpha falls with R --------------------------------------------------------
def _falls(column: str, summary: pd.DataFrame) -> Section:
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
    low, high, top = s.iloc[0], s.iloc[-1], s.tail(2)
    falls = bool(high.alpha_median < low.alpha_median)
    apart = bool(high.alpha_q95 < low.alpha_q05)
    verdict = ("reproduced" if apart else "partly") if falls else "not reproduced"
    at_top = ", ".join(
        f"R={r.repetitions:g}: {r.ar_repetitions_median:.3g} "
        f"[{r.alpha_q05 * r.repetitions:.3g}, {r.alpha_q95 * r.repetitions:.3g}]"
        for r in top.itertuples()
    )
    lines += [f"α·R at the optimum [90%], highest R: {at_top} (paper: ~{PAPER_ALPHA_R}).", ""]
    rule = (
        "reproduced if the posterior median at the highest R is below the one at the lowest R "
        "and their 90% intervals do not overlap; partly if only the medians fall."
    )
    numbers = {"median_lowest_r": float(low.alpha_median)}
    numbers |= {"median_highest_r": float(high.alpha_median), "verdict": verdict}
    numbers["alpha_r"] = dict(zip(top["repetitions"], top["ar_repetitions_median"], strict=True))
    return lines + verdict_lines(verdict, rule), numbers


def best_alpha_falls(best_alphas: Mapping[str, pd.DataFrame]) -> Section:
    """Section 4: the GP posterior of the best alpha at the trained R, per metric."""
    lines = ["## 4. Best alpha falls as R grows", ""]
    lines += [
        "Claim: the best α falls with R, to α·R ≈ 16 under heavy repetition. From the GP "
        "surface's posterior of the best α at each trained R (`tables/best_alpha.md`).",
        "",
    ]
    numbers = {}
    for column, summary in best_alphas.items():
        part, numbers[column] = _falls(column, summary)
        lines += part
    return lines + ([] if numbers else ["No surface was fitted.", ""]), numbers


# -- 5. AR- and MD-targeted best alpha -------------------------------------------------
def _targets(ar: str, md: str, summaries: Mapping[str, pd.DataFrame]) -> Section:
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
    verdict = decide(k, n)
    rule = (
        "reproduced if the 90% intervals overlap at every trained R; partly if at some; not "
        "reproduced if at none. Overlap means the sweep cannot tell the two apart, not that "
        "they are equal."
    )
    lines += [f"The intervals overlap at {k} of {n} R.", ""]
    return lines + verdict_lines(verdict, rule), {"overlap": k, "compared": n, "verdict": verdict}


def ar_vs_md_targets(best_alphas: Mapping[str, pd.DataFrame]) -> Section:
    """Section 5: the best alpha for an AR-targeted vs the matching MD-targeted metric."""
    lines = ["## 5. Best alpha is similar for AR and MD targets", ""]
    lines += ["Claim: the α that is best for AR performance is close to the best for MD.", ""]
    numbers = {}
    for ar, md in TARGET_PAIRS:
        if ar in best_alphas and md in best_alphas:
            part, numbers[f"{ar} vs {md}"] = _targets(ar, md, best_alphas)
            lines += part
    return lines + ([] if numbers else ["No pair of surfaces was fitted.", ""]), numbers


# -- 7. mix allocation: per step vs per sequence ---------------------------------------
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
    better = ("step" if step_lower == (column in LOSSES) else "sequence") if beyond else None
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
    lower = column in LOSSES
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
    for column in (*LOSSES, *SCORES):
        if column in step and column in sequence and sequence[column].notna().any():
            part, numbers["metrics"][column] = _allocation_metric(step, sequence, column)
            lines += part
    lines += [f"The `{name}` sweep's runs use `mix_allocation`: {used}.", ""]
    return lines, numbers | {"used": used}


# -- 8. prefix-LM vs AR scoring --------------------------------------------------------
def paired(differences: pd.Series) -> tuple[float, float, int]:
    """Mean, paired standard error (SD / sqrt n) and n of per-model differences."""
    d = differences.dropna()
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
    return (float(d.mean()) if len(d) else np.nan), se, len(d)


def prefix_vs_ar(table: pd.DataFrame) -> Section:
    """Section 8: score_prefix − score_ar over models, per R, per alpha group and overall."""
    lines = ["## 8. Prefix-LM vs AR scoring", ""]
    if not {"score_prefix", "score_ar"} <= set(table.columns):
        return lines + ["Not evaluated: the sweep has no `prefix` and `ar` scores.", ""], {}
    d = table["score_prefix"] - table["score_ar"]
    group = np.select([table["alpha"] == 1, table["alpha"] == 0], ["pure AR", "pure MD"], "mixes")
    rows = [
        (f"R={r:g}", paired(d[table["repetitions"] == r]))
        for r in sorted(set(table["repetitions"]))
    ]
    rows += [(g, paired(d[group == g])) for g in ("pure AR", "mixes", "pure MD")]
    rows.append(("all models", paired(d)))
    lines += [
        "Mean of `score_prefix − score_ar` over trained models (each run once), ± the paired "
        "standard error (SD of the differences / sqrt(n)).",
        "",
    ]
    lines += table_lines(
        ["models", "n", "prefix − AR", "beyond 2 SE"],
        [
            [label, str(n), fmt_se(mean, se, "score_ar", signed=True)]
            + ["yes" if abs(mean) > 2 * se else "no"]
            for label, (mean, se, n) in rows
        ],
    )
    return lines, {label: {"mean": mean, "stderr": se, "n": n} for label, (mean, se, n) in rows}


# -- 9. the paper's numbers ------------------------------------------------------------
def paper_numbers(table: pd.DataFrame) -> Section:
    """Section 9: the paper's 470M downstream averages beside our best mix vs pure AR."""
    lines = ["## 9. The paper's numbers beside ours", ""]
    if "score_ar" not in table:
        return lines + ["Not evaluated: the sweep has no `score_ar`.", ""], {}
    main = main_table(table, [metric(table, "score_ar")]).dropna(subset=["best_mix", "pure_ar"])
    if main.empty:
        return lines + ["No R has both a trained mix and pure AR.", ""], {}
    stderr, trained = point_stderr(table, "score_ar"), main.set_index("repetitions")
    rows, cells = [], []
    for paper_r, dual, ar in PAPER_470M:
        r = min(trained.index, key=lambda x: (abs(np.log2(x / paper_r)), x))
        mix, alpha, pure = trained.loc[r, ["best_mix", "best_mix_alpha", "pure_ar"]]
        se = float(np.hypot(stderr.get((r, alpha), np.nan), stderr.get((r, 1.0), np.nan)))
        rows.append({"paper_r": paper_r, "r": int(r), "gap": mix - pure, "stderr": se})
        cells.append(
            [str(paper_r), f"{dual:.1f}", f"{ar:.1f}", f"{dual - ar:+.1f}", str(r)]
            + [f"{fmt(mix, 'score_ar')} (α {fmt_alpha(alpha)})", fmt(pure, "score_ar")]
            + [fmt_se(mix - pure, se, "score_ar", signed=True)]
        )
    lines += [
        "Different scale, not directly comparable: the paper's numbers are its 470M models' "
        "downstream average; ours are `score_ar` (normalised multiple-choice score, AR scoring) "
        "of this sweep's models at the nearest trained R. Compare the sign of the gap and how "
        "it grows with R.",
        "",
    ]
    headers = ["paper R", "paper dual", "paper AR", "paper gap", "our R", "our best mix"]
    lines += table_lines([*headers, "our pure AR", "our gap"], cells)
    positive = sum(row["gap"] > 0 for row in rows)
    gaps = list({row["r"]: row["gap"] for row in rows}.values())  # one per distinct R
    grows = len(gaps) > 1 and all(b > a for a, b in zip(gaps, gaps[1:], strict=False))
    lines += [
        f"Sign: our gap is positive, as the paper's, in {positive} of {len(rows)} rows. "
        f"Grows with R (over the distinct R used): {'yes' if grows else 'no'}; the paper's "
        "grows from +0.8 to +1.9 to +9.7.",
        "",
    ]
    return lines, {"rows": rows, "positive": positive, "grows": grows}


# -- 10. evaluation cost ---------------------------------------------------------------
def scoring_time(evals: pd.DataFrame) -> pd.Series:
    """Per run_key, the multiple-choice scoring time summed over its rows (NaN if any is)."""
    return evals.groupby("run_key")["scoring_time_s"].agg(
        lambda s: float(s.sum()) if s.notna().all() else np.nan
    )


def evaluation_share(runs: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Per trial (index run_key) with every time recorded: the evaluation's share of its time.

    Evaluation time = `held_out_eval_time_s` (inside `wall_time_s`) + the sum of the trial's
    `scoring_time_s` (multiple-choice scoring, after `wall_time_s`); trial time =
    `wall_time_s` + that sum; `share_pct` = 100 × evaluation / trial time.
    """
    needed = {"run_key", "wall_time_s", "held_out_eval_time_s"}
    if not needed <= set(runs.columns) or not {"run_key", "scoring_time_s"} <= set(evals.columns):
        return pd.DataFrame(columns=["eval_time_s", "trial_time_s", "share_pct"])
    scoring = scoring_time(evals)
    t = runs.set_index("run_key")[["wall_time_s", "held_out_eval_time_s"]].apply(
        pd.to_numeric, errors="coerce"
    )
    t = t.join(scoring.rename("scoring_time_s")).dropna()
    t["eval_time_s"] = t["held_out_eval_time_s"] + t["scoring_time_s"]
    t["trial_time_s"] = t["wall_time_s"] + t["scoring_time_s"]
    t["share_pct"] = 100 * t["eval_time_s"] / t["trial_time_s"]
    return t


def _eval_time(runs: pd.DataFrame, evals: pd.DataFrame) -> Section:
    shares = evaluation_share(runs, evals)
    lines = ["### Evaluation time", ""]
    rule = (
        f"met if the median share of evaluation in a trial's time is at most "
        f"{EVAL_SHARE_TARGET:g}%; not met otherwise (the max is stated beside it)."
    )
    if shares.empty:
        lines += [
            "Not recorded: needs `held_out_eval_time_s` in runs.parquet and `scoring_time_s` "
            "in evals.parquet.",
            "",
        ]
        return lines + verdict_lines("not recorded", rule), {"verdict": "not recorded"}
    lines += [
        "Evaluation time per trial = `held_out_eval_time_s` (held-out curve evaluations, inside "
        "`wall_time_s`) + the sum of its `scoring_time_s` (multiple-choice scoring, after "
        "`wall_time_s`); trial time = `wall_time_s` + that sum. Over "
        f"{len(shares)} of {len(runs)} finished trials"
        + (" (the others lack a recorded time):" if len(shares) < len(runs) else ":"),
        "",
    ]
    quantities = (
        ("evaluation share of trial time", "share_pct", "%"),
        ("evaluation time", "eval_time_s", " s"),
        ("held-out curve evaluations", "held_out_eval_time_s", " s"),
        ("multiple-choice scoring", "scoring_time_s", " s"),
        ("trial time", "trial_time_s", " s"),
    )
    lines += table_lines(
        ["per trial", "median", "min", "max"],
        [
            [label] + [f"{getattr(shares[c], f)():.1f}{unit}" for f in ("median", "min", "max")]
            for label, c, unit in quantities
        ],
    )
    median, high = float(shares["share_pct"].median()), float(shares["share_pct"].max())
    verdict = "met" if median <= EVAL_SHARE_TARGET else "not met"
    lines += [
        f"Target: at most {EVAL_SHARE_TARGET:g}% of a trial's time. Median share {median:.1f}%, "
        f"max {high:.1f}% ({'within' if high <= EVAL_SHARE_TARGET else 'above'} the target).",
        "",
    ]
    numbers = {
        "trials": len(shares),
        "share_pct": shares["share_pct"].to_dict(),
        "share_median": median,
        "share_min": float(shares["share_pct"].min()),
        "share_max": high,
        "eval_time_median_s": float(shares["eval_time_s"].median()),
        "verdict": verdict,
    }
    return lines + verdict_lines(verdict, rule), numbers


def _score_stderr(table: pd.DataFrame) -> Section:
    lines = ["### Standard error of the task-averaged scores", ""]
    rule = (
        f"met if the mean standard error over trials is at most {SCORE_STDERR_TARGET:g} points "
        "in every mode; not met otherwise."
    )
    found = {
        m.group(1): table[c].dropna()
        for c in table.columns
        if (m := re.fullmatch(r"score_([a-z]+)_stderr", c)) and table[c].notna().any()
    }
    if not found:
        lines += ["Not recorded: the sweep has no scores with standard errors.", ""]
        return lines + verdict_lines("not recorded", rule), {"verdict": "not recorded"}
    lines += [
        "`score_<mode>_stderr`: the bootstrap error of each task's score, combined over tasks "
        "(sqrt(sum of squares) / tasks); target about 2 points or less.",
        "",
    ]
    lines += table_lines(
        ["mode", "trials", "mean SE", "max SE"],
        [[mode, str(len(v)), f"{v.mean():.2f}", f"{v.max():.2f}"] for mode, v in found.items()],
    )
    means = {mode: float(v.mean()) for mode, v in found.items()}
    verdict = "met" if all(v <= SCORE_STDERR_TARGET for v in means.values()) else "not met"
    return lines + verdict_lines(verdict, rule), {"stderr": means, "verdict": verdict}


def evaluation_cost(runs: pd.DataFrame, evals: pd.DataFrame, table: pd.DataFrame) -> Section:
    """Section 10: evaluation's share of each trial's time and the scores' standard errors.

    `runs`: the finished trials' rows of runs.parquet; `evals`: evals.parquet; `table`: their
    trial table.
    """
    time_lines, time = _eval_time(runs, evals)
    stderr_lines, stderr = _score_stderr(table)
    lines = ["## 10. Evaluation cost", "", *time_lines, *stderr_lines]
    return lines, {"time": time, "stderr": stderr}
