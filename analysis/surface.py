"""The paper's surface model: a Gaussian process over (repetitions, alpha) -> metric.

Inputs are log2 R and alpha on the log-odds scale (`dualsweep.schema.alpha_log_odds`), where
the paper's alpha grid {0, 1/256, ..., 1/2, ..., 255/256, 1} is symmetric. The endpoints 0
and 1 have no log-odds; they are clipped to 1/1024 and 1023/1024, one grid step (a factor of
4 in the odds) beyond 1/256 and 255/256, as the grid's own spacing continues. The kernel is the paper's: an
anisotropic Matern (nu = 1.5) times a constant, plus white noise; or, when the results carry
per-run standard errors, those errors as per-point noise instead of one shared level.

Best alpha: posterior samples of the noise-free surface on a dense alpha grid at each R
(trained or between), the argmax (argmin for losses) of each sample, and the distribution
of those optima: median, 90% interval, and the probability that the optimum is strictly
inside (0, 1), i.e. that a mix beats both pure objectives.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dualsweep.schema import Metric, alpha_from_log_odds, alpha_log_odds

from .data import AnalysisError

MIN_POINTS = 4  # as many as the free hyperparameters (2 length scales, signal, noise); few points = a smoke test, not a finding


def inputs(repetitions, alpha) -> np.ndarray:
    """The GP's inputs (n, 2): log2 R and alpha's log-odds."""
    return np.column_stack(
        [np.log2(np.asarray(repetitions, dtype=float)), alpha_log_odds(np.asarray(alpha))]
    )


def dense_alphas(n: int = 201) -> np.ndarray:
    """n alphas evenly spaced in log-odds between the clipped endpoints (0 and 1 included as such)."""
    alphas = alpha_from_log_odds(np.linspace(alpha_log_odds(0.0), alpha_log_odds(1.0), n))
    alphas[0], alphas[-1] = 0.0, 1.0  # the endpoints are the pure objectives
    return alphas


@dataclass
class SurfaceFit:
    metric: Metric
    gp: object  # the fitted GaussianProcessRegressor (signal + noise)
    latent: object  # the same kernel without its noise term: the noise-free surface
    X: np.ndarray
    y: np.ndarray
    r2: float
    """In-sample R^2 of the posterior mean."""
    loo_rmse: float
    """Leave-one-out root-mean-square error (closed form, hyperparameters fixed), metric units."""
    noise: str
    """'white' (one fitted level) or 'stderr' (each run's squared standard error)."""

    def predict(self, repetitions, alpha, return_std: bool = False):
        return self.latent.predict(inputs(repetitions, alpha), return_std=return_std)

    @property
    def noise_variance(self) -> float:
        """A new run's noise variance in metric units: the fitted white level, or with
        per-run errors their mean square (the GP works on normalised targets)."""
        return float(np.mean(self.latent.alpha) * self.latent._y_train_std**2)

    @property
    def kernel(self) -> str:
        return str(self.gp.kernel_)


def fit_surface(
    table: pd.DataFrame, metric: Metric, *, noise: str = "white", seed: int = 0
) -> SurfaceFit:
    """Fit the metric over (log2 R, alpha's log-odds).

    `noise`: 'white' (the paper's single fitted level), 'stderr' (each run's standard error
    as its own noise, where the metric has one), or 'auto' (stderr where available).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    rows = table.dropna(subset=[metric.column])
    if len(rows) < MIN_POINTS:
        raise AnalysisError(
            f"{metric.column}: {len(rows)} finished runs with a value; the surface needs at least {MIN_POINTS}"
        )
    X, y = inputs(rows["repetitions"], rows["alpha"]), rows[metric.column].to_numpy(float)
    if len({tuple(x) for x in X}) < 3:
        raise AnalysisError(
            f"{metric.column}: the runs cover fewer than 3 distinct (R, alpha) points"
        )
    if noise == "auto":
        noise = (
            "stderr"
            if metric.stderr_column and rows[metric.stderr_column].notna().all()
            else "white"
        )
    signal = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=[2.0, 2.0], length_scale_bounds=(0.1, 100.0), nu=1.5
    )
    if noise == "stderr":
        if not metric.stderr_column:
            raise AnalysisError(f"{metric.column}: no standard errors to use as per-point noise")
        # GaussianProcessRegressor works on normalised targets: scale the variances alike.
        variances = (rows[metric.stderr_column].to_numpy(float) / y.std()) ** 2 + 1e-10
        gp = GaussianProcessRegressor(
            signal, alpha=variances, normalize_y=True, n_restarts_optimizer=5, random_state=seed
        )
    elif noise == "white":
        kernel = signal + WhiteKernel(0.1, (1e-6, 1.0))
        variances = None
        gp = GaussianProcessRegressor(
            kernel, alpha=1e-10, normalize_y=True, n_restarts_optimizer=5, random_state=seed
        )
    else:
        raise AnalysisError(f"noise: must be white, stderr or auto (got {noise!r})")
    with warnings.catch_warnings():  # a length scale at its bound is a smooth surface, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(X, y)
    if noise == "white":
        fitted_signal, noise_level = gp.kernel_.k1, gp.kernel_.k2.noise_level
        point_noise = noise_level + 1e-10
    else:
        fitted_signal, point_noise = gp.kernel_, variances
    latent = GaussianProcessRegressor(
        fitted_signal, alpha=point_noise, normalize_y=True, optimizer=None
    )
    latent.fit(X, y)
    mean = latent.predict(X)
    r2 = 1 - np.sum((y - mean) ** 2) / np.sum((y - y.mean()) ** 2)
    return SurfaceFit(metric, gp, latent, X, y, float(r2), loo_rmse(latent, X, y), noise)


def loo_rmse(gp, X: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out RMSE of a fitted GP with fixed hyperparameters, in closed form.

    With K the training covariance (kernel plus noise) on normalised targets, the LOO
    residual of point i is [K^-1 y]_i / [K^-1]_ii (Rasmussen & Williams, eq. 5.12).
    """
    scale, offset = gp._y_train_std, gp._y_train_mean
    K = gp.kernel_(X) + np.diag(np.broadcast_to(gp.alpha, (len(X),)))
    K_inv = np.linalg.inv(K)
    residuals = (K_inv @ ((y - offset) / scale)) / np.diag(K_inv) * scale
    return float(np.sqrt(np.mean(residuals**2)))


def best_alpha(
    fit: SurfaceFit,
    repetitions,
    *,
    alphas: np.ndarray | None = None,
    samples: int = 2000,
    seed: int = 0,
    return_samples: bool = False,
):
    """Posterior distribution of the best alpha at each R: one row per R.

    Columns: repetitions, alpha_median, alpha_q05, alpha_q95 (the 90% interval),
    p_interior (share of samples whose optimum is strictly inside (0, 1)), p_pure_ar,
    p_pure_md, ar_repetitions_median (alpha * R at the optimum: how often the AR objective
    effectively saw the data), and the posterior mean metric at the median best alpha.
    With `return_samples`, also the sampled best alphas, an array (len(repetitions), samples).
    """
    alphas = dense_alphas() if alphas is None else np.asarray(alphas, dtype=float)
    rng = np.random.default_rng(seed)
    rows, sampled = [], []
    for r in np.asarray(repetitions, dtype=float):
        X = inputs(np.full(len(alphas), r), alphas)
        mean, cov = fit.latent.predict(X, return_cov=True)
        draws = rng.multivariate_normal(
            mean, cov + 1e-10 * np.eye(len(alphas)), size=samples, method="cholesky"
        )
        best = np.argmin(draws, axis=1) if fit.metric.lower_is_better else np.argmax(draws, axis=1)
        best_alphas = alphas[best]
        sampled.append(best_alphas)
        median = float(np.median(best_alphas))
        rows.append(
            {
                "repetitions": r,
                "alpha_median": median,
                "alpha_q05": float(np.quantile(best_alphas, 0.05)),
                "alpha_q95": float(np.quantile(best_alphas, 0.95)),
                "p_interior": float(np.mean((best > 0) & (best < len(alphas) - 1))),
                "p_pure_ar": float(np.mean(best == len(alphas) - 1)),
                "p_pure_md": float(np.mean(best == 0)),
                "ar_repetitions_median": float(np.median(best_alphas * r)),
                "metric_at_median": float(fit.predict([r], [median])[0]),
            }
        )
    summary = pd.DataFrame(rows)
    return (summary, np.array(sampled)) if return_samples else summary


def repetition_grid(table: pd.DataFrame, per_doubling: int = 4) -> np.ndarray:
    """R from the smallest to the largest trained, `per_doubling` points per factor of 2."""
    low, high = np.log2(table["repetitions"].min()), np.log2(table["repetitions"].max())
    return 2 ** np.linspace(low, high, int(round((high - low) * per_doubling)) + 1)
