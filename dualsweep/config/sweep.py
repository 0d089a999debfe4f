"""A sweep file: a base run config plus the (alpha, repetitions) points and seeds to train.

Points come as a product of lists (`grid`: every cell, or with `design: checkerboard` the
cells whose alpha and repetition indices have an even sum, half the grid spread evenly over
it), as an explicit list (`points`), or both (their union). A `search` section adds alphas
chosen as results come in (sweep/search.py): at each of its R, the pure objectives are fixed
points (anchors) and an Optuna sampler picks `trials_per_repetition` more. Every fixed
trial's run config is built and validated when the file is loaded, so a bad point is
reported before anything launches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dualsweep.config.fields import ConfigError, build, coerce, fail, join, parse_float, unknown_key
from dualsweep.config.run import RunConfig
from dualsweep.schema import metric_names, pair_columns

TRIAL_DRIVER_CPU = 0.01
"""CPU a data-parallel trial's own process reserves: it only waits for its worker group, and
Ray refuses 0 (reserving a whole CPU would leave a 2-worker trial unplaceable on 2 CPUs)."""


@dataclass(frozen=True, kw_only=True)
class Resources:
    cpu: float = 1.0
    """CPUs reserved per trial, or per worker when `workers` > 1 (also the torch threads of
    each training process when train.threads is 0)."""
    gpu: float = 0.0
    """GPUs reserved per trial, or per worker when `workers` > 1."""
    workers: int = 1
    """Data-parallel workers per trial. Above 1, a trial trains as a Ray Train `TorchTrainer`
    group (gloo on CPU, NCCL on GPU), possibly across nodes, each worker computing its share
    of every batch: the same numbers as one worker (to float tolerance)."""

    def __post_init__(self) -> None:
        if self.cpu <= 0:
            raise ConfigError(f"cpu: must be positive (got {self.cpu!r})")
        if self.gpu < 0:
            raise ConfigError(f"gpu: must be >= 0 (got {self.gpu!r})")
        if self.workers < 1:
            raise ConfigError(f"workers: must be a positive integer (got {self.workers!r})")
        if self.workers > 1 and 0 < self.gpu != int(self.gpu):
            raise ConfigError(
                f"gpu: each data-parallel worker needs whole GPUs (NCCL runs one worker per GPU; "
                f"got {self.gpu!r} with workers={self.workers})"
            )

    def per_trial(self) -> dict[str, float]:
        """What a trial reserves in all: its workers', plus its own process's sliver."""
        if self.workers == 1:
            return {"CPU": self.cpu, "GPU": self.gpu}
        return {"CPU": self.workers * self.cpu + TRIAL_DRIVER_CPU, "GPU": self.workers * self.gpu}


SAMPLERS = ("gp", "tpe")


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Adaptive alphas: at each R, an Optuna sampler over alpha's log-odds (sweep/search.py)."""

    repetitions: tuple[int, ...]
    """The R searched; at each, alpha 0 and 1 are trained first as anchors."""
    trials_per_repetition: int
    """Alphas the sampler chooses at each R, beyond the anchors."""
    metric: str = "final_held_out_ar_loss"
    """What the search optimises (a metric of `dualsweep fit`): lower is better for held-out
    losses, higher for scores."""
    sampler: str = "gp"
    """gp: Optuna's GPSampler, a Gaussian process over log-odds with log expected improvement,
    which uses every result from the anchors on; tpe: the TPESampler (it models little before
    about ten results, more than a per-R budget usually has)."""
    seed: int = 0
    """Seed of each R's sampler (offset by R), for reproducible proposals."""

    def __post_init__(self) -> None:
        if not self.repetitions:
            fail("repetitions", list(self.repetitions), "must list at least one R")
        for i, r in enumerate(self.repetitions):
            if r < 1:
                fail(f"repetitions[{i}]", r, "repetitions must be a positive integer")
        if len(set(self.repetitions)) != len(self.repetitions):
            fail("repetitions", list(self.repetitions), "lists an R twice")
        if self.trials_per_repetition < 1:
            fail("trials_per_repetition", self.trials_per_repetition, "must be >= 1")
        if self.sampler not in SAMPLERS:
            fail("sampler", self.sampler, f"must be one of {', '.join(SAMPLERS)}")
        if not 0 <= self.seed < 2**31:
            fail("seed", self.seed, "must be in [0, 2^31)")

    @property
    def lower_is_better(self) -> bool:
        return not self.metric.startswith("score_")


@dataclass(frozen=True)
class Point:
    alpha: float
    repetitions: int


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    name: str
    """Sweep name: results go to results/<name>/."""
    base: RunConfig
    """The run config shared by every trial."""
    points: tuple[Point, ...]
    """The (alpha, repetitions) design, in file order, without duplicates."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds: every point is trained once per seed (default: the base's train.seed)."""
    resources: Resources = field(default_factory=Resources)
    """Resources reserved per trial."""
    max_concurrent_trials: int = 0
    """Trials running at once (0 = as many as the resources allow)."""
    retries: int = 1
    """Times a failed trial is retried before it is recorded as failed."""
    description: str = ""
    """Why this sweep exists and what its points are."""
    search: SearchConfig | None = None
    """Alphas chosen as results come in (its anchors are among `points`); None: fixed points only."""

    def trials(self) -> list[RunConfig]:
        """One run config per fixed (point, seed), in file order (searched trials come later)."""
        return [
            self.base.replace(alpha=p.alpha, repetitions=p.repetitions, seed=s)
            for p in self.points
            for s in self.seeds
        ]


SWEEP_KEYS = (
    "name",
    "description",
    "base",
    "base_overrides",
    "grid",
    "design",
    "points",
    "seeds",
    "resources",
    "max_concurrent_trials",
    "retries",
    "search",
)
DESIGNS = ("full", "checkerboard")


def is_sweep_mapping(raw: Any) -> bool:
    return isinstance(raw, dict) and "base" in raw


def sweep_from_dict(raw: dict, base: RunConfig) -> SweepConfig:
    """Validate the sweep-level keys of `raw`; `base` is the already-built base run config."""
    for key in raw:
        if key not in SWEEP_KEYS:
            unknown_key(str(key), raw[key], SWEEP_KEYS, what="sweep field")
    if "name" not in raw:
        raise ConfigError("name: required field is missing")
    name = coerce(raw["name"], str, "name")
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        fail("name", name, "must be a non-empty name without slashes or spaces")
    search = _search(raw, base)
    points = _points(raw, search)
    seeds = coerce(raw.get("seeds", [base.train.seed]), tuple[int, ...], "seeds")
    if not seeds:
        fail("seeds", seeds, "must list at least one seed")
    if len(set(seeds)) != len(seeds):
        fail("seeds", list(seeds), "lists a seed twice")
    for i, seed in enumerate(seeds):
        if not 0 <= seed < 2**32:
            fail(f"seeds[{i}]", seed, "must be in [0, 2^32)")
    max_concurrent = coerce(raw.get("max_concurrent_trials", 0), int, "max_concurrent_trials")
    if max_concurrent < 0:
        fail("max_concurrent_trials", max_concurrent, "must be >= 0")
    retries = coerce(raw.get("retries", 1), int, "retries")
    if retries < 0:
        fail("retries", retries, "must be >= 0")
    sweep = SweepConfig(
        name=name,
        base=base,
        points=points,
        seeds=seeds,
        resources=build(Resources, raw.get("resources"), "resources"),
        max_concurrent_trials=max_concurrent,
        retries=retries,
        description=coerce(raw.get("description", ""), str, "description"),
        search=search,
    )
    if search and seeds != (base.train.seed,):
        fail(
            "seeds",
            list(seeds),
            f"a sweep with `search` trains the base's seed (train.seed = {base.train.seed}): "
            "the sampler compares single runs; set base train.seed, or search once per seed "
            "in separate sweeps",
        )
    workers = sweep.resources.workers
    if base.train.batch_size % workers:
        fail(
            "resources.workers",
            workers,
            f"must divide base.train.batch_size ({base.train.batch_size}): each worker trains "
            "an equal share of every batch",
        )
    if base.train.device == "cuda" and sweep.resources.gpu == 0:
        fail("resources.gpu", 0, "is 0 but base.train.device is 'cuda': reserve a GPU per trial")
    for i, point in enumerate(points):
        try:
            base.replace(alpha=point.alpha, repetitions=point.repetitions)
        except ConfigError as e:
            raise ConfigError(
                f"points[{i}] (alpha={point.alpha}, repetitions={point.repetitions}): {e}"
            ) from None
    return sweep


def _search(raw: dict, base: RunConfig) -> SearchConfig | None:
    if "search" not in raw:
        return None
    search = build(SearchConfig, raw["search"], "search")
    choices = metric_names(
        pair_columns(base.objective.objectives),
        base.evaluation.modes,
        (*base.evaluation.task_names, *base.evaluation.lm_eval_tasks),
    )
    if search.metric not in choices:
        fail("search.metric", search.metric, f"must be one of {', '.join(choices)}")
    return search


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
    a = parse_float(alpha, alpha_path)
    if not 0.0 <= a <= 1.0:
        fail(alpha_path, alpha, "alpha must be in [0, 1]")
    r = coerce(repetitions, int, r_path)
    if r < 1:
        fail(r_path, repetitions, "repetitions must be a positive integer")
    return Point(alpha=a, repetitions=r)
