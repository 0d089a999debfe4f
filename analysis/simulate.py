"""Designs measured against a known truth: simulated studies, no training.

    dualsweep simulate --truth MODULE:FUNCTION --noise SD --studies K --designs grid suggest
        [--seed-effect SD] [--sweep tiny] --out DIR

A design tested on real runs can only be compared with another noisy design (the adaptive
report compares with the grid's own posterior). Here the metric is a known surface
`truth(alpha, R)` (lower is better: a loss) plus noise, so a design's answer can be scored
against the truth's best alpha at every R.

One simulated study:
- Observations: y = truth(alpha, R) + u_R + e. e ~ N(0, noise^2) is a run's own noise;
  u_R ~ N(0, seed_effect^2) is shared by every alpha at one R (the part of a seed's effect
  that common random numbers share: one initialisation, batch order and masks for every
  alpha at a seed and R). The draws are keyed by (seed, study, R, alpha), so two designs
  that train the same point in one study see the same value: designs are compared on
  common random numbers as well.
- Designs choose from the observations so far, with the code a real study uses: `grid` and
  `checkerboard` take a sweep file's points (all, or the checkerboard half of its grid) in a
  random order of the study, a grid stopped early; `suggest` trains the pure objectives at
  every R, then rounds of `analysis.suggest.suggest` on the same GP fit as `dualsweep
  suggest`; `optuna` (built by the command line from `dualsweep.sweep.search`) is the
  sweep's own Optuna searcher, told simulated values instead of trained ones.
- At each run count of `checkpoints`, the GP of `dualsweep fit` (white noise) is fitted on the
  observations so far and its posterior of the best alpha read at every R: the error is
  |logit(posterior median) - logit(true best alpha)|, alphas clipped as the surface clips
  them; covered means the truth lies in the 90% interval; widths are in log-odds.

The true best alpha is the argmin on the same dense log-odds grid the posterior uses
(`surface.dense_alphas`), so the two are compared on one set of candidates.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dualsweep.schema import Metric, alpha_log_odds

from .data import AnalysisError
from .suggest import suggest
from .surface import best_alpha, dense_alphas, fit_surface

Truth = Callable[[float, float], float]
"""loss(alpha, R): the noise-free metric of a run, lower is better."""
METRIC = Metric(column="loss", lower_is_better=True, stderr_column=None)
ROUND_SIZE = 6  # points per suggest round, as `make adaptive` asks of `dualsweep suggest`
_SEED_EFFECT = 2**31 - 1  # the draw key of the shared seed effect (no alpha draws it)


def load_truth(spec: str) -> Truth:
    """The callable `module:function`, importable from the current folder or the path."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise AnalysisError(f"--truth: {spec!r} must be MODULE:FUNCTION, e.g. mytruth:loss")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the caller's own module, as `python -c` would find it
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AnalysisError(
            f"--truth: cannot import {module_name!r} ({e}); it must be importable from the "
            "current folder or PYTHONPATH"
        ) from None
    truth = getattr(module, name, None)
    if not callable(truth):
        raise AnalysisError(f"--truth: {module_name} has no function {name!r}")
    return truth


def true_best_alphas(truth: Truth, repetitions: Sequence[int]) -> dict[int, float]:
    """Per R, the alpha of the dense grid where the truth is lowest."""
    alphas = dense_alphas()
    best = {}
    for r in repetitions:
        values = np.array([float(truth(float(a), float(r))) for a in alphas])
        if not np.all(np.isfinite(values)):
            bad = alphas[~np.isfinite(values)][0]
            raise AnalysisError(f"--truth: not finite at alpha={bad:g}, R={r}")
        best[int(r)] = float(alphas[int(np.argmin(values))])
    return best


@dataclass(frozen=True)
class Noise:
    sd: float
    """A run's own noise: independent across runs."""
    seed_effect: float = 0.0
    """Noise shared by every alpha at one R of a study (a seed's common effect)."""

    def __post_init__(self) -> None:
        for option, value in (("--noise", self.sd), ("--seed-effect", self.seed_effect)):
            if not (np.isfinite(value) and value >= 0):
                raise AnalysisError(f"{option}: must be >= 0 (got {value!r})")


class Observations:
    """One study's simulated runs: the truth plus noise, each draw keyed by its point."""

    def __init__(self, truth: Truth, noise: Noise, seed: int, study: int):
        self.truth, self.noise, self.key = truth, noise, (seed, study)

    def _normal(self, *key: int) -> float:
        return float(np.random.default_rng([*self.key, *key]).standard_normal())

    def __call__(self, alpha: float, r: int) -> float:
        own = self._normal(int(r), int(round(alpha * 1e9)))
        shared = self._normal(int(r), _SEED_EFFECT)
        return (
            float(self.truth(float(alpha), float(r)))
            + self.noise.sd * own
            + self.noise.seed_effect * shared
        )


class Design:
    """A way of choosing runs: `start` a study, then `next_batch` from what was observed
    (alpha, repetitions, loss) until it returns nothing."""

    name = "design"
    label = "design"

    def start(self, rng: np.random.Generator) -> None:
        pass

    def next_batch(self, observed: pd.DataFrame) -> list[tuple[float, int]]:
        raise NotImplementedError


class FixedOrder(Design):
    """A fixed set of points (a grid, its checkerboard half) in a random order per study:
    at n runs, the grid stopped after a random n of its points."""

    def __init__(self, name: str, label: str, points: Sequence[tuple[float, int]], batch: int = 1):
        self.name, self.label, self.points, self.batch = name, label, list(points), batch

    def start(self, rng: np.random.Generator) -> None:
        self.order = [self.points[i] for i in rng.permutation(len(self.points))]

    def next_batch(self, observed: pd.DataFrame) -> list[tuple[float, int]]:
        return self.order[len(observed) : len(observed) + self.batch]


class SuggestRounds(Design):
    """The pure objectives at every R, then rounds of `suggest` until `budget` runs."""

    name, label = "suggest", "suggest rounds"

    def __init__(self, repetitions: Sequence[int], budget: int, round_size: int = ROUND_SIZE):
        self.repetitions, self.budget, self.round_size = list(repetitions), budget, round_size

    def next_batch(self, observed: pd.DataFrame) -> list[tuple[float, int]]:
        if observed.empty:
            return [(a, r) for r in self.repetitions for a in (0.0, 1.0)]
        left = self.budget - len(observed)
        if left <= 0:
            return []
        fit = fit_surface(observed, METRIC)  # as `dualsweep suggest`: white noise, seed 0
        trained = set(zip(observed["alpha"], observed["repetitions"].astype(int), strict=True))
        picks = suggest(fit, self.repetitions, min(self.round_size, left), trained=trained)
        return [(p.alpha, p.repetitions) for p in picks]


def score(
    observed: pd.DataFrame, truth_best: dict[int, float], *, samples: int, seed: int
) -> list[dict]:
    """The posterior of the best alpha at every R from `observed`, against the truth."""
    fit = fit_surface(observed, METRIC, seed=seed)
    summary = best_alpha(fit, list(truth_best), samples=samples, seed=seed)
    rows = []
    for row in summary.itertuples():
        true = truth_best[int(row.repetitions)]
        z_true, z_median = alpha_log_odds(true), alpha_log_odds(row.alpha_median)
        rows.append(
            {
                "repetitions": int(row.repetitions),
                "true_alpha": true,
                "alpha_median": row.alpha_median,
                "alpha_q05": row.alpha_q05,
                "alpha_q95": row.alpha_q95,
                "error": float(abs(z_median - z_true)),
                "covered": bool(row.alpha_q05 - 1e-12 <= true <= row.alpha_q95 + 1e-12),
                "width": float(alpha_log_odds(row.alpha_q95) - alpha_log_odds(row.alpha_q05)),
            }
        )
    return rows


@dataclass(frozen=True)
class Task:
    """One design on one simulated study (what a worker process runs)."""

    design: Design
    truth: Truth | str  # a callable, or its `module:function` (imported in the worker)
    noise: Noise
    study: int
    seed: int
    checkpoints: tuple[int, ...]
    repetitions: tuple[int, ...]
    samples: int


def run_task(task: Task) -> list[dict]:
    """Run the design on one study; one row per (checkpoint reached, R)."""
    truth = load_truth(task.truth) if isinstance(task.truth, str) else task.truth
    truth_best = true_best_alphas(truth, task.repetitions)
    observe = Observations(truth, task.noise, task.seed, task.study)
    design = task.design
    design.start(np.random.default_rng([task.seed, task.study, zlib.crc32(design.name.encode())]))
    observed: list[dict] = []
    rows: list[dict] = []
    waiting = sorted(task.checkpoints)
    started = time.perf_counter()
    while waiting:
        batch = design.next_batch(pd.DataFrame(observed, columns=["alpha", "repetitions", "loss"]))
        if not batch:
            break
        for alpha, r in batch:
            observed.append(
                {"alpha": float(alpha), "repetitions": int(r), "loss": observe(alpha, r)}
            )
            if waiting and len(observed) == waiting[0]:
                waiting.pop(0)
                try:
                    scored = score(
                        pd.DataFrame(observed), truth_best, samples=task.samples, seed=task.seed
                    )
                except AnalysisError:  # too few distinct points for a fit yet
                    continue
                for row in scored:
                    row.update(design=design.name, study=task.study, n=len(observed))
                    rows.append(row)
    seconds = time.perf_counter() - started
    for row in rows:
        row["design_runs"] = len(observed)  # what the design trained in all (it may stop early)
        row["task_seconds"] = seconds
    return rows


def _worker_init() -> None:
    """One BLAS thread per worker process: the processes are the parallelism."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # (scikit-learn installs it; without it, BLAS decides)
        pass


def simulate(
    tasks: Sequence[Task], *, jobs: int = 1, log: Callable[[str], None] = print
) -> pd.DataFrame:
    """Every task, in `jobs` processes; one row per (design, study, run count, R)."""
    rows: list[dict] = []
    started = time.perf_counter()

    def done(count: int, task: Task, found: list[dict]) -> None:
        rows.extend(found)
        log(
            f"[simulate] {count}/{len(tasks)}: {task.design.name} study {task.study} "
            f"({time.perf_counter() - started:.0f} s)"
        )

    if jobs <= 1:
        for count, task in enumerate(tasks, 1):
            done(count, task, run_task(task))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
            futures = {pool.submit(run_task, task): task for task in tasks}
            for count, future in enumerate(as_completed(futures), 1):
                done(count, futures[future], future.result())
    columns = [
        "design", "study", "n", "repetitions", "true_alpha", "alpha_median", "alpha_q05",
        "alpha_q95", "error", "covered", "width", "design_runs", "task_seconds",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["design", "study", "n", "repetitions"]).reset_index(drop=True)


# -- summaries ---------------------------------------------------------------------------
def by_count(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per design and run count: the median |error| at each R (columns `error_R<r>`), the
    worst of those, coverage over studies and R, the median summed width, and the share of
    studies within `tolerance` at every R."""
    out = []
    for (design, n), rows in table.groupby(["design", "n"], sort=False):
        per_r = rows.groupby("repetitions")["error"].median()
        per_study = rows.groupby("study")
        record = {"design": design, "n": int(n), "studies": rows["study"].nunique()}
        record |= {f"error_R{int(r)}": float(e) for r, e in per_r.items()}
        record["worst_error"] = float(per_r.max())
        record["coverage"] = float(rows["covered"].mean())
        record["summed_width"] = float(per_study["width"].sum().median())
        record["within_tolerance"] = float((per_study["error"].max() <= tolerance).mean())
        out.append(record)
    return pd.DataFrame(out).sort_values(["design", "n"]).reset_index(drop=True)


def runs_needed(summary: pd.DataFrame, design: str, tolerance: float) -> int | None:
    """The run count from which the median error is within `tolerance` at every R at every
    later count of the design (None: not within its runs)."""
    rows = summary[summary["design"] == design].sort_values("n")
    outside = rows.loc[rows["worst_error"] > tolerance, "n"]
    later = rows[rows["n"] > (outside.max() if len(outside) else 0)]
    return int(later["n"].iloc[0]) if len(later) else None


def reaches(summary: pd.DataFrame, design: str, target: float) -> int | None:
    """The run count from which the design's worst-R median error stays at or below
    `target` (None: not within its runs)."""
    rows = summary[summary["design"] == design].sort_values("n")
    above = rows.loc[rows["worst_error"] > target + 1e-12, "n"]
    later = rows[rows["n"] > (above.max() if len(above) else 0)]
    return int(later["n"].iloc[0]) if len(later) else None


def default_checkpoints(total: int, start: int = 12, step: int = ROUND_SIZE) -> tuple[int, ...]:
    """Every `step` runs from `start` (the anchors of 6 R) to `total`, and `total` itself."""
    return tuple(sorted({*range(start, total + 1, step), total}))
