"""How large noise is: seed spreads, the thresholds they give, and standard errors.

What belongs here: the seed SDs of the points trained with several seeds and the noise
thresholds the claim rules compare differences with, unpaired (two independent runs:
`noise_limits`, pooled over the seeded points) and paired (two alphas at one seed, as the
grid's runs are: `paired_spread`, per R, and `Thresholds`, which the rules ask); what the
runs at one seed share (`common_random_numbers`); section 6 of REPORT.md, which states them
and checks the differences sections 2-3 claim; and the standard errors of a point's mean
and of paired differences over models that sections 3 and 7-9 use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .formatting import LOSSES, SCORES, Section, fmt, fmt_alpha, table_lines

FALLBACK_LOSS_THRESHOLD = 0.05  # nats: the loss noise threshold when no seeds sweep exists
Limits = Mapping[str, tuple[float, str]]  # metric -> (noise threshold, where it came from)
SEED_RULE = "2√2 × the pooled seed SD"
PAIRED_RULE = "2 × the paired SD"
UNPAIRED_RULE = "2√2 × the single-run SD"
NO_PAIRED = "no paired SD measured"


# -- seed spread of single runs, pooled over the seeded points ---------------------------
def seeded_runs(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Every run at a point of the seeds sweep: the main sweep's (its seed 0) and the seeds
    sweep's. A run in both tables, or a seed trained twice, counts once, the main sweep's
    copy first."""
    points = seeds[["alpha", "repetitions"]].drop_duplicates()
    both = pd.concat([table.merge(points, on=["alpha", "repetitions"]), seeds], ignore_index=True)
    return both.drop_duplicates("run_key").drop_duplicates(["alpha", "repetitions", "seed"])


def seed_spread(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Points trained with several seeds (`seeded_runs`): n_seeds and the SD (ddof 1) of
    each metric."""
    both = seeded_runs(table, seeds)
    columns = [c for c in (*LOSSES, *SCORES) if c in both]
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
    the seed SD pooled over the seeded points. Losses without one fall back to 0.05 nats."""
    limits = {}
    if spread is not None:
        for c in (*LOSSES, *SCORES):
            if c in spread and spread[c].notna().any():
                limits[c] = (2 * np.sqrt(2) * pooled_sd(spread, c), SEED_RULE)
    for c in LOSSES:
        limits.setdefault(c, (FALLBACK_LOSS_THRESHOLD, "fallback: no seed SD measured"))
    return limits


# -- paired noise: two alphas at one seed --------------------------------------------------
SPREAD_COLUMNS = (
    "repetitions",
    "metric",
    "alphas",
    "single_sd",
    "single_dof",
    "paired_sd",
    "paired_dof",
)


def _pool(parts: Iterable[tuple[int, float]]) -> tuple[float, int]:
    """sqrt(sum dof x variance / sum dof) and sum dof, over (dof, variance) parts."""
    parts = [(d, v) for d, v in parts if d > 0 and np.isfinite(v)]
    dof = sum(d for d, _ in parts)
    return (float(np.sqrt(sum(d * v for d, v in parts) / dof)), dof) if dof else (np.nan, 0)


def _single_parts(wide: pd.DataFrame) -> list[tuple[int, float]]:
    """(dof, variance over seeds) of each alpha (a column of seed x alpha values)."""
    return [(int(v.count()) - 1, float(v.var(ddof=1))) for _, v in wide.items() if v.count() >= 2]


def _pair_parts(wide: pd.DataFrame) -> list[tuple[int, float]]:
    """(dof, variance over seeds) of y(a, s) - y(b, s) for each pair of alphas a, b, over
    the seeds s both have."""
    parts = []
    for a, b in combinations(wide.columns, 2):
        d = (wide[a] - wide[b]).dropna()
        if len(d) >= 2:
            parts.append((len(d) - 1, float(d.var(ddof=1))))
    return parts


def paired_spread(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Per R and metric, from the runs at the seeds sweep's points (`seeded_runs`): the SD of
    a single run (each seeded alpha's SD over seeds, pooled over the R's alphas) and of a
    paired difference y(a, s) - y(b, s) between two alphas at one seed (its SD over seeds,
    pooled over the R's alpha pairs), each with its degrees of freedom; `alphas` counts the
    alphas with two or more seeds. A seed's effect that every alpha shares cancels in the
    paired difference; with none shared, its SD is sqrt(2) x the single run's."""
    runs = seeded_runs(table, seeds)
    rows = []
    for r, at_r in runs.groupby("repetitions"):
        for column in (c for c in (*LOSSES, *SCORES) if c in runs):
            wide = at_r.pivot_table(index="seed", columns="alpha", values=column)
            single, single_dof = _pool(_single_parts(wide))
            paired_sd, paired_dof = _pool(_pair_parts(wide))
            rows.append(
                {
                    "repetitions": float(r),
                    "metric": column,
                    "alphas": int((wide.count() >= 2).sum()),
                    "single_sd": single,
                    "single_dof": single_dof,
                    "paired_sd": paired_sd,
                    "paired_dof": paired_dof,
                }
            )
    return pd.DataFrame(rows, columns=list(SPREAD_COLUMNS))


def pooled_over_r(spread: pd.DataFrame) -> pd.DataFrame:
    """Per metric, `paired_spread`'s single and paired SDs pooled over R (weighted by their
    degrees of freedom, as within an R), with the summed degrees of freedom."""
    rows = []
    for column, at in spread.groupby("metric", sort=False):
        row = {"metric": column}
        for kind in ("single", "paired"):
            sd, dof = _pool(zip(at[f"{kind}_dof"].astype(int), at[f"{kind}_sd"] ** 2, strict=True))
            row |= {f"{kind}_sd": sd, f"{kind}_dof": dof}
        rows.append(row)
    columns = ["metric", "single_sd", "single_dof", "paired_sd", "paired_dof"]
    return pd.DataFrame(rows, columns=columns).set_index("metric")


class Thresholds:
    """The noise a difference between two runs at one R must exceed to count.

    Paired (two alphas at one seed, as the grid's runs are): 2 x the paired SD measured at
    that R; at an R without a paired estimate, the paired SD pooled over R. Unpaired (two
    independent runs): 2 sqrt(2) x the single-run SD, likewise. Where no paired SD is
    measured at all (no seeds sweep, or one seed per alpha at every R), the paired threshold
    is the unpaired pooled one of `noise_limits` (for losses without seeds, 0.05 nats), and
    its source says so; NaN where not even that exists (scores without seeds)."""

    def __init__(self, spread: pd.DataFrame | None, limits: Limits):
        self.spread = spread if spread is not None else pd.DataFrame(columns=SPREAD_COLUMNS)
        self.limits = limits
        self.pooled = pooled_over_r(self.spread)

    @property
    def measured(self) -> bool:
        """Whether a paired SD was measured for any metric at any R."""
        return any(self.measured_for(c) for c in self.pooled.index)

    def measured_for(self, column: str) -> bool:
        """Whether a paired SD of `column` was measured at some R."""
        return column in self.pooled.index and bool(
            np.isfinite(self.pooled.loc[column, "paired_sd"])
        )

    def measured_at(self, column: str, r: float) -> bool:
        """Whether the paired SD of `column` was measured at R = `r` itself."""
        at = self.spread[(self.spread["metric"] == column) & (self.spread["repetitions"] == r)]
        return bool(at["paired_sd"].notna().any())

    def _sd(self, column: str, r: float, kind: str) -> tuple[float, str]:
        """The `kind` ("single" or "paired") SD at R = r, else pooled over R; where from."""
        at = self.spread[(self.spread["metric"] == column) & (self.spread["repetitions"] == r)]
        if at[f"{kind}_sd"].notna().any():
            return float(at[f"{kind}_sd"].dropna().iloc[0]), f"R={r:g}"
        if column in self.pooled.index and np.isfinite(self.pooled.loc[column, f"{kind}_sd"]):
            return float(self.pooled.loc[column, f"{kind}_sd"]), "pooled over R"
        return np.nan, ""

    def paired(self, column: str, r: float) -> tuple[float, str]:
        """The paired threshold of `column` at R = `r` and where it came from."""
        sd, where = self._sd(column, r, "paired")
        if np.isfinite(sd):
            return 2 * sd, f"{PAIRED_RULE}, {where}"
        value, source = self.limits.get(column, (np.nan, "no seed SD measured"))
        return value, f"{source}; {NO_PAIRED}"

    def unpaired(self, column: str, r: float) -> tuple[float, str]:
        """The unpaired threshold of `column` at R = `r` and where it came from."""
        sd, where = self._sd(column, r, "single")
        if np.isfinite(sd):
            return 2 * np.sqrt(2) * sd, f"{UNPAIRED_RULE}, {where}"
        return self.limits.get(column, (np.nan, "no seed SD measured"))

    def source(self, column: str, repetitions: Iterable[float]) -> str:
        """Where the paired thresholds of `column` at these R come from, for a rule's text."""
        if not self.measured_for(column):
            value, source = self.limits.get(column, (np.nan, ""))
            if not np.isfinite(value):
                return f"{NO_PAIRED} and no seed SD: no seed-noise threshold"
            return (
                f"{NO_PAIRED}, as the seeds sweep is missing or has no R with two alphas at two "
                f"seeds each; the unpaired pooled threshold stands in: {fmt(value, column)}, "
                f"{source}"
            )
        pooled = sorted({float(r) for r in repetitions if not self.measured_at(column, r)})
        text = f"{PAIRED_RULE} of that R, section 6"
        if pooled:
            where = ", ".join(f"{r:g}" for r in pooled)
            text += f"; at R = {where} (no paired estimate there), the paired SD pooled over R"
        return text

    def by_r(self, column: str, repetitions: Iterable[float]) -> str:
        """'R=1: 0.060 / 0.108, ...': the paired / unpaired thresholds, for a rule's text."""
        return ", ".join(
            f"R={r:g}: {fmt(self.paired(column, r)[0], column)} / "
            f"{fmt(self.unpaired(column, r)[0], column)}"
            for r in sorted({float(r) for r in repetitions})
        )


PAIRING_CHECKED = (
    "tests/test_pairing.py checks that at one seed the runs of different alphas start from "
    "the same initial weights and see the same batches in the same order, and that with "
    "`common_masks` the rows both runs train as MD are masked alike (without it they are "
    "not)."
)


def _masks_state(runs: pd.DataFrame) -> str:
    if "common_masks" not in runs or runs["common_masks"].isna().all():
        return "not recorded (runs from before the setting)"
    values = runs["common_masks"].dropna().astype(bool)
    if values.all():
        return "on in every run"
    if not values.any():
        return "off: masks are drawn anew per run"
    return f"on in {int(values.sum())} of {len(values)} runs"


def common_random_numbers(runs: Mapping[str, pd.DataFrame]) -> str:
    """What runs of different alphas at one seed share, from each sweep's recorded configs
    (`runs`: sweep name -> its finished runs)."""
    states = "; ".join(f"`{name}` {_masks_state(r)}" for name, r in runs.items())
    return f"Common masks across alphas (`objective.common_masks`): {states}. {PAIRING_CHECKED}"


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
