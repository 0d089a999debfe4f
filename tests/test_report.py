"""REPORT.md: its numbers equal pandas on the tables, and its verdicts follow the stated rules.

A 3 alpha x 3 R sweep (plus a seeds sweep) built so each answer is known by hand: pure AR's
final loss ends 1.0 nats above its best at R = 16; the mix wins on the AR loss and the AR
score beyond noise, wins on the MD score within noise, and loses on the MD ELBO. An allocation
sweep trains the `sequence` rule at alpha 1/2 (R = 4 and 16): at R = 16 it is 0.1 nats lower
on the AR loss (within noise) and 10 points lower on the AR score (beyond noise).

Long because it builds this synthetic sweep and its seeds and allocation companions by hand,
then checks every section's rule and the README block against them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from dualsweep.analysis import claims, report
from dualsweep.analysis.data import trial_table

from dualsweep.results import SweepResults, write_parquet

ALPHAS = (0.0, 0.5, 1.0)
REPETITIONS = (1, 4, 16)
# alpha -> per-R values (R = 1, 4, 16)
FINAL_AR = {0.0: (3.3, 3.3, 3.4), 0.5: (2.8, 2.9, 3.1), 1.0: (3.0, 3.2, 4.0)}
BEST_AR = {0.0: (3.3, 3.3, 3.4), 0.5: (2.8, 2.9, 3.1), 1.0: (3.0, 3.1, 3.0)}
MD_ELBO = {0.0: (3.0, 3.0, 3.0), 0.5: (3.2, 3.2, 3.2), 1.0: (3.5, 3.5, 3.5)}
SCORES = {  # mode -> alpha -> score at every R
    "ar": {0.0: 20.0, 0.5: 30.0, 1.0: 25.0},  # the mix wins by 5, 2 SE = 2
    "md": {0.0: 20.0, 0.5: 21.0, 1.0: 10.0},  # the mix wins by 1, within 2 SE
    "prefix": {0.0: 23.0, 0.5: 32.0, 1.0: 25.5},
}
TASK_STDERR = 1.0  # each of two tasks: a mean's error sqrt(2) / 2, a margin's 1.0
# The rules are checked on this 3 x 3 design, below the minimum a real sweep needs for a
# verdict (`claims.MIN_VERDICT_POINTS`); the minimum itself is tested on its own below.
RULES_MIN_POINTS = len(ALPHAS) * len(REPETITIONS)
SCORING_TIME = {"ar": 1.0, "md": 2.0, "prefix": 1.5}  # s per task; continuation +0.25 s


def run_row(key: str, alpha: float, r: int, seed: int, shift: float = 0.0) -> dict:
    i = REPETITIONS.index(r)
    return {
        "sweep": "syn",
        "run_key": key,
        "alpha": alpha,
        "repetitions": r,
        "seed": seed,
        "status": "finished",
        "in_sweep": True,
        "n_parameters": 12345,
        "tokens": 65536,
        "mix_allocation": "step",
        "final_held_out_ar_loss": FINAL_AR[alpha][i] + shift,
        "best_held_out_ar_loss": BEST_AR[alpha][i] + shift,
        "final_held_out_md_elbo": MD_ELBO[alpha][i] + shift,
        "best_held_out_md_elbo": MD_ELBO[alpha][i] + shift,
        "final_held_out_md_elbo_stderr": 0.01,
        "wall_time_s": 100.0 + 10 * len(key),
        "held_out_eval_time_s": 5.0 + i,
        "tokens_per_s": 1000.0 * (1 + i),
        "started_at": f"2025-01-01T00:{10 * i:02d}:00+00:00",
        "finished_at": f"2025-01-01T00:{10 * i + 5:02d}:00+00:00",
        "code_version": "0.1.0+gabc",
    }


def eval_rows(key: str, alpha: float, shift: float = 0.0) -> list[dict]:
    rows = []
    for mode, by_alpha in SCORES.items():
        for task, offset in (("continuation", 1.0), ("word_order", -1.0)):
            score = by_alpha[alpha] + offset + shift
            rows.append(
                {
                    "run_key": key,
                    "task": task,
                    "mode": mode,
                    "normalized_score": score,
                    "stderr": TASK_STDERR,
                    "normalized_score_per_token": score,
                    "stderr_per_token": TASK_STDERR,
                    "scoring_time_s": SCORING_TIME[mode] + (task == "continuation") * 0.25,
                }
            )
    return rows


def write_sweep_tables(root, name: str, runs: list[dict], evals: list[dict]) -> None:
    folder = root / name
    write_parquet(pd.DataFrame(runs), folder / "runs.parquet")
    write_parquet(pd.DataFrame(evals), folder / "evals.parquet")


@pytest.fixture
def results_root(tmp_path):
    runs, evals = [], []
    for alpha in ALPHAS:
        for r in REPETITIONS:
            key = f"a{alpha}-r{r}"
            runs.append(run_row(key, alpha, r, seed=0))
            evals += eval_rows(key, alpha)
    runs.append({**runs[0], "run_key": "broken", "status": "failed"})
    write_sweep_tables(tmp_path, "syn", runs, evals)
    # Seeds 1 and 2 at two points of R = 16: losses +-0.05 (mix) and +-0.02 (AR), scores +-1.
    seeds, seed_evals = [], []
    for alpha, step in ((0.5, 0.05), (1.0, 0.02)):
        for seed, sign in ((1, 1), (2, -1)):
            key = f"a{alpha}-r16-s{seed}"
            seeds.append(run_row(key, alpha, 16, seed=seed, shift=sign * step))
            seed_evals += eval_rows(key, alpha, shift=sign * 1.0)
    write_sweep_tables(tmp_path, "syn-seeds", seeds, seed_evals)
    # The sequence rule at alpha 1/2, seeds 0-2: losses -0.1 + (0, +0.1, -0.1), AR-side
    # scores -10 + (0, +2, -2); a `step` run in the allocation sweep must be left out.
    alloc, alloc_evals = [], []
    for r in (4, 16):
        for seed, loss, score in ((0, -0.1, -10.0), (1, 0.0, -8.0), (2, -0.2, -12.0)):
            key = f"seq-r{r}-s{seed}"
            alloc.append({**run_row(key, 0.5, r, seed, loss), "mix_allocation": "sequence"})
            alloc_evals += eval_rows(key, 0.5, score)
    alloc.append({**run_row("odd", 0.5, 16, 5, 9.0), "mix_allocation": "step"})
    alloc_evals += eval_rows("odd", 0.5, 50.0)
    write_sweep_tables(tmp_path, "syn-allocation", alloc, alloc_evals)
    return tmp_path


def summary(medians, q05, q95) -> pd.DataFrame:
    r = np.array(REPETITIONS, dtype=float)
    frame = pd.DataFrame({"repetitions": r, "alpha_median": medians})
    frame["alpha_q05"], frame["alpha_q95"], frame["p_interior"] = q05, q95, 0.9
    frame["ar_repetitions_median"] = frame["alpha_median"] * r
    return frame


BEST_ALPHAS = {  # score_ar: falls, end intervals apart, apart from score_md at R=1; score_md: flat
    "score_ar": summary([0.9, 0.5, 0.25], [0.85, 0.3, 0.1], [0.95, 0.7, 0.4]),
    "score_md": summary([0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [0.8, 0.8, 0.8]),
}


def section(text: str, heading: str) -> str:
    """The text from `heading` to the next heading of the same or a higher level."""
    start = text.index(heading) + len(heading)
    end = re.search(r"^## " if heading.startswith("## ") else r"^##+ ", text[start:], re.M)
    return text[start - len(heading) : start + end.start()] if end else text[start - len(heading) :]


def cells(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    line = next(x for x in text.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def number(cell: str) -> float:
    return float(cell.split(" ± ")[0].split(" (")[0])


def verdict(text: str) -> str:
    return re.search(r"\*\*Verdict: ([a-z ]+)\.\*\*", text).group(1)


def test_report_numbers_equal_pandas_and_verdicts_follow_rules(results_root):
    path = report.write_report(
        "syn", results_root, best_alphas=BEST_ALPHAS, min_points=RULES_MIN_POINTS
    )
    text = path.read_text()
    runs = pd.read_parquet(results_root / "syn" / "runs.parquet")
    table = trial_table(report.load("syn", results_root))
    finished = runs[runs["status"] == "finished"]

    assert "finished runs: 9 " in text
    # First start to the last end, where a run ends after its scoring (finished_at + scoring).
    scoring = pd.read_parquet(results_root / "syn" / "evals.parquet")
    scoring = finished["run_key"].map(scoring.groupby("run_key")["scoring_time_s"].sum())
    ends = pd.to_datetime(finished["finished_at"]) + pd.to_timedelta(scoring, unit="s")
    span = ends.max() - pd.to_datetime(finished["started_at"]).min()
    assert f"sweep wall time: {span.total_seconds() / 60:.1f} min" in text
    assert f"median {finished['tokens_per_s'].median():,.0f} tokens/s" in text
    assert "mix allocation: step" in text and "model size (`n_parameters`): 12,345" in text

    # Seed noise: threshold = 2 sqrt(2) x the seed SD pooled over the seeded points (the
    # main run is their seed 0): what two single-seed runs differ by through noise alone.
    seeds = trial_table(report.load("syn-seeds", results_root))
    at = table.merge(seeds[["alpha", "repetitions"]].drop_duplicates())
    grouped = pd.concat([at, seeds]).groupby(["alpha", "repetitions"])
    sd, dof = grouped.std(numeric_only=True), grouped.size() - 1
    noise = section(text, "## 6.")
    limit = {}
    for column in ("final_held_out_ar_loss", "score_ar"):
        pooled = np.sqrt((dof * sd[column] ** 2).sum() / dof.sum())
        limit[column] = 2 * np.sqrt(2) * pooled
        digits = 3 if column.endswith("loss") else 1
        assert f"`{column}` {limit[column]:.{digits}f}" in noise

    overfit = section(text, "## 2.")
    ar = table[table["alpha"] == 1].set_index("repetitions")
    row = cells(overfit, "16")
    assert number(row[1]) == pytest.approx(ar.loc[16, "final_held_out_ar_loss"])
    assert number(row[3]) == pytest.approx(
        ar.loc[16, "final_held_out_ar_loss"] - ar.loc[16, "best_held_out_ar_loss"]
    )
    assert verdict(overfit) == "reproduced"
    threshold = f"({limit['final_held_out_ar_loss']:.3f} nats, 2√2 × the pooled seed SD)"
    assert threshold in overfit

    mixes = section(text, "## 3.")
    score_ar = section(mixes, "### `score_ar`")
    at_16 = table[table["repetitions"] == 16].set_index("alpha")
    row = cells(score_ar, "16")
    assert row[1] == "1/2" and number(row[2]) == pytest.approx(at_16.loc[0.5, "score_ar"])
    assert number(row[5]) == pytest.approx(
        at_16.loc[0.5, "score_ar"] - at_16["score_ar"].drop(0.5).max()
    )
    assert row[5].endswith("± 1.0")  # hypot of two sqrt(2)/2 errors
    assert verdict(score_ar) == "reproduced"
    assert verdict(section(mixes, "### `score_md`")) == "partly"  # wins by 1 < 2 SE
    assert verdict(section(mixes, "### `final_held_out_ar_loss`")) == "reproduced"
    assert verdict(section(mixes, "### `final_held_out_md_elbo`")) == "not reproduced"

    # Paired noise at R = 16, where alphas 1/2 and 1 have seeds 0-2: losses 1/2 +- .05, 1
    # +- .02 in the same direction, so their difference varies by (0, .03, -.03): paired SD
    # .03, threshold .060; single SD sqrt((.05^2 + .02^2) / 2) = .038, unpaired threshold
    # 2 sqrt 2 x .038 = .108. R = 1 and 4 have no seeds: the paired SD pooled over R (.03).
    single = np.sqrt((0.05**2 + 0.02**2) / 2)
    assert f"| 16 | `final_held_out_ar_loss` | 2 | {single:.3f} (4) | 0.030 (2) |" in noise
    ar_loss = section(mixes, "### `final_held_out_ar_loss`")
    assert cells(ar_loss, "1")[6] == f"0.060 / {2 * np.sqrt(2) * single:.3f}"
    assert "at R = 1, 4 (no paired estimate there), the paired SD pooled over R" in ar_loss

    # Best alpha: score_ar's GP median falls (0.9 -> 0.25), but its best trained alpha is 1/2
    # at every R (30 against 25 and 20): it does not fall, not reproduced (the GP is context).
    falls = section(text, "## 4.")
    assert verdict(section(falls, "### `score_ar`")) == "not reproduced"
    assert (
        "Paired (the verdict): best trained α 1/2 at R=1, 1/2 at R=16: the best α does not fall."
        in falls
    )
    assert "partly if only the medians fall) would say: reproduced." in falls
    assert verdict(section(falls, "### `score_md`")) == "not reproduced"
    assert "R=16: 4 [1.6, 6.4]" in falls
    # Targets: both best trained alphas are 1/2 at every R, so they agree; the GP intervals
    # (context, not the rule) overlap at 2 of 3.
    targets = section(text, "## 5.")
    assert "agree at 3 of 3 R on paired noise" in targets and verdict(targets) == "reproduced"
    assert "the GP's 90% intervals overlap at 2 of 3 R" in targets

    prefix = section(text, "## 8.")
    d = table["score_prefix"] - table["score_ar"]
    row = cells(prefix, "all models")
    assert row[1] == "9" and number(row[2]) == pytest.approx(round(d.mean(), 1))
    assert row[2].endswith(f"± {d.std() / 3:.1f}")

    paper = section(text, "## 9.")
    row = cells(paper, "32")  # nearest trained R to 32 is 16
    assert row[4] == "16" and number(row[7]) == pytest.approx(5.0)


def build(root, **drop) -> tuple[str, dict]:
    """The report's text and numbers, without `drop` (table -> columns) in the main sweep."""
    results = report.load("syn", root)
    runs = results.runs.drop(columns=drop.get("runs", []))
    evals = results.evals.drop(columns=drop.get("evals", []))
    return report.build_report(
        "syn",
        SweepResults(runs, results.curves, evals),
        {},
        seeds=report.load_seeds("syn", root),
        allocation=report.load_companion("syn", report.ALLOCATION_SUFFIX, root),
        min_points=RULES_MIN_POINTS,
    )


def test_evaluation_share_equals_pandas(results_root):
    text, numbers = build(results_root)
    runs = pd.read_parquet(results_root / "syn" / "runs.parquet").set_index("run_key")
    evals = pd.read_parquet(results_root / "syn" / "evals.parquet")
    runs = runs[runs["status"] == "finished"]
    scoring = evals.groupby("run_key")["scoring_time_s"].sum()
    shares = 100 * (runs["held_out_eval_time_s"] + scoring) / (runs["wall_time_s"] + scoring)
    stated = numbers["evaluation_cost"]["time"]
    key = "a0.5-r16"  # by hand: 7 s held-out + 9.75 s scoring over 180 s + 9.75 s
    assert stated["share_pct"][key] == pytest.approx(shares[key])
    assert shares[key] == pytest.approx(100 * (7 + 9.75) / (180 + 9.75))
    assert stated["share_median"] == pytest.approx(shares.median()) and stated["trials"] == 9
    assert stated["eval_time_median_s"] == pytest.approx(9.75 + 6)
    cost = section(text, "## 10.")
    assert f"Median share {shares.median():.1f}%, max {shares.max():.1f}% (within" in cost
    assert verdict(section(cost, "### Evaluation time")) == "met"  # about 9% <= 15%
    assert cells(cost, "ar") == ["ar", "9", "0.71", "0.71"]  # sqrt(2) / 2 per trial
    assert numbers["evaluation_cost"]["stderr"]["verdict"] == "met"
    assert "- evaluation at most 15% of a trial's time: **met** (section 10)" in text


def test_allocation_difference_equals_hand_computation(results_root):
    text, numbers = build(results_root)
    part = section(text, "## 7.")
    loss = numbers["allocation"]["metrics"]["final_held_out_ar_loss"]
    row = next(r for r in loss["rows"] if r["repetitions"] == 16)
    # step: 3.1, 3.15, 3.05 (SD 0.05); sequence: 3.0, 3.1, 2.9 (SD 0.1); 3 seeds each.
    assert (row["step_seeds"], row["sequence_seeds"]) == (3, 3)
    assert row["difference"] == pytest.approx(0.1)
    assert row["difference_stderr"] == pytest.approx(np.sqrt(0.05**2 / 3 + 0.1**2 / 3))
    table = section(part, "### `final_held_out_ar_loss`")
    line = next(x for x in table.splitlines() if x.startswith("| 1/2 | 16 |"))
    assert line.endswith("| +0.100 ± 0.065 | no |")
    assert "| 1/2 | 4 | 2.900 | 1 | 2.800 ± 0.058 | 3 | +0.100 | not compared |" in table
    assert loss["verdict"] == "no difference beyond noise" and loss["compared"] == 1  # R=4: 1 seed
    score = numbers["allocation"]["metrics"]["score_ar"]
    row = next(r for r in score["rows"] if r["repetitions"] == 16)
    # step: 30, 31, 29 (SD 1); sequence: 20, 22, 18 (SD 2).
    assert row["difference"] == pytest.approx(10.0)
    assert row["difference_stderr"] == pytest.approx(np.sqrt(1 / 3 + 4 / 3))
    assert score["verdict"] == "step better at α 1/2, R=16"
    assert "mix allocation, step vs sequence, `score_ar`: **step better at α 1/2, R=16**" in text
    assert "The `syn` sweep's runs use `mix_allocation`: step." in part


def test_missing_columns_say_not_recorded(results_root):
    text, numbers = build(
        results_root, runs=["held_out_eval_time_s", "mix_allocation"], evals=["scoring_time_s"]
    )
    cost = section(text, "## 10.")
    assert "Not recorded: needs `held_out_eval_time_s`" in cost
    assert numbers["evaluation_cost"]["time"]["verdict"] == "not recorded"
    assert numbers["evaluation_cost"]["stderr"]["verdict"] == "met"
    table = trial_table(report.load("syn", results_root))
    no_stderr = table.drop(columns=[c for c in table if c.endswith("_stderr")])
    lines, stated = claims.evaluation_cost(pd.DataFrame(), pd.DataFrame(), no_stderr)
    assert "Not recorded: the sweep has no scores with standard errors." in lines
    assert stated["stderr"]["verdict"] == stated["time"]["verdict"] == "not recorded"
    assert "- mix allocation: not recorded" in text
    part = section(text, "## 7.")  # without the column the main runs count as step runs
    assert "The `syn` sweep's runs use `mix_allocation`: not recorded." in part
    assert numbers["allocation"]["metrics"]["final_held_out_ar_loss"]["compared"] == 1


def test_missing_seeds_sweep_falls_back(results_root):
    (results_root / "syn-seeds" / "runs.parquet").unlink()
    (results_root / "syn-allocation" / "runs.parquet").unlink()
    text = report.write_report(
        "syn", results_root, best_alphas={}, min_points=RULES_MIN_POINTS
    ).read_text()
    assert "No seeds sweep with repeated points (`results/syn-seeds/runs.parquet`)" in text
    assert "No allocation sweep (`results/syn-allocation/runs.parquet`)." in section(text, "## 7.")
    assert "(0.050 nats, fallback: no seed SD measured)" in section(text, "## 2.")
    assert verdict(section(text, "## 2.")) == "reproduced"  # 1.0 > 0.05
    assert "No surface was fitted." in section(text, "## 4.")
    # Section 3 says the paired threshold fell back to the unpaired 0.05 nats; the scores keep
    # only their 2 evaluation standard errors.
    mixes = section(text, "## 3.")
    assert "no paired SD measured" in section(mixes, "### `final_held_out_ar_loss`")
    assert "the unpaired pooled threshold stands in: 0.050" in mixes
    score_ar = section(mixes, "### `score_ar`")
    assert "2 evaluation standard errors of the margin, no seed noise being measured" in score_ar


def test_small_gap_is_not_overfitting():
    rows = [run_row(f"k{r}", 1.0, r, 0) for r in REPETITIONS]
    for row in rows:
        row["final_held_out_ar_loss"], row["best_held_out_ar_loss"] = 3.0, 2.99  # flat in R
    table = trial_table(SweepResults(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame()))
    lines, numbers = claims.overfitting(table, claims.noise_limits(None))
    assert numbers["verdict"] == "not reproduced"
    assert numbers["gap"][16] == pytest.approx(0.01)


def test_make_plots_writes_the_report(results_root, monkeypatch):
    from dualsweep.analysis import figures, plots

    for name in ("surface", "best_alpha_density", "overfitting", "prefix_gain"):
        monkeypatch.setattr(figures, name, lambda *a, **k: [])  # figures are tested elsewhere
    (results_root / "syn" / "figures").mkdir()
    (results_root / "syn" / "figures" / "overfitting.png").write_bytes(b"png")
    written = plots.make_all("syn", results_root, log=lambda m: None)
    path = results_root / "syn" / "REPORT.md"
    assert path in written
    text = path.read_text()
    assert "- [figures/overfitting.png](figures/overfitting.png)" in text
    assert "- [tables/main.md](tables/main.md)" in text
    assert "### `score_prefix`" in section(text, "## 4.")


def test_an_r_without_both_pure_objectives_is_not_compared(results_root):
    results = report.load("syn", results_root)
    runs = results.runs[results.runs["run_key"] != "a0.0-r16"]  # no pure MD at R = 16
    table = trial_table(SweepResults(runs, results.curves, results.evals))
    _, numbers = claims.mix_beats_pure(table, claims.noise_limits(None))
    rows = {row["repetitions"]: row for row in numbers["score_ar"]["rows"]}
    assert not rows[16]["compared"] and rows[4]["compared"]
    assert numbers["score_ar"]["compared"] == 2 and numbers["score_ar"]["verdict"] == "reproduced"


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Title\n\ntext before\n", "\ntext after\n"
    readme.write_text(f"{before}<!-- results:tiny -->\nold line\n<!-- /results:tiny -->{after}")
    numbers = {
        "overfitting": {"verdict": "reproduced"},
        "mix_beats_pure": {"score_ar": {"verdict": "partly"}},
        "best_alpha_falls": {},
        "ar_vs_md_targets": {},
        "allocation": {},
        "evaluation_cost": {"time": {"verdict": "met"}, "stderr": {"verdict": "not met"}},
        "objectives": ["ar", "md"],
    }
    assert report.update_readme(readme, "tiny", report.readme_block("tiny", numbers))
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after) and "old line" not in text
    link = "[2](results/tiny/REPORT.md)"
    assert f"| {link} | pure AR overfits with repetition | **reproduced** |" in text
    assert "a mix beats both pure objectives at every R: `score_ar` | **partly** |" in text
    # Without the markers (or the file), nothing is written.
    other = tmp_path / "OTHER.md"
    other.write_text("no block here\n")
    assert not report.update_readme(other, "tiny", ["x"]) and other.read_text() == "no block here\n"
    assert not report.update_readme(tmp_path / "missing.md", "tiny", ["x"])


# -- too few runs: no claim is decided -------------------------------------------------
CLAIM_SECTIONS = ("## 2.", "## 3.", "## 4.", "## 5.")
DECIDED = {"reproduced", "partly", "not reproduced"}


def claim_verdicts(text: str) -> list[str]:
    """Every verdict of the claim sections 2-5, in order."""
    found = []
    for heading in CLAIM_SECTIONS:
        found += re.findall(r"\*\*Verdict: (.+?)\.\*\* Rule:", section(text, heading))
    return found


def test_six_runs_decide_no_claim(tmp_path, monkeypatch):
    """A smoke-sized sweep (6 runs) in which every rule has what it compares: both pure
    objectives and a mix at two R (section 4 compares each end's best alpha at the other end).
    `make plots` still writes every table and the report, but no verdict is decided, and the
    report says why at the top."""
    from dualsweep.analysis import figures, plots

    for name in ("surface", "best_alpha_density", "overfitting", "prefix_gain"):
        monkeypatch.setattr(figures, name, lambda *a, **k: [])  # figures are tested elsewhere
    design = tuple((a, r) for r in (1, 16) for a in ALPHAS)
    runs = [run_row(f"a{a}-r{r}", a, r, seed=0) for a, r in design]
    evals = [row for a, r in design for row in eval_rows(f"a{a}-r{r}", a)]
    write_sweep_tables(tmp_path, "smoke", runs, evals)
    logged = []
    plots.make_all("smoke", tmp_path, log=logged.append)
    text = (tmp_path / "smoke" / "REPORT.md").read_text()

    undecided = f"too few runs (6 < {claims.MIN_VERDICT_POINTS}): not decided"
    top = text[: text.index("Verdicts (rules")]
    assert (
        f"**Too few runs to decide: 6 distinct trained (α, R) points, below the minimum of "
        f"{claims.MIN_VERDICT_POINTS} (the rule and its reason above).**" in top
    )
    assert "Loeppky, Sacks & Welch 2009" in top
    verdicts = claim_verdicts(text)
    # sections 2, 3 (five metrics), 4 (five surfaces), 5 (two pairs)
    assert len(verdicts) == 13 and set(verdicts) == {undecided}
    glance = text[text.index("Verdicts (rules") : text.index("## 2.")]
    assert f"pure AR overfits with repetition: **{undecided}**" in glance
    assert not DECIDED & set(re.findall(r"\*\*([a-z ]+)\*\*", glance))
    assert any("warning: " + undecided in line for line in logged)
    note = f"too few runs (6 < {claims.MIN_VERDICT_POINTS}): not a finding"
    assert (tmp_path / "smoke" / "tables" / "best_alpha.md").read_text().startswith(f"**{note}**")

    # The same tables with the minimum lowered to 6: every rule decides, so the minimum
    # alone turned the verdicts into "not decided".
    results = report.load("smoke", tmp_path)
    table = trial_table(results)
    lowered, _ = report.build_report("smoke", results, BEST_ALPHAS, min_points=6)
    assert set(claim_verdicts(lowered)) <= DECIDED and "Too few runs" not in lowered
    assert claims.too_few(table) == undecided and claims.too_few(table, 6) is None


def test_enough_runs_are_decided_from_the_minimum_on():
    """The 50-point synthetic sweep of test_analysis, cut to R = 1-8: 22 points decide,
    20 (the minimum) decide, 19 do not."""
    from .helpers import synthetic_results

    results = synthetic_results()
    runs = results.runs[results.runs["repetitions"] <= 8]
    mixes_at_2 = runs[(runs["repetitions"] == 2) & (runs["alpha"] > 0) & (runs["alpha"] < 1)]
    assert claims.MIN_VERDICT_POINTS == 20
    assert len(runs[runs["status"] == "finished"]) == 22  # one point each, and a failed run
    for dropped, expected in ((0, 22), (2, 20), (3, 19)):
        kept = runs[~runs["run_key"].isin(mixes_at_2["run_key"].iloc[:dropped])]
        text, numbers = report.build_report(
            "synthetic", SweepResults(kept, results.curves, results.evals), {}
        )
        verdicts = claim_verdicts(text)
        assert numbers["decided"]["trained_points"] == expected
        assert f"- distinct trained (α, R) points: {expected} at 4 R" in text
        if expected >= claims.MIN_VERDICT_POINTS:
            assert verdicts and set(verdicts) <= DECIDED, verdicts
            assert "Too few runs" not in text
        else:
            assert set(verdicts) == {
                f"too few runs (19 < {claims.MIN_VERDICT_POINTS}): not decided"
            }
            assert "**Too few runs to decide: 19 distinct" in text


def test_best_alpha_at_one_r_is_not_tested():
    one_r = {"score_ar": BEST_ALPHAS["score_ar"].iloc[:1]}
    _, numbers = claims.best_alpha_falls(one_r)
    assert numbers["score_ar"]["verdict"] == "not tested"
