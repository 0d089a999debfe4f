"""Paired verdicts (issue 28.1): the noise of two alphas at one seed, and the rules that use it.

The tables are built as y(alpha, R, s) = f(alpha, R) + u(R, s) + e(alpha, R, s): a seed's
effect u is shared by every alpha at that R, a run's own effect e is not. A single run's SD
over seeds sees u + e; a paired difference y(a, s) - y(b, s) sees only e(a) - e(b). Every
expected number is derived by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dualsweep.analysis import claims
from dualsweep.analysis.claims.best_alpha import reversal
from dualsweep.analysis.claims.targets import agreement

AR, MD = "final_held_out_ar_loss", "final_held_out_md_elbo"
# R = 4: u = (0, .3, -.3) over seeds 0-2; e per alpha below.
SHARED = {4.0: (0.0, 0.3, -0.3), 16.0: (0.0, 0.5, -0.5)}
OWN = {
    4.0: {0.0: (0.0, 0.0, 0.0), 0.5: (0.0, 0.1, -0.1), 1.0: (0.0, -0.1, 0.1)},
    16.0: {0.0: (0.0, 0.2, -0.2), 1.0: (0.0, 0.0, 0.0)},
}
BASE = {0.0: 3.5, 0.5: 3.0, 1.0: 3.4}  # f(alpha, R) at R = 4


def runs(values: dict, r: float, seeds=(0,), column: str = AR) -> pd.DataFrame:
    """One row per (alpha, seed): values[alpha] + u(R, s) + e(alpha, R, s) (zero where unset)."""
    shared = SHARED.get(r, (0.0, 0.0, 0.0))
    own = OWN.get(r, {})
    rows = [
        {
            "run_key": f"{column}-a{a}-r{r}-s{s}",
            "alpha": a,
            "repetitions": r,
            "seed": s,
            column: v + shared[s] + own.get(a, (0.0, 0.0, 0.0))[s],
        }
        for a, v in values.items()
        for s in seeds
    ]
    return pd.DataFrame(rows)


def spread_at_4() -> pd.DataFrame:
    return claims.paired_spread(runs(BASE, 4.0), runs(BASE, 4.0, seeds=(1, 2)))


# -- the SDs ----------------------------------------------------------------------------
def test_single_and_paired_sd_by_hand():
    row = spread_at_4().set_index("metric").loc[AR]
    # Single runs: alpha 0 varies by u + e = (0, .3, -.3), var .09; 1/2 by (0, .4, -.4),
    # var .16; 1 by (0, .2, -.2), var .04; pooled (2 dof each): sqrt(.58 / 6).
    assert row["single_sd"] == pytest.approx(np.sqrt(0.58 / 6))
    assert row["single_dof"] == 6
    # Paired: u cancels. 0 - 1/2: (0, -.1, .1), var .01; 0 - 1: (0, .1, -.1), var .01;
    # 1/2 - 1: (0, .2, -.2), var .04; pooled (2 dof each): sqrt(.12 / 6) = sqrt(.02).
    assert row["paired_sd"] == pytest.approx(np.sqrt(0.02))
    assert row["paired_dof"] == 6 and row["alphas"] == 3
    thresholds = claims.Thresholds(spread_at_4(), {})
    assert thresholds.paired(AR, 4.0) == (
        pytest.approx(2 * np.sqrt(0.02)),
        "2 × the paired SD, R=4",
    )
    assert thresholds.unpaired(AR, 4.0)[0] == pytest.approx(2 * np.sqrt(2) * np.sqrt(0.58 / 6))


def _two_alphas(e0, e1, u=(0.0, 0.0, 0.0, 0.0)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alphas 0 and 1 at R = 2, seeds 0-3: 3 + u(s) + e(alpha, s); seed 0 in the main table."""
    rows = pd.DataFrame(
        [
            {
                "run_key": f"a{a}-s{s}",
                "alpha": a,
                "repetitions": 2.0,
                "seed": s,
                AR: 3 + u[s] + e[s],
            }
            for a, e in ((0.0, e0), (1.0, e1))
            for s in range(4)
        ]
    )
    return rows[rows["seed"] == 0], rows[rows["seed"] > 0]


def test_the_ratio_is_1_with_nothing_shared_and_0_with_everything_shared():
    # Nothing shared: e(0) = .1 x (1, -1, 1, -1), e(1) = .1 x (1, 1, -1, -1): each var
    # .04 / 3, uncorrelated; the difference .1 x (0, -2, 2, 0), var .08 / 3 = 2 x .04 / 3.
    row = claims.paired_spread(*_two_alphas((0.1, -0.1, 0.1, -0.1), (0.1, 0.1, -0.1, -0.1))).iloc[0]
    assert row["single_sd"] == pytest.approx(np.sqrt(0.04 / 3))
    assert row["paired_sd"] == pytest.approx(np.sqrt(0.08 / 3))
    assert row["paired_sd"] / (np.sqrt(2) * row["single_sd"]) == pytest.approx(1.0)
    # Everything shared: u = .1 x (1, -1, 1, -1), no own effect: the pairs differ by nothing.
    zero = (0.0,) * 4
    row = claims.paired_spread(*_two_alphas(zero, zero, u=(0.1, -0.1, 0.1, -0.1))).iloc[0]
    assert row["single_sd"] == pytest.approx(np.sqrt(0.04 / 3)) and row["paired_sd"] == 0.0


def test_pooled_over_r_and_an_r_without_a_paired_estimate():
    main = pd.concat([runs(BASE, 4.0), runs({0.0: 3.0, 1.0: 3.2}, 16.0)])
    seeds = pd.concat(
        [
            runs(BASE, 4.0, seeds=(1, 2)),
            runs({0.0: 3.0, 1.0: 3.2}, 16.0, seeds=(1, 2)),
            runs({0.5: 3.0}, 32.0, seeds=(1, 2)),  # one seeded alpha at R = 32: no pair
        ]
    )
    spread = claims.paired_spread(main, seeds).set_index(["metric", "repetitions"])
    # R = 16: singles u + e = (0, .7, -.7), var .49, and (0, .5, -.5), var .25: sqrt(1.48 / 4);
    # one pair, e(0) - e(1) = (0, .2, -.2), var .04, 2 dof.
    at_16 = spread.loc[(AR, 16.0)]
    assert at_16["single_sd"] == pytest.approx(np.sqrt(1.48 / 4))
    assert at_16["paired_sd"] == pytest.approx(0.2) and at_16["paired_dof"] == 2
    assert np.isnan(spread.loc[(AR, 32.0), "paired_sd"]) and spread.loc[(AR, 32.0), "alphas"] == 1
    # Pooled over R: paired sqrt((6 x .02 + 2 x .04) / 8) = sqrt(.025); single sqrt((.58 +
    # 1.48) / 10) (R = 32's one alpha has no seed spread: u and e are zero there).
    pooled = claims.paired.pooled_over_r(claims.paired_spread(main, seeds)).loc[AR]
    assert pooled["paired_sd"] == pytest.approx(np.sqrt(0.025)) and pooled["paired_dof"] == 8
    thresholds = claims.Thresholds(claims.paired_spread(main, seeds), {})
    value, where = thresholds.paired(AR, 32.0)
    assert value == pytest.approx(2 * np.sqrt(0.025)) and where.endswith("pooled over R")
    assert "at R = 32 (no paired estimate there)" in thresholds.source(AR, [4.0, 32.0])


def test_the_main_sweeps_copy_counts_once():
    # The seeds sweep repeats the main run (same key) and retrains seed 0 under another key
    # with another value: both are dropped, the main sweep's copy first, so the SDs stay.
    main = runs(BASE, 4.0)
    repeated = runs(BASE, 4.0, seeds=(0,)).assign(run_key=lambda t: t["run_key"] + "-again")
    repeated[AR] += 1.0
    seeds = pd.concat([main, repeated, runs(BASE, 4.0, seeds=(1, 2))])
    row = claims.paired_spread(main, seeds).set_index("metric").loc[AR]
    assert row["paired_sd"] == pytest.approx(np.sqrt(0.02))
    assert row["single_sd"] == pytest.approx(np.sqrt(0.58 / 6))


# -- section 3 ----------------------------------------------------------------------------
def test_a_margin_between_the_thresholds_is_beyond_paired_noise_only():
    thresholds = claims.Thresholds(spread_at_4(), {})
    # The mix (1/2, 3.0) beats pure AR (3.4) by 0.4: above the paired threshold
    # 2 sqrt(.02) = 0.283, below the unpaired 2 sqrt(2) sqrt(.58 / 6) = 0.879.
    lines, numbers = claims.mix_beats_pure(runs(BASE, 4.0), {}, thresholds=thresholds)
    (row,) = numbers[AR]["rows"]
    assert row["margin"] == pytest.approx(0.4)
    assert row["paired_threshold"] == pytest.approx(0.283, abs=5e-4)
    assert row["unpaired_threshold"] == pytest.approx(0.879, abs=5e-4)
    assert row["significant"] and not row["significant_unpaired"]
    assert numbers[AR]["verdict"] == "reproduced" and numbers[AR]["significant_unpaired"] == 0
    text = "\n".join(lines)
    assert (
        "| 4 | 1/2 | 3.000 | 3.400 | 3.500 | +0.400 | 0.283 / 0.879 | wins, beyond noise |" in text
    )
    assert "paired / unpaired per R: R=4: 0.283 / 0.879" in text
    assert "it would be beyond noise at 0." in text


def test_a_score_margin_needs_both_the_paired_threshold_and_two_standard_errors():
    spread = spread_at_4().assign(metric="score_ar")  # paired SD sqrt(.02) x 100 below
    spread[["single_sd", "paired_sd"]] *= 100  # paired threshold 28.3, unpaired 87.9
    table = runs({0.0: 20.0, 0.5: 60.0, 1.0: 25.0}, 4.0, column="score_ar")  # seed 0: as given

    def beyond(stderr: float, scale: float) -> bool:
        table["score_ar_stderr"] = stderr  # a margin's error: hypot(stderr, stderr)
        scaled = spread.assign(paired_sd=spread["paired_sd"] * scale)
        _, numbers = claims.mix_beats_pure(table, {}, thresholds=claims.Thresholds(scaled, {}))
        (row,) = numbers["score_ar"]["rows"]
        assert row["margin"] == pytest.approx(35.0)  # 60 - 25
        return row["significant"]

    assert beyond(10.0, 1.0)  # 35 > 28.3 (paired) and 35 > 2 x 14.1 = 28.3 (2 SE)
    assert not beyond(20.0, 1.0)  # 2 SE = 56.6
    assert not beyond(10.0, 3.0)  # paired threshold 84.9


# -- section 4 ----------------------------------------------------------------------------
def _thresholds(paired_sd: float, *columns: str) -> claims.Thresholds:
    """Paired and single SD `paired_sd` for `columns` (the AR loss) at R = 1 and 16."""
    rows = [
        {
            "repetitions": r,
            "metric": c,
            "alphas": 3,
            "single_sd": paired_sd,
            "single_dof": 6,
            "paired_sd": paired_sd,
            "paired_dof": 6,
        }
        for c in columns or (AR,)
        for r in (1.0, 16.0)
    ]
    return claims.Thresholds(pd.DataFrame(rows), {})


def _summary(medians) -> pd.DataFrame:
    r = np.array([1.0, 16.0])
    frame = pd.DataFrame({"repetitions": r, "alpha_median": medians})
    frame["alpha_q05"] = frame["alpha_median"] - 0.05
    frame["alpha_q95"] = frame["alpha_median"] + 0.05
    frame["p_interior"] = 0.9
    frame["ar_repetitions_median"] = frame["alpha_median"] * r
    return frame


FALLING = pd.concat(  # R = 1: best 1 (3.0), 1/2 0.2 behind; R = 16: best 1/2 (3.0), 1 0.6 behind
    [runs({0.0: 3.5, 0.5: 3.2, 1.0: 3.0}, 1.0), runs({0.0: 3.5, 0.5: 3.0, 1.0: 3.6}, 16.0)]
)


def test_the_best_alpha_falls_when_the_best_trained_alphas_swap_beyond_paired_noise():
    swap = reversal(FALLING, AR, _thresholds(0.05))
    assert (swap["best_lowest_r"], swap["best_highest_r"]) == (1.0, 0.5)
    # u(R=16, s=0) = 0 and e(., 16, 0) = 0: the seed-0 values are as given.
    assert swap["behind_lowest_r"] == pytest.approx(0.2)
    assert swap["behind_highest_r"] == pytest.approx(0.6)
    gp_flat = {AR: _summary([0.5, 0.5])}  # the GP does not decide: flat here, reproduced
    # Paired SD 0.05: thresholds 0.1 at both R, both reversals larger: reproduced.
    lines, numbers = claims.best_alpha_falls(gp_flat, FALLING, _thresholds(0.05))
    assert numbers[AR]["verdict"] == "reproduced" and numbers[AR]["paired"]["beyond"]
    assert (
        "The former GP rule" in "\n".join(lines) and numbers[AR]["gp_verdict"] == "not reproduced"
    )
    # Paired SD 0.15: threshold 0.3 > 0.2 at R = 1: beyond at R=16 only, partly. The unpaired
    # threshold (single SD 0.15: 2 sqrt 2 x .15 = 0.42) would not pass at R = 16 either.
    lines, numbers = claims.best_alpha_falls(gp_flat, FALLING, _thresholds(0.15))
    assert numbers[AR]["verdict"] == "partly" and not numbers[AR]["paired"]["beyond"]
    text = "\n".join(lines)
    assert (
        "Beyond paired noise at R=16 only; against the unpaired thresholds it would be at " in text
    )
    assert "by 0.200 (paired threshold 0.300, unpaired 0.424)" in text


def test_the_ends_compare_the_alphas_trained_at_both():
    # 255/256 is best at R = 1 but not trained at R = 16: the ends' bests come from {1/2, 1}.
    only_low = pd.concat([FALLING, runs({255 / 256: 2.9}, 1.0)])
    swap = reversal(only_low, AR, _thresholds(0.05))
    assert (swap["best_lowest_r"], swap["best_highest_r"]) == (1.0, 0.5)
    assert swap["behind_lowest_r"] == pytest.approx(0.2) and swap["beyond"]
    single = pd.concat([runs({0.5: 3.0, 1.0: 3.1}, 1.0), runs({0.0: 3.0, 0.25: 3.1}, 16.0)])
    assert reversal(single, AR, _thresholds(0.05)) is None  # no alpha at both ends


def test_a_falling_gp_without_a_falling_trained_alpha_is_not_reproduced():
    flat = pd.concat(
        [runs({0.0: 3.5, 0.5: 3.2, 1.0: 3.0}, 1.0), runs({0.0: 3.5, 0.5: 3.3, 1.0: 3.1}, 16.0)]
    )
    falling_gp = {AR: _summary([0.95, 0.3])}  # the former rule would say reproduced
    _, numbers = claims.best_alpha_falls(falling_gp, flat, _thresholds(0.05))
    assert numbers[AR]["verdict"] == "not reproduced" and not numbers[AR]["paired"]["falls"]
    assert numbers[AR]["gp_verdict"] == "reproduced"


# -- section 5 ----------------------------------------------------------------------------
TARGETS = runs({0.0: 3.5, 0.5: 3.2, 1.0: 3.0}, 1.0).merge(  # AR best 1, MD best 1/2
    runs({0.0: 3.3, 0.5: 3.0, 1.0: 3.05}, 1.0, column=MD).drop(columns="run_key")
)


def test_targets_agree_when_each_best_is_within_paired_noise_on_the_other():
    (row,) = agreement(TARGETS, AR, MD, _thresholds(0.05, AR, MD))
    assert (row["best_ar"], row["best_md"]) == (1.0, 0.5)
    # y_AR(1/2) - y_AR(1) = 0.2; y_MD(1) - y_MD(1/2) = 0.05.
    assert row[f"behind_{AR}"] == pytest.approx(0.2) and row[f"behind_{MD}"] == pytest.approx(0.05)
    assert not row["agree"]  # 0.2 > 2 x 0.05 on the AR loss
    assert agreement(TARGETS, AR, MD, _thresholds(0.15, AR, MD))[0]["agree"]  # 0.2 <= 0.3


def test_the_targets_verdict_counts_the_r_that_agree():
    # R = 16: both targets best at 1/2, so they agree at any threshold.
    same = runs({0.0: 3.5, 0.5: 3.0, 1.0: 3.6}, 16.0).merge(
        runs({0.0: 3.3, 0.5: 3.0, 1.0: 3.5}, 16.0, column=MD).drop(columns="run_key")
    )
    gp = {AR: _summary([0.9, 0.5]), MD: _summary([0.1, 0.5])}  # intervals apart at R = 1
    verdicts = {}
    for name, table in (("both", pd.concat([TARGETS, same])), ("one", TARGETS)):
        for sd in (0.05, 0.15):
            _, numbers = claims.ar_vs_md_targets(gp, table, _thresholds(sd, AR, MD))
            verdicts[name, sd] = numbers[f"{AR} vs {MD}"]["verdict"]
    assert verdicts == {
        ("both", 0.05): "partly",  # R = 1 apart, R = 16 the same alpha
        ("both", 0.15): "reproduced",
        ("one", 0.05): "not reproduced",
        ("one", 0.15): "reproduced",
    }


# -- fallbacks -----------------------------------------------------------------------------
def test_without_seeds_the_paired_threshold_falls_back_and_says_so():
    thresholds = claims.Thresholds(None, claims.noise_limits(None))
    value, source = thresholds.paired(AR, 4.0)
    assert value == claims.FALLBACK_LOSS_THRESHOLD and "no paired SD measured" in source
    assert not thresholds.measured and np.isnan(thresholds.paired("score_ar", 4.0)[0])
    # A margin of 0.04 nats is within the 0.05 fallback, 0.06 beyond it.
    for margin, beyond in ((0.04, False), (0.06, True)):
        table = runs({0.0: 3.5, 0.5: 3.4 - margin, 1.0: 3.4}, 4.0)
        lines, numbers = claims.mix_beats_pure(table, thresholds.limits, thresholds=thresholds)
        assert numbers[AR]["rows"][0]["significant"] is beyond
    assert "the unpaired pooled threshold stands in: 0.050" in "\n".join(lines)


def test_seeds_at_one_alpha_per_r_give_no_paired_sd_and_the_unpaired_pooled_threshold():
    main = runs(BASE, 4.0)
    seeds = runs({0.5: 3.0}, 4.0, seeds=(1, 2))  # one seeded alpha: SD, but no pair
    spread = claims.seed_spread(main, seeds)
    limits = claims.noise_limits(spread)
    thresholds = claims.Thresholds(claims.paired_spread(main, seeds), limits)
    assert not thresholds.measured
    # alpha 1/2: (0, .4, -.4), SD .4: unpaired pooled 2 sqrt 2 x .4.
    value, source = thresholds.paired(AR, 4.0)
    assert value == pytest.approx(2 * np.sqrt(2) * 0.4) and "no paired SD measured" in source
    lines, _ = claims.seed_noise(spread, limits, [], "seeds.parquet", thresholds)
    assert any(line.startswith("No paired SD measured: no R has two alphas") for line in lines)


def test_a_score_without_seed_noise_is_decided_by_the_gp_and_says_so():
    table = FALLING.rename(columns={AR: "score_ar"})
    table["score_ar"] = -table["score_ar"]  # higher is better: the same order
    gp = {"score_ar": _summary([0.95, 0.3])}
    thresholds = claims.Thresholds(None, claims.noise_limits(None))
    lines, numbers = claims.best_alpha_falls(gp, table, thresholds)
    assert (
        numbers["score_ar"]["decided_by"] == "GP" and numbers["score_ar"]["verdict"] == "reproduced"
    )
    assert any(line.startswith("No seed-noise threshold for this metric") for line in lines)
    # Section 5 likewise: score_ar's intervals [.9, 1] at R = 1 and [.25, .35] at R = 16,
    # score_md's [.45, .55] and [.55, .65]: apart at both R, so the GP rule says not
    # reproduced, though both targets' best trained alpha is the same.
    md = table.assign(score_md=table["score_ar"])  # the same best alpha for both targets
    gp["score_md"] = _summary([0.5, 0.6])
    lines, numbers = claims.ar_vs_md_targets(gp, md, thresholds)
    stated = numbers["score_ar vs score_md"]
    assert stated["compared"] == 2  # both R have both targets trained, but no threshold
    assert stated["decided_by"] == "GP" and stated["verdict"] == "not reproduced"
    assert "standing in: no seed-noise threshold for this metric" in lines[-2]


# -- section 6 ----------------------------------------------------------------------------
def test_section_6_states_both_sds_their_ratio_and_the_claims_per_r():
    main, seeds = runs(BASE, 4.0), runs(BASE, 4.0, seeds=(1, 2))
    spread = claims.seed_spread(main, seeds)
    limits = claims.noise_limits(spread)
    thresholds = claims.Thresholds(claims.paired_spread(main, seeds), limits)
    claimed = [("a margin", AR, {4.0: 0.4}, True), ("a gap", AR, {4.0: 0.4}, False)]
    sharing = claims.common_random_numbers({"syn": pd.DataFrame({"common_masks": [True]})})
    lines, stated = claims.seed_noise(spread, limits, claimed, "x", thresholds, sharing)
    text = "\n".join(lines)
    # ratio sqrt(.02) / (sqrt 2 x sqrt(.58 / 6)) = sqrt(.06 / .58) = 0.32
    assert stated["paired"][AR]["ratio"] == pytest.approx(np.sqrt(0.06 / 0.58))
    assert (
        "| 4 | `final_held_out_ar_loss` | 3 | 0.311 (6) | 0.141 (6) | 0.32 | 0.283 | 0.879 |"
        in text
    )
    assert "`syn` on in every run" in text and "tests/test_pairing.py checks" in text
    # The pooled unpaired threshold, 2 sqrt 2 x sqrt(.58 / 6) = 0.879 too (one R here): the
    # margin passes the paired 0.283, the within-run gap is held to the unpaired pooled 0.879.
    assert stated["exceeding"][("a margin", AR)] == [4.0]
    assert stated["exceeding"][("a gap", AR)] == []


def test_the_report_states_whether_masks_are_common():
    def state(**sweeps) -> str:
        return claims.common_random_numbers({k: pd.DataFrame(v) for k, v in sweeps.items()})

    assert "`a` on in every run" in state(a={"common_masks": [True]})
    assert "`a` off" in state(a={"common_masks": [False, False]})
    assert "on in 1 of 2 runs" in state(a={"common_masks": [True, False]})
    both = state(a={"alpha": [0.5]}, b={"common_masks": [True]})
    assert "`a` not recorded (runs from before the setting); `b` on in every run" in both
