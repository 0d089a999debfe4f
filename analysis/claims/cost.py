"""Section 10: what evaluation costs, in time and in the scores' standard errors.

What belongs here: evaluation's share of each trial's time (from runs.parquet and
evals.parquet) and the task-averaged scores' standard errors, each against its target
(`EVAL_SHARE_TARGET`, `SCORE_STDERR_TARGET`); verdicts "met", "not met" or "not recorded".
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .formatting import Section, table_lines, verdict_lines

EVAL_SHARE_TARGET = 15.0  # %: evaluation should take at most this share of a trial's time
SCORE_STDERR_TARGET = 2.0  # points: target for the task-averaged scores' standard error


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
