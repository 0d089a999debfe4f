"""How large noise is: seed spreads, the thresholds they give, and standard errors.

What belongs here: the seed SDs of the points trained with several seeds, the noise
thresholds the claim rules compare differences with (section 6 of REPORT.md states them
and checks the differences sections 2-3 claim), and the standard errors of a point's mean
and of paired differences that sections 3 and 7-9 use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .formatting import LOSSES, SCORES, Section, fmt, fmt_alpha, table_lines

FALLBACK_LOSS_THRESHOLD = 0.05  # nats: the loss noise threshold when no seeds sweep exists
Limits = Mapping[str, tuple[float, str]]  # metric -> (noise threshold, where it came from)


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
