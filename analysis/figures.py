"""The figures, each saved as PNG and PDF, readable without the code (labelled axes, units, legends).

Alpha axes are on the log-odds scale, where the paper's grid is evenly spaced; the pure
objectives 0 and 1 sit one grid step beyond 1/256 and 255/256 (see `dualsweep.schema.ALPHA_CLIP`).
The objectives are the runs' pair (`analysis.data.pair`): alpha weighs the first.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dualsweep.schema import alpha_log_odds

from .data import pair
from .surface import SurfaceFit, dense_alphas
from .tables import alpha_label

# Figures are made as `Figure` objects, not through pyplot: they are only ever saved to
# files, so no backend is chosen and a notebook user's backend is left as it was.

GRID_ALPHAS = (0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16, 63 / 64, 255 / 256, 1)


def save(fig, directory: Path, name: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    # No creation date in the PDF: the same tables give the same bytes, so a re-run of
    # `make plots` on committed results leaves the repository unchanged.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    return paths


def colour_limits(values, digits: int = 4) -> tuple[float, float]:
    """The ends of a colour scale over `values`, rounded outwards to `digits` significant
    digits of its span.

    A GP fit differs in its last bits between machines (BLAS builds, thread counts), and the
    PDF states the colour bar's tick positions to ten digits: with the data's own min and max
    as the ends, `make plots` on the same tables rewrote the surface PDFs elsewhere. Rounded
    ends do not move with that noise (the colours, 8 bits each, never did).
    """
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    span = high - low
    if not span > 0:
        return low, high
    step = 10.0 ** (np.floor(np.log10(span)) - digits + 1)
    return float(np.floor(low / step) * step), float(np.ceil(high / step) * step)


def alpha_axis(ax, weighs: str, axis: str = "y") -> None:
    """Alpha's grid on the log-odds scale; `weighs`: the objective alpha weighs (its name)."""
    ticks = [alpha_log_odds(a) for a in GRID_ALPHAS]
    labels = [alpha_label(a) for a in GRID_ALPHAS]
    label = f"alpha, the {weighs.upper()} weight (log-odds scale)"
    if axis == "y":
        ax.set_yticks(ticks, labels)
        ax.set_ylabel(label)
    else:
        ax.set_xticks(ticks, labels, rotation=45)
        ax.set_xlabel(label)


def r_axis(ax, repetitions) -> None:
    values = sorted(set(int(r) for r in repetitions))
    ax.set_xticks(np.log2(values), [str(v) for v in values])
    ax.set_xlabel("data repetitions R (unique tokens = budget / R)")


def overfitting(curves: pd.DataFrame, table: pd.DataFrame, directory: Path) -> list[Path]:
    """The first objective's held-out loss against tokens seen for each pure objective and
    the best mix (on that loss) at each R."""
    first, second = pair(table)
    held_out, final = first.held_out, f"final_{first.held_out}"
    taken = ["alpha", "repetitions", final]
    # Curve rows may carry their trial's point already: the trial table's copy is the one used.
    curves = curves.drop(columns=taken, errors="ignore").merge(
        table[["run_key", *taken]], on="run_key"
    )
    curves = curves.dropna(subset=[held_out])
    repetitions = sorted(curves["repetitions"].unique())
    columns = min(3, len(repetitions))
    rows = int(np.ceil(len(repetitions) / columns))
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    pure_first = f"pure {first.name.upper()} (alpha = 1)"
    pure_second = f"pure {second.name.upper()} (alpha = 0)"
    styles = {pure_first: "tab:red", pure_second: "tab:blue", "best mix": "tab:green"}
    for ax, r in zip(axes.flat, repetitions, strict=False):
        at_r = curves[curves["repetitions"] == r]
        mixes = at_r[(at_r["alpha"] > 0) & (at_r["alpha"] < 1)]
        chosen = {pure_first: at_r[at_r["alpha"] == 1], pure_second: at_r[at_r["alpha"] == 0]}
        if len(mixes):
            best = mixes.loc[mixes[final].idxmin(), "run_key"]
            chosen["best mix"] = mixes[mixes["run_key"] == best]
        for label, rows_ in chosen.items():
            for _, run in rows_.groupby("run_key"):
                name = (
                    label
                    if label != "best mix"
                    else f"best mix (alpha = {alpha_label(run['alpha'].iloc[0])})"
                )
                ax.plot(
                    run["tokens_seen"],
                    run[held_out],
                    color=styles[label],
                    label=name,
                    marker=".",
                )
        ax.set_title(f"R = {int(r)}")
        ax.set_xlabel("training tokens seen")
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))  # 400k, not 400000
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"held-out {first.title} (nats/token)")
    for ax in list(axes.flat)[len(repetitions) :]:
        ax.axis("off")
    fig.suptitle(f"Overfitting under repetition: held-out {first.title} during training")
    return save(fig, directory, "overfitting")


def surface(
    fit: SurfaceFit, best: pd.DataFrame, table: pd.DataFrame, directory: Path, *, note: str = ""
) -> list[Path]:
    """The fitted surface as a heatmap, with the best-alpha ridge and its 90% band; `note`
    (e.g. too few runs to decide) as a second line of the title."""
    log_r = np.linspace(
        np.log2(table["repetitions"].min()), np.log2(table["repetitions"].max()), 120
    )
    z = alpha_log_odds(dense_alphas(160))
    grid_r, grid_z = np.meshgrid(log_r, z)
    mean = fit.latent.predict(np.column_stack([grid_r.ravel(), grid_z.ravel()])).reshape(
        grid_r.shape
    )
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    vmin, vmax = colour_limits(mean)
    image = ax.pcolormesh(
        grid_r,
        grid_z,
        mean,
        shading="auto",
        cmap="viridis_r" if fit.metric.lower_is_better else "viridis",
        vmin=vmin,
        vmax=vmax,
        # A 120 x 160 mesh as PDF vectors is 19,200 paths: ~300 KB and most of `make plots`'
        # time. Rasterised inside the PDF (the axes, labels and ridge stay vectors).
        rasterized=True,
    )
    fig.colorbar(image, ax=ax, label=fit.metric.label)
    x = np.log2(best["repetitions"])
    # The band is drawn as its two edges over a faint fill, so the surface stays readable
    # under it (an opaque band hid the colours where the answer is).
    low, high = alpha_log_odds(best["alpha_q05"]), alpha_log_odds(best["alpha_q95"])
    ax.fill_between(x, low, high, color="white", alpha=0.12, lw=0)
    ax.plot(x, low, color="white", lw=1, ls="--", label="best alpha, 90% interval")
    ax.plot(x, high, color="white", lw=1, ls="--")
    ax.plot(
        x,
        alpha_log_odds(best["alpha_median"]),
        color="white",
        lw=2,
        label="best alpha, posterior median",
    )
    ax.scatter(
        np.log2(table["repetitions"]),
        alpha_log_odds(table["alpha"]),
        c="black",
        s=14,
        label="trained models",
    )
    r_axis(ax, table["repetitions"])
    alpha_axis(ax, pair(table)[0].name)
    ax.set_title(
        f"GP surface of {fit.metric.column} (R^2 {fit.r2:.3f}, LOO RMSE {fit.loo_rmse:.3g})"
        + (f"\n{note}" if note else "")
    )
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    return save(fig, directory, f"surface_{fit.metric.column.replace(':', '_')}")


def best_alpha_density(
    targets: dict[str, tuple[pd.DataFrame, np.ndarray]],
    table: pd.DataFrame,
    directory: Path,
    *,
    note: str = "",
) -> list[Path]:
    """Posterior density of the best alpha against R, one panel per target metric; `note`
    (e.g. too few runs to decide) as the figure's title."""
    fig = Figure(figsize=(6.5 * len(targets), 5), layout="constrained")
    axes = fig.subplots(1, len(targets), squeeze=False)
    bins = np.linspace(alpha_log_odds(0.0), alpha_log_odds(1.0), 41)
    for ax, (name, (best, samples)) in zip(axes.flat, targets.items(), strict=True):
        x = np.log2(best["repetitions"].to_numpy())
        density = np.stack(
            [np.histogram(alpha_log_odds(s), bins=bins)[0] / len(s) for s in samples], axis=1
        )
        edges = np.concatenate(
            [[x[0] - (x[1] - x[0]) / 2], (x[1:] + x[:-1]) / 2, [x[-1] + (x[-1] - x[-2]) / 2]]
        )
        image = ax.pcolormesh(edges, bins, density, cmap="magma", shading="flat")
        fig.colorbar(image, ax=ax, label="posterior probability of the best alpha")
        ax.plot(x, alpha_log_odds(best["alpha_median"]), color="cyan", lw=1.5, label="median")
        heavy = 2**x >= 16  # the rule is about heavy repetition, where 16 / R <= 1
        ax.plot(
            x[heavy],
            alpha_log_odds(16 / 2 ** x[heavy]),
            "w--",
            lw=1,
            label="alpha x R = 16 (paper's rule)",
        )
        r_axis(ax, table["repetitions"])
        alpha_axis(ax, pair(table)[0].name)
        ax.set_title(f"best alpha for {name}")
        ax.legend(loc="lower left", fontsize=8)
    if note:
        fig.suptitle(note)
    return save(fig, directory, "best_alpha_density")


def prefix_gain(table: pd.DataFrame, directory: Path) -> list[Path]:
    """Normalised score of prefix-LM scoring minus AR scoring, against alpha, one line per R,
    with error bars of one standard error.

    The tables keep each score's standard error, not the per-item answers, so a run's gain
    has error sqrt(SE_prefix² + SE_AR²): that ignores the correlation of two scores of the
    same items (positive, so the true error is smaller; the bars are conservative). A point
    trained with several seeds shows their mean, with error sqrt(sum of squares) / seeds.
    """
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    colours = matplotlib.colormaps["plasma"](np.linspace(0, 0.9, table["repetitions"].nunique()))
    runs = table[["repetitions", "alpha"]].copy()
    runs["gain"] = table["score_prefix"] - table["score_ar"]
    has_stderr = {"score_prefix_stderr", "score_ar_stderr"} <= set(table.columns)
    runs["variance"] = (
        table["score_prefix_stderr"] ** 2 + table["score_ar_stderr"] ** 2 if has_stderr else np.nan
    )
    points = runs.groupby(["repetitions", "alpha"]).agg(
        gain=("gain", "mean"),
        variance=("variance", lambda v: v.sum(min_count=len(v))),
        seeds=("gain", "size"),
    )
    points["stderr"] = np.sqrt(points["variance"]) / points["seeds"]
    points = points.reset_index()
    # Lines at the same alphas are set a little apart, so their error bars do not overlap.
    n = len(colours)
    for i, (colour, (r, rows)) in enumerate(
        zip(colours, points.groupby("repetitions"), strict=True)
    ):
        ax.errorbar(
            alpha_log_odds(rows["alpha"]) + 0.08 * (i - (n - 1) / 2),
            rows["gain"],
            yerr=rows["stderr"],
            marker="o",
            markersize=4,
            capsize=2,
            elinewidth=0.8,
            color=colour,
            label=f"R = {int(r)}",
        )
    ax.axhline(0, color="grey", lw=0.8)
    alpha_axis(ax, pair(table)[0].name, "x")
    ax.set_ylabel("prefix-LM minus AR score (normalised points)")
    ax.set_title("Gain of prefix-LM over AR scoring (mean over tasks)")
    bars = (
        "bars: ±1 SE = sqrt(SE_prefix² + SE_AR²),\nthe scores' correlation ignored (conservative)"
        if has_stderr
        else "no standard errors recorded"
    )
    # Outside the axes: inside, the legend hid the ends of the bars.
    ax.legend(fontsize=7, title=bars, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    return save(fig, directory, "prefix_gain")
