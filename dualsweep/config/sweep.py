"""A sweep file: a base run config plus the (alpha, repetitions) points and seeds to train.

Points come as a product of lists (`grid`: every cell, or with `design: checkerboard` the
cells whose alpha and repetition indices have an even sum, half the grid spread evenly over
it), as an explicit list (`points`), or both (their union). A `search` section adds alphas
chosen as results come in (sweep/searcher.py): at each of its R, the pure objectives are
fixed points (anchors) and a searcher (Optuna's samplers, or the GP design of `dualsweep
suggest`) picks `trials_per_repetition` more. Every fixed
trial's run config is built and validated when the file is loaded, so a bad point is
reported before anything launches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dualsweep.config.fields import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INTEGER,
    SEED,
    Checked,
    ConfigError,
    bound,
    build,
    check,
    coerce,
    each,
    fail,
    join,
    non_empty,
    one_of,
    parse_float,
    satisfies,
    unique,
    unknown_key,
)
from dualsweep.config.run import RunConfig
from dualsweep.schema import DEFAULT_METRIC, metric_names, pair_columns

TRIAL_DRIVER_CPU = 0.01
"""CPU a data-parallel trial's own process reserves: it only waits for its worker group, and
Ray refuses 0 (reserving a whole CPU would leave a 2-worker trial unplaceable on 2 CPUs)."""


@dataclass(frozen=True, kw_only=True)
class Resources(Checked):
    """What each trial reserves from Ray."""

    cpu: float = field(default=1.0, metadata=POSITIVE)
    """CPUs reserved per trial, or per worker when `workers` > 1 (also the torch threads of
    each training process when train.threads is 0)."""
    gpu: float = field(default=0.0, metadata=NON_NEGATIVE)
    """GPUs reserved per trial, or per worker when `workers` > 1."""
    workers: int = field(default=1, metadata=POSITIVE_INTEGER)
    """Data-parallel workers per trial. Above 1, a trial trains as a Ray Train `TorchTrainer`
    group (gloo on CPU, NCCL on GPU), possibly across nodes, each worker computing its share
    of every batch: the same numbers as one worker (to float tolerance)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.workers == 1 or self.gpu == int(self.gpu),
            "gpu",
            self.gpu,
            "each data-parallel worker needs whole GPUs (NCCL runs one worker per GPU; "
            f"workers={self.workers})",
        )

    def per_trial(self) -> dict[str, float]:
        """What a trial reserves in all: its workers', plus its own process's sliver."""
        if self.workers == 1:
            return {"CPU": self.cpu, "GPU": self.gpu}
        return {"CPU": self.workers * self.cpu + TRIAL_DRIVER_CPU, "GPU": self.workers * self.gpu}


SAMPLERS = ("gp", "tpe")


@dataclass(frozen=True, kw_only=True)
class SearchConfig(Checked):
    """Adaptive alphas: at each R, the anchors, then alphas a searcher chooses from the results
    (sweep/searcher.py; by default an Optuna sampler over alpha's log-odds)."""

    repetitions: tuple[int, ...] = field(
        metadata=non_empty("R")
        | each(bound(1, integer=True, why="repetitions must be a positive integer"))
        | unique("an R")
    )
    """The R searched; at each, alpha 0 and 1 are trained first as anchors."""
    trials_per_repetition: int = field(metadata=bound(1, integer=True))
    """Alphas the sampler chooses at each R, beyond the anchors."""
    metric: str = DEFAULT_METRIC
    """What the search optimises (a metric of `dualsweep fit`): lower is better for held-out
    losses, higher for scores."""
    # Not a Literal: `one_of` also checks a SearchConfig built in Python (simulate builds one).
    sampler: str = field(default="gp", metadata=one_of(*SAMPLERS))
    """gp: Optuna's GPSampler, a Gaussian process over log-odds with log expected improvement,
    which uses every result from the anchors on; tpe: the TPESampler (it models little before
    about ten results, more than a per-R budget usually has)."""
    seed: int = field(
        default=0, metadata=bound(0, 2**31, high_open=True, why="must be in [0, 2^31)")
    )
    """Seed of each R's sampler (offset by R), for reproducible proposals."""
    # A name, not a choice: the registry of searchers (sweep/searcher.py) sits above config.
    algorithm: str = field(
        default="optuna",
        metadata=satisfies(str.isidentifier, "must be a searcher's name, e.g. optuna or suggest"),
    )
    """Who proposes the alphas: optuna (a sampler per R, as `sampler` says, one proposal per
    free trial slot) or suggest (the GP design of `dualsweep suggest`, `round_size` points a
    round over every R, each round from every result so far); sweep/searcher.py's registry."""
    round_size: int = field(default=6, metadata=bound(1, integer=True))
    """Points per round of the suggest algorithm."""

    @property
    def lower_is_better(self) -> bool:
        return not self.metric.startswith("score_")


@dataclass(frozen=True)
class Point(Checked):
    """One (alpha, repetitions) cell of a sweep's design."""

    alpha: float = field(metadata=bound(0, 1, why="alpha must be in [0, 1]"))
    """Weight of the first objective."""
    # Not `integer=True`: a design computed with numpy may hand over numpy integers.
    repetitions: int = field(metadata=bound(1, why="repetitions must be a positive integer"))
    """R: how many times the unique data is seen."""


def is_plain_name(name: str) -> bool:
    """A name that is one folder: results/<name>/."""
    return bool(name) and not any(c in name for c in "/\\ ") and not name.startswith(".")


@dataclass(frozen=True, kw_only=True)
class SweepConfig(Checked):
    """A base run config, the fixed points to train it at, and how to run them."""

    name: str = field(
        metadata=satisfies(is_plain_name, "must be a non-empty name without slashes or spaces")
    )
    """Sweep name: results go to results/<name>/."""
    base: RunConfig
    """The run config shared by every trial."""
    points: tuple[Point, ...]
    """The (alpha, repetitions) design, in file order, without duplicates."""
    seeds: tuple[int, ...] = field(
        default=(0,), metadata=non_empty("seed") | unique("a seed") | each(SEED)
    )
    """Training seeds: every point is trained once per seed (default: the base's train.seed)."""
    resources: Resources = field(default_factory=Resources)
    """Resources reserved per trial."""
    max_concurrent_trials: int = field(default=0, metadata=NON_NEGATIVE)
    """Trials running at once (0 = as many as the resources allow)."""
    retries: int = field(default=1, metadata=NON_NEGATIVE)
    """Times a failed trial is retried before it is recorded as failed."""
    description: str = ""
    """Why this sweep exists and what its points are."""
    search: SearchConfig | None = None
    """Alphas chosen as results come in (its anchors are among `points`); None: fixed points only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        base, search = self.base, self.search
        if search:
            choices = metric_names(
                pair_columns(base.objective.objectives),
                base.evaluation.modes,
                (*base.evaluation.task_names, *base.evaluation.lm_eval_tasks),
            )
            check(
                search.metric in choices,
                "search.metric",
                search.metric,
                f"must be one of {', '.join(choices)}",
            )
            check(
                self.seeds == (base.train.seed,),
                "seeds",
                list(self.seeds),
                f"a sweep with `search` trains the base's seed (train.seed = {base.train.seed}): "
                "the sampler compares single runs; set base train.seed, or search once per seed "
                "in separate sweeps",
            )
        workers = self.resources.workers
        check(
            base.train.batch_size % workers == 0,
            "resources.workers",
            workers,
            f"must divide base.train.batch_size ({base.train.batch_size}): each worker trains "
            "an equal share of every batch",
        )
        check(
            not (base.train.device == "cuda" and self.resources.gpu == 0),
            "resources.gpu",
            0,
            "is 0 but base.train.device is 'cuda': reserve a GPU per trial",
        )
        for i, point in enumerate(self.points):
            try:
                base.replace(alpha=point.alpha, repetitions=point.repetitions)
            except ConfigError as e:
                raise ConfigError(
                    f"points[{i}] (alpha={point.alpha}, repetitions={point.repetitions}): {e}"
                ) from None

    def trials(self) -> list[RunConfig]:
        """One run config per fixed (point, seed), in file order (searched trials come later)."""
        return [
            self.base.replace(alpha=p.alpha, repetitions=p.repetitions, seed=s)
            for p in self.points
            for s in self.seeds
        ]


# A sweep file's keys: SweepConfig's fields, `base` as a mapping or a path, and the keys that
# `points` is computed from.
FILE_KEYS = ("base_overrides", "grid", "design")
SWEEP_KEYS = (*(f.name for f in dataclasses.fields(SweepConfig)), *FILE_KEYS)
DESIGNS = ("full", "checkerboard")


def is_sweep_mapping(raw: Any) -> bool:
    return isinstance(raw, dict) and "base" in raw


def sweep_from_dict(raw: dict, base: RunConfig) -> SweepConfig:
    """The sweep of the sweep-level keys of `raw`; `base` is the already-built base run config.
    Every rule is SweepConfig's: here the keys are only read and the points computed."""
    for key in raw:
        if key not in SWEEP_KEYS:
            unknown_key(str(key), raw[key], SWEEP_KEYS, what="sweep field")
    search = build(SearchConfig, raw["search"], "search") if "search" in raw else None
    as_written = {k: v for k, v in raw.items() if k not in ("base", "points", "search", *FILE_KEYS)}
    computed = {"base": base, "points": _points(raw, search), "search": search}
    return build(SweepConfig, {"seeds": [base.train.seed], **as_written, **computed})


def _points(raw: dict, search: SearchConfig | None = None) -> tuple[Point, ...]:
    """The union of `grid` (a product), `points` (a list) and the search's anchors (alpha 0
    and 1 at each searched R, unless listed already); duplicates in the file refused."""
    if "design" in raw and "grid" not in raw:
        fail("design", raw["design"], "applies to a `grid`, and this sweep has none")
    if "grid" not in raw and "points" not in raw and search is None:
        raise ConfigError(
            "points: a sweep needs `grid` (lists of alpha and repetitions), `points` or `search`"
        )
    listed: list[tuple[str, Point]] = []
    if "grid" in raw:
        grid = raw["grid"]
        if not isinstance(grid, dict) or set(grid) != {"alpha", "repetitions"}:
            fail("grid", grid, "must be a mapping with exactly the keys alpha and repetitions")
        for key in ("alpha", "repetitions"):
            if not isinstance(grid[key], list) or not grid[key]:
                fail(f"grid.{key}", grid[key], "must be a non-empty list")
        design = raw.get("design", "full")
        if design not in DESIGNS:
            fail("design", design, f"must be one of {', '.join(DESIGNS)}")
        for i, a in enumerate(grid["alpha"]):
            for j, r in enumerate(grid["repetitions"]):
                if design == "checkerboard" and (i + j) % 2:
                    continue
                where = f"grid (alpha[{i}], repetitions[{j}])"
                listed.append((where, _point(a, r, f"grid.alpha[{i}]", f"grid.repetitions[{j}]")))
    if "points" in raw:
        if not isinstance(raw["points"], list) or not raw["points"]:
            fail("points", raw["points"], "must be a non-empty list")
        for i, item in enumerate(raw["points"]):
            where = f"points[{i}]"
            if isinstance(item, dict):
                if set(item) != {"alpha", "repetitions"}:
                    fail(where, item, "must have exactly the keys alpha and repetitions")
                a, r = item["alpha"], item["repetitions"]
            elif isinstance(item, list) and len(item) == 2:
                a, r = item
            else:
                fail(where, item, "must be {alpha: A, repetitions: R} or [A, R]")
            listed.append((where, _point(a, r, join(where, "alpha"), join(where, "repetitions"))))
    seen: dict[Point, str] = {}
    for where, point in listed:
        if point in seen:
            fail(where, (point.alpha, point.repetitions), f"is listed twice (also {seen[point]})")
        seen[point] = where
    for r in search.repetitions if search else ():
        for alpha in (0.0, 1.0):
            seen.setdefault(Point(alpha=alpha, repetitions=r), "search anchor")
    return tuple(seen)


def _point(alpha: Any, repetitions: Any, alpha_path: str, r_path: str) -> Point:
    """A point of the file's `alpha` and `repetitions`, found at `alpha_path` and `r_path`."""
    a, r = parse_float(alpha, alpha_path), coerce(repetitions, int, r_path)
    try:
        return Point(alpha=a, repetitions=r)
    except ConfigError as e:  # named by the field; the file's reader needs the place
        name, _, why = str(e).partition(": ")
        raise ConfigError(f"{alpha_path if name == 'alpha' else r_path}: {why}") from None
