"""The paper's claims as rules: each takes the sweep's numbers and says whether it holds.

What belongs here: one pure function per claim section of REPORT.md (tables in; Markdown
lines and a dict of the numbers it states out), with its verdict rule written in code and
printed beside the verdict, and the seed-noise thresholds those rules use. Assembling the
report and writing it belong to `analysis.report`.

Verdicts: "reproduced", "partly", "not reproduced", or "not tested" where the sweep lacks
the runs a rule needs; "too few runs (n < N): not decided" replaces the first three where
the sweep has fewer than `MIN_VERDICT_POINTS` distinct trained points. The allocation
comparison (section 7) says which rule is better where, and the evaluation-cost targets
(section 10) are "met", "not met" or "not recorded". Values of a point trained with several
seeds are their mean, as in `analysis.tables.main_table`. Differences between two alphas
at the sweep's seed (sections 3-5) are paired: they meet the paired noise threshold of
their R (`Thresholds`), measured from the seeds companion, not the noise of two
independent runs.

Modules, lowest first: `formatting` (the section type, Markdown helpers),
`paired` (single-run and paired SDs per R, the thresholds the rules ask, mask sharing),
`noise` (seed spreads, pooled unpaired thresholds, standard errors; section 6),
`trained_points` (sections 2-3), `best_alpha` (4), `targets` (5), `mix_allocation` (7),
`scores` (8-9), `cost` (10). The objectives compared are the runs' pair, read from their
columns (`analysis.data.pair`; alpha weighs the first): the paper's AR and MD, or any two
registered objectives. This package re-exports the sections and constants `analysis.report` calls as
`claims.<name>`, so the report reads as one list of sections without knowing which module
holds each.
"""

from .best_alpha import PAPER_ALPHA_R, best_alpha_falls
from .cost import (
    EVAL_SHARE_TARGET,
    SCORE_STDERR_TARGET,
    evaluation_cost,
    evaluation_share,
    scoring_time,
)
from .formatting import (
    MIN_VERDICT_POINTS,
    Section,
    minimum_rule,
    point_count,
    too_few,
)
from .mix_allocation import allocation
from .noise import (
    FALLBACK_LOSS_THRESHOLD,
    Claimed,
    Limits,
    noise_limits,
    seed_noise,
    seed_spread,
)
from .paired import Thresholds, common_random_numbers, paired_spread
from .scores import PAPER_470M, paper_numbers, prefix_vs_ar
from .targets import ar_vs_md_targets
from .trained_points import mix_beats_pure, overfitting

__all__ = [
    "EVAL_SHARE_TARGET",
    "FALLBACK_LOSS_THRESHOLD",
    "MIN_VERDICT_POINTS",
    "PAPER_470M",
    "PAPER_ALPHA_R",
    "SCORE_STDERR_TARGET",
    "Claimed",
    "Limits",
    "Section",
    "Thresholds",
    "allocation",
    "ar_vs_md_targets",
    "best_alpha_falls",
    "common_random_numbers",
    "evaluation_cost",
    "evaluation_share",
    "minimum_rule",
    "mix_beats_pure",
    "noise_limits",
    "overfitting",
    "paired_spread",
    "paper_numbers",
    "point_count",
    "prefix_vs_ar",
    "scoring_time",
    "seed_noise",
    "seed_spread",
    "too_few",
]
