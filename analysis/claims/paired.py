"""Paired noise: how much two alphas' runs at one seed differ, and the thresholds it gives.

What belongs here: the runs at the seeded points (`seeded_runs`), the single-run and
paired SDs per R (`paired_spread`: y(a, s) - y(b, s) over the seeds two alphas share, pooled
over the R's alpha pairs), their pooling over R, `Thresholds` (the paired and unpaired
noise a difference at one R must exceed, which the rules of sections 3-5 ask), and what the
runs at one seed share (`common_random_numbers`). Writing section 6 belongs to
`analysis.claims.noise`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from dualsweep.schema import is_loss_metric

from ..data import compared_columns
from .formatting import fmt

Limits = Mapping[str, tuple[float, str]]  # metric -> (noise threshold, where it came from)
FALLBACK_LOSS_THRESHOLD = 0.05  # nats: the loss noise threshold when no seeds sweep exists
FALLBACK_SOURCE = "fallback: no seed SD measured"
NO_SEED_SD = (np.nan, "no seed SD measured")
PAIRED_RULE = "2 × the paired SD"
UNPAIRED_RULE = "2√2 × the single-run SD"
NO_PAIRED = "no paired SD measured"


def seeded_runs(table: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Every run at a point of the seeds sweep: the main sweep's (its seed 0) and the seeds
    sweep's. A run in both tables, or a seed trained twice, counts once, the main sweep's
    copy first."""
    points = seeds[["alpha", "repetitions"]].drop_duplicates()
    both = pd.concat([table.merge(points, on=["alpha", "repetitions"]), seeds], ignore_index=True)
    return both.drop_duplicates("run_key").drop_duplicates(["alpha", "repetitions", "seed"])


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
        for column in compared_columns(runs):
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


def pooled_limit(
    limits: Limits, column: str, missing: tuple[float, str] = NO_SEED_SD
) -> tuple[float, str]:
    """The unpaired pooled threshold of `column` and where it came from: measured from seeds
    (`noise_limits`), else for any loss the fallback of 0.05 nats, else `missing`."""
    if column in limits:
        return limits[column]
    return (FALLBACK_LOSS_THRESHOLD, FALLBACK_SOURCE) if is_loss_metric(column) else missing


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
        value, source = pooled_limit(self.limits, column)
        return value, f"{source}; {NO_PAIRED}"

    def unpaired(self, column: str, r: float) -> tuple[float, str]:
        """The unpaired threshold of `column` at R = `r` and where it came from."""
        sd, where = self._sd(column, r, "single")
        if np.isfinite(sd):
            return 2 * np.sqrt(2) * sd, f"{UNPAIRED_RULE}, {where}"
        return pooled_limit(self.limits, column)

    def source(self, column: str, repetitions: Iterable[float]) -> str:
        """Where the paired thresholds of `column` at these R come from, for a rule's text."""
        if not self.measured_for(column):
            value, source = pooled_limit(self.limits, column, (np.nan, ""))
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
