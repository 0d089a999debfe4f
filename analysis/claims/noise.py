"""How large noise is: seed spreads, the unpaired thresholds they give, section 6 of
REPORT.md, and standard errors.

What belongs here: the seed SDs of the points trained with several seeds and the unpaired
noise thresholds pooled over them (`noise_limits`: two independent runs); section 6, which
states these and the paired noise of `analysis.claims.paired` and checks the differences
sections 2-3 claim; and the standard errors of a point's mean and of paired differences
over models that sections 3 and 7-9 use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dualsweep.schema import is_loss_metric, is_score_metric

from ..data import compared_columns
from .formatting import Section, fmt, fmt_alpha, table_lines
from .paired import FALLBACK_LOSS_THRESHOLD, NO_PAIRED, Limits, Thresholds, seeded_runs

SEED_RULE = "2√2 × the pooled seed SD"


# -- seed spread of single runs, pooled over the seeded points ---------------------------
def seed_spread(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Points trained with several seeds (`seeded_runs`): n_seeds and the SD (ddof 1) of
    each metric."""
    both = seeded_runs(table, seeds)
    columns = list(compared_columns(both))
    grouped = both.groupby(["alpha", "repetitions"])
    spread = grouped[columns].std(ddof=1)
    spread.insert(0, "n_seeds", grouped.size())
    return spread[spread["n_seeds"] >= 2].reset_index()


def pooled_sd(spread: pd.DataFrame, column: str) -> float:
    """The seed SD pooled over the seeded points: sqrt(sum (n - 1) SD^2 / sum (n - 1))."""
    rows = spread[["n_seeds", column]].dropna()
    dof = rows["n_seeds"] - 1
    return float(np.sqrt((dof * rows[column] ** 2).sum() / dof.sum()))


def noise_limits(spread: pd.DataFrame | None) -> dict[str, tuple[float, str]]:
    """Per metric, the difference seed noise alone reaches between two single-seed runs:
    their difference has SD sqrt(2) x sigma, and 2 of those is 2 sqrt(2) x sigma, with sigma
    the seed SD pooled over the seeded points. A loss without one falls back to 0.05 nats
    where a threshold is read (`paired.pooled_limit`)."""
    limits = {}
    if spread is not None:
        for c in spread.columns:
            if (is_loss_metric(c) or is_score_metric(c)) and spread[c].notna().any():
                limits[c] = (2 * np.sqrt(2) * pooled_sd(spread, c), SEED_RULE)
    return limits


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


def paired(differences: pd.Series) -> tuple[float, float, int]:
    """Mean, paired standard error (SD / sqrt n) and n of per-model differences."""
    d = differences.dropna()
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
    return (float(d.mean()) if len(d) else np.nan), se, len(d)


# -- 6. seed noise -----------------------------------------------------------------------
Claimed = tuple[str, str, Mapping[float, float], bool]  # what, metric, {R: difference}, paired


def _ratio(paired_sd: float, single_sd: float) -> float:
    """paired / (sqrt 2 x single): 1 where no seed effect is shared, 0 where all of it is."""
    return paired_sd / (np.sqrt(2) * single_sd) if single_sd > 0 else np.nan


def _point_lines(spread: pd.DataFrame, measured: Mapping[str, float]) -> list[str]:
    """The seeded points' SDs and the unpaired pooled thresholds they give."""
    lines = table_lines(
        ["α", "R", "seeds", *(f"SD `{c}`" for c in measured)],
        [
            [fmt_alpha(r["alpha"]), f"{r['repetitions']:g}", str(int(r["n_seeds"]))]
            + [fmt(r[c], c) for c in measured]
            for _, r in spread.iterrows()
        ],
    )
    return lines + [
        "Unpaired threshold, pooled: the difference two independent single-seed runs reach by "
        "seed noise alone, 2√2 × the seed SD pooled over these points (sqrt(sum (n − 1) SD² "
        "/ sum (n − 1))): "
        + ", ".join(f"`{c}` {fmt(v, c)}" for c, v in measured.items())
        + ". Section 2 compares a run with itself (its final and best loss) and keeps it.",
        "",
    ]


def _paired_row(thresholds: Thresholds, r) -> list[str]:
    c = r.metric
    paired_value, source = thresholds.paired(c, r.repetitions)
    pooled = " (pooled over R)" if "pooled over R" in source else ""
    return [f"{r.repetitions:g}", f"`{c}`", str(r.alphas)] + [
        f"{fmt(r.single_sd, c)} ({r.single_dof})",
        f"{fmt(r.paired_sd, c)} ({r.paired_dof})",
        f"{_ratio(r.paired_sd, r.single_sd):.2f}" if np.isfinite(r.paired_sd) else "–",
        fmt(paired_value, c) + pooled,
        fmt(thresholds.unpaired(c, r.repetitions)[0], c),
    ]


def _paired_lines(thresholds: Thresholds, sharing: str) -> Section:
    """Per R and metric: single and paired SDs, their ratio, and both thresholds."""
    lines = ["### Paired noise per R", ""] + ([sharing, ""] if sharing else [])
    lines += [
        "The grid's runs at one R share their seed, so sections 3-5 compare two alphas at one "
        "seed: a paired difference. Its SD is measured directly: at each R, the differences "
        "y(a, s) − y(b, s) over the seeds s that two alphas a, b both have, their SD (ddof 1) "
        "pooled over the R's alpha pairs (sqrt(sum (n − 1) var / sum (n − 1))). The paired "
        "threshold is 2 × that SD; the unpaired one 2√2 × the single-run SD of the R (each "
        "alpha's SD over seeds, pooled over the R's alphas). paired / (√2 × single) is 1 where "
        "the seed's effect is not shared at all and 0 where all of it is. Degrees of freedom "
        "in brackets (a paired SD's sum over pairs that share alphas, so they overstate its "
        "information); an R without a paired estimate takes the paired SD pooled over R.",
        "",
    ]
    headers = ["R", "metric", "alphas with ≥ 2 seeds", "single SD", "paired SD"]
    headers += ["paired / (√2 × single)", "paired threshold", "unpaired threshold"]
    rows = thresholds.spread.sort_values(["repetitions"], kind="stable")
    lines += table_lines(headers, [_paired_row(thresholds, r) for r in rows.itertuples()])
    pooled = {
        c: {"single_sd": p.single_sd, "paired_sd": p.paired_sd}
        | {"ratio": _ratio(p.paired_sd, p.single_sd)}
        for c, p in thresholds.pooled.iterrows()
        if np.isfinite(p.paired_sd)
    }
    lines += [
        "Pooled over R: "
        + "; ".join(
            f"`{c}` single {fmt(v['single_sd'], c)}, paired {fmt(v['paired_sd'], c)} "
            f"(ratio {v['ratio']:.2f})"
            for c, v in pooled.items()
        )
        + ". A ratio near 1 means two alphas' runs at one seed differ almost as much as "
        "independent runs (the seed's effect on initialisation, batches and masks is hardly "
        "shared) and pairing narrows the thresholds by about 1 − ratio; near 0, pairing "
        "removes most of the noise.",
        "",
    ]
    return lines, pooled


def _claim_lines(
    claims: Sequence[Claimed], thresholds: Thresholds, measured: Mapping[str, float]
) -> Section:
    """Each difference sections 2-3 claim, against the threshold of its R and kind."""
    lines = [
        "Differences sections 2-3 claim, against the seed-noise thresholds of their R (for "
        "scores, section 3 also asks 2 evaluation standard errors of the margin):",
        "",
    ]
    exceeding = {}
    for what, column, differences, is_paired in claims:
        bars = {r: thresholds.paired(column, r)[0] for r in differences} if is_paired else {}
        if bars and np.isfinite(list(bars.values())).all():
            kind = "the paired threshold of its R"
            kind += "" if thresholds.measured_for(column) else f" ({NO_PAIRED}: unpaired, pooled)"
        elif column in measured:
            bars = dict.fromkeys(differences, measured[column])
            kind = f"{fmt(measured[column], column)} (unpaired, pooled)"
        else:
            continue
        above = [r for r, d in differences.items() if d > bars[r]]
        exceeding[(what, column)] = above
        values = ", ".join(
            f"R={r:g}: {fmt(d, column, signed=True)} ({fmt(bars[r], column)})"
            for r, d in differences.items()
        )
        where = ", ".join(f"{r:g}" for r in above) or "none"
        lines.append(
            f"- {what} (`{column}`): exceeds {kind} at {len(above)} of {len(differences)} R "
            f"(R = {where}); {values}"
        )
    return lines + [""], exceeding


def seed_noise(
    spread: pd.DataFrame | None,
    limits: Limits,
    claims: Sequence[Claimed],
    seeds_path: str,
    thresholds: Thresholds | None = None,
    sharing: str = "",
) -> Section:
    """Section 6: the seed SDs, the thresholds from them, and which claimed differences pass.

    `claims`: (what, metric, {R: difference}, paired) for each difference sections 2-3
    state; paired ones (two alphas at one seed) meet the paired threshold of their R, the
    others (a run against itself) the unpaired pooled one. `thresholds`: the paired and
    unpaired noise per R; `sharing`: what the runs at one seed share across alphas
    (`common_random_numbers`), stated before the paired table."""
    lines = ["## 6. Seed noise", ""]
    if spread is None or spread.empty:
        lines += [
            f"No seeds sweep with repeated points (`{seeds_path}`): losses use "
            f"{FALLBACK_LOSS_THRESHOLD} nats as the noise threshold, scores their evaluation "
            "standard errors only; without seeds no paired SD is measured, so sections 3-5 "
            "use these in place of paired thresholds.",
            "",
        ]
        return lines, {"available": False}
    thresholds = thresholds if thresholds is not None else Thresholds(None, limits)
    measured = {c: v for c, (v, source) in limits.items() if source == SEED_RULE}
    lines += _point_lines(spread, measured)
    stated: dict = {"available": True, "thresholds": measured}
    if thresholds.measured:
        part, stated["paired"] = _paired_lines(thresholds, sharing)
        lines += part
    else:
        lines += [sharing, ""] if sharing else []
        lines += [
            "No paired SD measured: no R has two alphas with two or more seeds each. "
            "Sections 3-5 use the unpaired pooled thresholds above in place of paired ones.",
            "",
        ]
    part, stated["exceeding"] = _claim_lines(claims, thresholds, measured)
    return lines + part, stated
