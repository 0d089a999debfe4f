"""Where to train next: the (alpha, R) points that most narrow the best-alpha intervals.

From a fitted surface (`analysis.surface`), the posterior of the best alpha at each R is a
set of sampled surfaces' optima. A candidate point helps in so far as observing the metric
there would narrow those optima's 90% intervals. That is estimated without refitting:

- Sample the noise-free surface jointly at every R on a dense alpha grid (the candidates are
  points of that grid).
- Observing y at candidate j with noise variance s2 moves each sample f to
  f + (y - f_j - e) k_j / (k_jj + s2), where k_j is column j of the posterior covariance and
  e ~ N(0, s2) (Matheron's rule). That is an exact sample of the posterior updated with y,
  kernel hyperparameters fixed.
- The expected interval width after the observation is averaged over five equal-mass
  fantasies of y (the predictive distribution's 10th, 30th, ..., 90th percentiles).
- The score of j is the summed width over R now minus that expectation. Widths are in
  log-odds, the scale of the alpha grid, where 0.9 to 0.99 is as wide as 0.5 to 0.9.

A batch is built greedily. After each pick the samples and covariance are conditioned on
observing the posterior mean there ("kriging believer": the mean stays, the uncertainty
shrinks), so the next pick goes where the first leaves the most doubt, not beside it.
Candidates are the trained R only. New R values would need the surface to extrapolate,
and the study's question is asked at the trained R.

With fewer than MIN_ALPHAS distinct alphas trained (the pure objectives alone, say), the fit
cannot tell how the metric varies with alpha: its alpha length scale goes to its lower
bound, every interior alpha looks equally unknown, and the widths above do not move. Such a
design gets space-filling points instead: each as far in log-odds from the trained (and
already picked) alphas of its R as the candidates allow, the R with the fewest runs first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dualsweep.config import Point, SweepConfig
from dualsweep.schema import RUNS_TABLE, alpha_log_odds

from .surface import SurfaceFit, dense_alphas, inputs

FANTASY_QUANTILES = np.array([-1.2816, -0.5244, 0.0, 0.5244, 1.2816])
"""Standard-normal 10th, 30th, 50th, 70th and 90th percentiles: five equal-mass fantasies."""
MIN_ALPHAS = 3
"""Distinct alphas a design needs before its fit says how the metric varies with alpha."""


@dataclass(frozen=True)
class Suggestion:
    alpha: float
    repetitions: int
    width_before: float
    """Summed 90% interval width of the best alpha over R (log-odds) before this pick."""
    expected_width: float
    """The same, expected after observing this point (and the picks before it); NaN for a
    space-filling pick."""

    @property
    def space_filling(self) -> bool:
        return bool(np.isnan(self.expected_width))


def interval_widths(best: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Per R, the 90% interval width (log-odds) of best-alpha indices `best` (R, samples)."""
    z = alpha_log_odds(alphas)[best]
    return np.quantile(z, 0.95, axis=-1) - np.quantile(z, 0.05, axis=-1)


class _Posterior:
    """Joint samples of the noise-free surface on every (R, dense alpha) point."""

    def __init__(self, fit: SurfaceFit, repetitions, alphas, samples: int, seed: int):
        self.alphas = alphas
        self.n_r, self.n_a = len(repetitions), len(alphas)
        X = np.vstack([inputs(np.full(self.n_a, r), alphas) for r in repetitions])
        self.mean, self.cov = fit.latent.predict(X, return_cov=True)
        self.noise = fit.noise_variance
        self.rng = np.random.default_rng(seed)
        jitter = 1e-9 * np.mean(np.diag(self.cov))
        chol = np.linalg.cholesky(self.cov + jitter * np.eye(len(X)))
        self.draws = self.mean + self.rng.standard_normal((samples, len(X))) @ chol.T
        self.sign = 1.0 if fit.metric.lower_is_better else -1.0

    def best(self, draws: np.ndarray) -> np.ndarray:
        """The best-alpha index of each sample at each R: (R, samples)."""
        per_r = self.sign * draws.reshape(len(draws), self.n_r, self.n_a)
        return np.argmin(per_r, axis=2).T

    def width(self, draws: np.ndarray) -> float:
        return float(interval_widths(self.best(draws), self.alphas).sum())

    def _moved(self, j: int, value: np.ndarray, noise: np.ndarray) -> np.ndarray:
        gain = self.cov[:, j] / (self.cov[j, j] + self.noise)
        return self.draws + (value - self.draws[:, j] - noise)[:, None] * gain[None, :]

    def new_noise(self) -> None:
        """The observation noise of the next pick's candidates: one draw shared by all of
        them, so that they are compared on the same random numbers."""
        self.noise_draw = self.rng.normal(0.0, np.sqrt(self.noise), len(self.draws))

    def expected_width(self, j: int) -> float:
        noise = self.noise_draw
        spread = np.sqrt(self.cov[j, j] + self.noise)
        fantasies = self.mean[j] + FANTASY_QUANTILES * spread
        return float(np.mean([self.width(self._moved(j, y, noise)) for y in fantasies]))

    def believe(self, j: int) -> None:
        """Condition on observing the posterior mean at j: the believer's update."""
        self.draws = self._moved(j, self.mean[j], self.noise_draw)
        k = self.cov[:, j].copy()
        self.cov = self.cov - np.outer(k, k) / (k[j] + self.noise)


def suggest(
    fit: SurfaceFit | None,
    repetitions,
    budget: int,
    *,
    trained: set[tuple[float, int]] = frozenset(),
    alphas: np.ndarray | None = None,
    candidate_step: int = 5,
    samples: int = 1000,
    seed: int = 0,
) -> list[Suggestion]:
    """`budget` points, in order, that most narrow the best-alpha 90% intervals at `repetitions`.

    Candidates are every `candidate_step`-th point of the dense alpha grid (both pure
    objectives included) at each R, less the `trained` (alpha, R) points and the picks. While
    fewer than MIN_ALPHAS alphas are trained, or without a `fit` (too few runs to fit one),
    the picks fill the space in log-odds instead.
    """
    alphas = dense_alphas(101) if alphas is None else np.asarray(alphas, dtype=float)
    # To 6 significant digits, as sweep files write them: a point trained in an earlier round
    # is then recognised exactly, and a pick is the alpha that will be trained.
    alphas = np.array([float(f"{a:.6g}") for a in alphas])
    repetitions = [int(r) for r in repetitions]
    on_grid = sorted({*range(0, len(alphas), candidate_step), len(alphas) - 1})
    candidates = [
        i * len(alphas) + a
        for i, r in enumerate(repetitions)
        for a in on_grid
        if not any(abs(alphas[a] - ta) < 1e-9 and r == tr for ta, tr in trained)
    ]
    if fit is None or len({float(a) for a, _ in trained}) < MIN_ALPHAS:
        return _space_filling(repetitions, alphas, candidates, trained, budget)
    posterior = _Posterior(fit, repetitions, alphas, samples, seed)
    picks: list[Suggestion] = []
    for _ in range(min(budget, len(candidates))):
        before = posterior.width(posterior.draws)
        posterior.new_noise()
        expected = {j: posterior.expected_width(j) for j in candidates}
        j = min(candidates, key=lambda c: (expected[c], c))
        candidates.remove(j)
        r, a = divmod(j, len(alphas))
        picks.append(Suggestion(float(alphas[a]), repetitions[r], before, expected[j]))
        posterior.believe(j)
    return picks


def _space_filling(repetitions, alphas, candidates, trained, budget) -> list[Suggestion]:
    """Picks as far in log-odds from their R's trained and picked alphas as possible."""
    logits = alpha_log_odds(alphas)
    at_r = {r: [float(alpha_log_odds(a)) for a, tr in trained if tr == r] for r in repetitions}
    picks: list[Suggestion] = []
    for _ in range(min(budget, len(candidates))):

        def spread(j: int) -> tuple:
            r, a = divmod(j, len(alphas))
            near = min((abs(logits[a] - z) for z in at_r[repetitions[r]]), default=np.inf)
            return (-near, len(at_r[repetitions[r]]), j)

        j = min(candidates, key=spread)
        candidates.remove(j)
        r, a = divmod(j, len(alphas))
        at_r[repetitions[r]].append(float(logits[a]))
        picks.append(Suggestion(float(alphas[a]), repetitions[r], np.nan, np.nan))
    return picks


@dataclass(frozen=True)
class Round:
    """One round of `dualsweep suggest`: the sweep with its new points, and the words."""

    sweep: SweepConfig
    """The input sweep with the suggested points appended (in order)."""
    notes: dict[Point, str]
    """Why each new point was picked: its line's comment in the written file."""
    header: str
    """The written file's opening comment."""
    report: str
    """What the command prints before it writes: the fit and the best-alpha posterior."""


def sweep_table(sweep: SweepConfig, results, *, sweep_file: str, source: str) -> pd.DataFrame:
    """The finished runs of `sweep` in its tables `results` (results.load): every fixed trial
    (each must have finished) and the alphas its search trained. `sweep_file` and `source`
    (the tables' folder) name the inputs in the error of a sweep not yet run."""
    from dualsweep.config import run_key

    from .data import AnalysisError, trial_table

    table = trial_table(results, current_only=False)
    keys = {run_key(c) for c in sweep.trials()}
    missing = keys - set(table["run_key"])
    if missing:
        raise AnalysisError(
            f"{sweep_file}: {len(missing)} of its {len(keys)} trials have no finished row "
            f"in {source}/{RUNS_TABLE}; run `dualsweep sweep {sweep_file}` first"
        )
    if sweep.search:  # and the alphas its search trained
        runs = results.runs
        keys |= set(runs.loc[runs["in_sweep"].fillna(False).astype(bool), "run_key"])
    return table[table["run_key"].isin(keys)].reset_index(drop=True)


def suggest_round(
    sweep: SweepConfig,
    table: pd.DataFrame,
    budget: int,
    *,
    column: str,
    noise: str = "white",
    seed: int = 0,
    command: str = "dualsweep suggest",
    source: str = "",
) -> Round:
    """`budget` new points for `sweep` from its finished runs `table` (`sweep_table`),
    fitted on `column`; the header says the file was written by `command` from the runs in
    `source` (the tables' folder)."""
    from .data import metric
    from .surface import best_alpha, fit_surface
    from .tables import format_best_alpha

    chosen = metric(table, column)
    fit = fit_surface(table, chosen, noise=noise)
    repetitions = sorted(int(r) for r in table["repetitions"].unique())
    report = (
        f"{chosen.column} over {len(table)} finished runs of {sweep.name}: R^2 {fit.r2:.4f}, "
        f"leave-one-out RMSE {fit.loo_rmse:.4g}\n\n"
        + format_best_alpha(best_alpha(fit, repetitions, seed=seed), chosen.column)
    )
    trained = set(zip(table["alpha"].astype(float), table["repetitions"].astype(int), strict=True))
    picks = suggest(fit, repetitions, budget, trained=trained, seed=seed)
    listed = set(sweep.points)
    notes: dict[Point, str] = {}
    for i, pick in enumerate(picks, 1):
        point = Point(alpha=float(f"{pick.alpha:.6g}"), repetitions=pick.repetitions)
        if point in listed or point in notes:  # (suggest excludes trained points: a safeguard)
            report += f"\nnote: suggestion {i} (alpha={point.alpha:g}, R={point.repetitions}) is listed already"
            continue
        notes[point] = f"suggested {i}/{len(picks)}: " + (
            "space-filling (fewer than 3 distinct alphas trained: the fit cannot yet say how "
            "the metric varies with alpha)"
            if pick.space_filling
            else f"summed 90% width {pick.width_before:.2f} -> {pick.expected_width:.2f} "
            "expected (log-odds)"
        )
    header = (
        f"Written by `{command}` from "
        f"{len(table)} finished runs in {source} ({chosen.column}, GP noise {fit.noise}).\n"
        "The points marked `suggested` are where the GP posterior expects a run to narrow the\n"
        "best alpha's 90% intervals most. `dualsweep sweep` on this file trains them under the\n"
        "same sweep name, so they join the sweep's tables (its finished trials are kept)."
    )
    suggested = dataclasses.replace(sweep, points=sweep.points + tuple(notes))
    return Round(suggested, notes, header, report)
