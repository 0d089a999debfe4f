"""What dualsweep writes, named once: file names, result columns and metric definitions.

Bottom layer: no torch, no Ray. `results/README.md` describes every column named here (a
test checks it). Per-objective columns follow one naming rule, so an objective added to the
registry (`dualsweep.objectives`) gets its curve, summary and metric columns without any
other module changing:

- training curve: `train_<name>_loss`;
- held-out curve: `held_out_<name>_loss` for an exact negative log-likelihood, or
  `held_out_<name>_elbo` for a bound (masked diffusion), plus `_stderr` where the value is a
  Monte-Carlo estimate over masking draws;
- run summary: `final_` and `best_` of each held-out column, and `final_` of its `_stderr`.

It also holds the torch-free halves of the registries (objectives' columns and scoring modes,
data sources, task names), which the config checks names against. Their registries, in
higher layers, add to them when a module registers something: what a config may name thus
depends on what the process imported, which `train.plugins` makes explicit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# -- files ---------------------------------------------------------------------------
# A run folder (`dualsweep train --out DIR`, or one sweep trial's folder).
CONFIG_FILE = "config.yaml"  # the fully resolved run config
CURVE_FILE = "curve.parquet"  # one row per logged step
SUMMARY_FILE = "summary.parquet"  # one row: the run's outcome
CHECKPOINT_FILE = "checkpoint.pt"  # resumable state, deleted once the run finishes
MODEL_FILE = "model.pt"  # the final weights (a state_dict)
TOKENIZER_FILE = "tokenizer.json"  # a copy of the corpus's tokenizer (text corpora)
CORPUS_FILE = "corpus.json"  # what using the model needs of its corpus: special ids, its hash
EVALS_FILE = "evals.parquet"  # multiple-choice results of the final model
TRAIN_LOG_FILE = "train.log"  # a sweep trial's log lines
RUN_MARKER_FILE = ".dualsweep-run"  # written first: this folder is a run (its key inside)
RUN_LOCK_FILE = ".run.lock"  # held by the process training into the folder
ATTEMPTS_FILE = "attempts.jsonl"  # a sweep trial: one line per start
EVAL_ERROR_FILE = "evaluation_error.txt"  # a sweep trial: why its last evaluation failed
TRIAL_LOCK_FILE = ".lock"  # a sweep trial: held while a process works on it

# A sweep's tables, in results/<sweep>/: every trial folder collected (see sweep/trials.py).
RESULTS_ROOT = "results"
RUNS_TABLE = "runs.parquet"  # one row per trial: its summary and sweep columns
CURVES_TABLE = "curves.parquet"  # every trial's curve rows, keyed by run_key
EVALS_TABLE = "evals.parquet"  # multiple-choice results, task x mode rows per run_key
DRIVER_LOCK_FILE = ".driver.lock"  # held by the one sweep driver writing the tables
SEARCH_FILE = "search.db"  # a sweep with `search`: its Optuna studies (SQLite, one per R)
SUGGESTED_FILE = "suggested.json"  # a sweep with `search.algorithm: suggest`: every point it asked
REPORT_FILE = "REPORT.md"  # a generated report: results/<sweep>/, an adaptive or simulation folder

# `dualsweep simulate --out DIR` (designs against a known truth).
SIMULATIONS_TABLE = "simulations.parquet"  # one row per (truth, design, study, runs)
SIMULATION_SETUP_FILE = "setup.json"  # the command's settings, which the report restates


# -- per-objective columns -----------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveColumns:
    """The columns one training objective contributes to the curves and summaries."""

    name: str
    """Short name in column names and logs: ar, md."""
    bound: bool
    """Its loss is an upper bound on the negative log-likelihood (an ELBO), not the NLL."""
    estimated: bool
    """Its held-out value averages random masking draws, so it has a standard error."""

    @property
    def title(self) -> str:
        """How logs name its held-out value: "AR loss", "MD ELBO"."""
        return f"{self.name.upper()} {'ELBO' if self.bound else 'loss'}"

    @property
    def train(self) -> str:
        return f"train_{self.name}_loss"

    @property
    def held_out(self) -> str:
        return f"held_out_{self.name}_{'elbo' if self.bound else 'loss'}"

    @property
    def held_out_stderr(self) -> str | None:
        return f"{self.held_out}_stderr" if self.estimated else None

    @property
    def held_out_columns(self) -> tuple[str, ...]:
        return (self.held_out,) + ((self.held_out_stderr,) if self.estimated else ())

    @property
    def summary_columns(self) -> tuple[str, ...]:
        """final_ and best_ of the held-out value, then final_ of its standard error."""
        columns = (f"final_{self.held_out}", f"best_{self.held_out}")
        return columns + ((f"final_{self.held_out_stderr}",) if self.estimated else ())


AR_COLUMNS = ObjectiveColumns("ar", bound=False, estimated=False)
MD_COLUMNS = ObjectiveColumns("md", bound=True, estimated=True)

DEFAULT_METRIC = f"final_{AR_COLUMNS.held_out}"
"""What a search minimises and `fit`/`suggest` fit unless told otherwise: the final held-out AR loss."""

OBJECTIVE_COLUMNS: dict[str, ObjectiveColumns] = {"ar": AR_COLUMNS, "md": MD_COLUMNS}
CAUSAL_OBJECTIVES: set[str] = {"ar"}
"""Objectives that attend causally (the registry adds each registered one that does): the
plan counts their attention at half (sweep/plan.py)."""
"""The columns of each objective by name: the torch-free half of the objective registry
(`dualsweep.objectives.register` adds a new objective's), for code that writes result rows
without importing torch (a sweep driver recording a trial that died)."""


_SUMMARY_HELD_OUT = re.compile(r"final_held_out_(?P<name>.+)_(?P<kind>loss|elbo)")


def objectives_in(columns: Iterable[str], pair: Sequence[str] = ()) -> tuple[ObjectiveColumns, ...]:
    """The objectives whose run-summary columns are among `columns`, read back by the naming
    rule: `final_held_out_<name>_loss` (an exact loss) or `final_held_out_<name>_elbo` (a
    bound), estimated where its `_stderr` column is there too. Ordered as `pair` (the runs'
    `objective.objectives`) names them, then in registered order, then by name; so analysis
    code finds a newly registered objective in the tables without naming it."""
    columns = set(columns)
    found = {}
    for column in columns:
        match = _SUMMARY_HELD_OUT.fullmatch(column)
        if match:
            name, kind = match["name"], match["kind"]
            estimated = f"{column}_stderr" in columns
            found[name] = ObjectiveColumns(name, bound=kind == "elbo", estimated=estimated)
    order = {n: i for i, n in enumerate(dict.fromkeys([*pair, *OBJECTIVE_COLUMNS]))}
    return tuple(found[n] for n in sorted(found, key=lambda n: (order.get(n, len(order)), n)))


def pair_columns(names: Sequence[str]) -> tuple[ObjectiveColumns, ...]:
    """The columns of the objectives `names` (a run's `objective.objectives`); an objective this
    process has not registered gets the naming rule's columns of an exact loss."""
    return tuple(
        OBJECTIVE_COLUMNS.get(n, ObjectiveColumns(n, bound=False, estimated=False)) for n in names
    )


# The multiple-choice scoring modes of the built-in objectives (a scoring objective's mode is
# its name: ar, md) and prefix-LM. The config and the command line check modes against this
# torch-free list; `evaluate.scoring.scoring_modes()` derives the same list from the registry
# (tests/test_objectives.py checks they agree).
SCORING_MODES: list[str] = ["ar", "md", "prefix"]


# -- data sources ----------------------------------------------------------------------
@dataclass(frozen=True)
class DataSourceFields:
    """What the config knows of a data source: the torch-free half of its registry entry
    (`dualsweep.data.sources`, which reads the documents)."""

    name: str
    """The value of `data.source` that selects it."""
    required: tuple[str, ...] = ()
    """`data.` fields it cannot do without: a config leaving one empty is refused."""
    identity: tuple[str, ...] = ()
    """`data.` fields that change the documents it gives, beyond what its fingerprint covers:
    every cache key of a corpus prepared from it holds them."""
    token_ids: bool = False
    """It gives token ids split at `data.shard_eos_id` (no tokenizer), not text."""


DATA_SOURCES: dict[str, DataSourceFields] = {
    "builtin": DataSourceFields("builtin"),
    "text_dir": DataSourceFields("text_dir", required=("path",)),
    "jsonl": DataSourceFields("jsonl", required=("path",), identity=("text_field",)),
    "shards": DataSourceFields(
        "shards", required=("path",), identity=("shard_eos_id", "shard_dtype"), token_ids=True
    ),
    "hf": DataSourceFields("hf", required=("hf_dataset",), identity=("text_field",)),
}
"""The data sources a config accepts, by name (`dualsweep.data.sources.register_source` adds
a new one's), so that the config checks `data.source` without importing the readers."""

TASK_NAMES: list[str] = ["continuation", "word_order", "cloze"]
"""The multiple-choice tasks built from a corpus's held-out documents, by name: the torch-free
half of the task registry (`dualsweep.evaluate.task_registry.register_task` adds a new task's
name), which the config checks `evaluation.tasks` against."""


# -- curves ----------------------------------------------------------------------------
# One row per logged step. Held-out columns are NaN on rows without an evaluation; train
# columns are NaN on the step-0 row (before any update) and where an objective was absent.
CURVE_LEADING = ("step", "tokens_seen", "epoch", "lr", "train_loss")
CURVE_TRAILING = ("tokens_per_s", "elapsed_s")


def curve_columns(objectives: Sequence[ObjectiveColumns] = (AR_COLUMNS, MD_COLUMNS)):
    """A curve's columns: the leading ones, each objective's training loss, each objective's
    held-out values, the throughput ones."""
    return (
        *CURVE_LEADING,
        *(o.train for o in objectives),
        *(column for o in objectives for column in o.held_out_columns),
        *CURVE_TRAILING,
    )


def summary_metric_columns(objectives: Sequence[ObjectiveColumns] = (AR_COLUMNS, MD_COLUMNS)):
    """The held-out columns of a run summary, objective by objective."""
    return tuple(column for o in objectives for column in o.summary_columns)


# -- sweep tables ----------------------------------------------------------------------
# Added to each summary row when a sweep collects its trials into runs.parquet.
SWEEP_COLUMNS = (
    "sweep",
    "attempts",
    "attempt_nodes",
    "evaluated",
    "evaluation_error",
    "trial_dir",
    "in_sweep",
)

# evals.parquet (and a run's evals.parquet): one row per task x scoring mode.
EVAL_COLUMNS = (
    "run_key",
    "task",
    "mode",
    "strategy",
    "n_items",
    "chance",
    "accuracy",
    "normalized_score",
    "stderr",
    "accuracy_per_token",
    "normalized_score_per_token",
    "stderr_per_token",
    "scoring_time_s",
    "requested_task",
    "item_limit",
    "num_fewshot",
    "acc",
    "acc_stderr",
    "acc_norm",
    "acc_norm_stderr",
)
HARNESS_METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
"""Evals columns as lm-evaluation-harness reports them (NaN on rows of other tasks)."""


# -- alpha's scale -----------------------------------------------------------------------
# The paper's alpha grid {0, 1/256, ..., 1/2, ..., 255/256, 1} is symmetric in log-odds, so
# surfaces are fitted and alphas searched on that scale. The pure objectives (0 and 1) have no
# log-odds: they sit at 1/1024 and 1023/1024, one grid step (a factor of 4 in the odds) beyond
# 1/256 and 255/256, as the grid's own spacing continues.
ALPHA_CLIP = 1 / 1024
ALPHA_LOG_ODDS_BOUND = math.log((1 - ALPHA_CLIP) / ALPHA_CLIP)
"""The log-odds of 1 - ALPHA_CLIP: where the pure objective alpha = 1 sits (alpha = 0 at minus it)."""


def alpha_log_odds(alpha):
    """log(alpha / (1 - alpha)), alpha clipped to [ALPHA_CLIP, 1 - ALPHA_CLIP] first: the scale
    surfaces are fitted and alphas searched on. A float for a number, an array for an array."""
    if isinstance(alpha, (int, float)):
        a = min(max(float(alpha), ALPHA_CLIP), 1 - ALPHA_CLIP)
        return math.log(a / (1 - a))
    import numpy as np  # (arrays only: the config layer imports this module, not numpy)

    a = np.clip(np.asarray(alpha, dtype=float), ALPHA_CLIP, 1 - ALPHA_CLIP)
    z = np.log(a / (1 - a))
    return float(z) if z.ndim == 0 else z


def alpha_from_log_odds(z):
    """The logistic of `z`, the inverse of `alpha_log_odds` inside its bounds."""
    if isinstance(z, (int, float)):
        return 1 / (1 + math.exp(-z))
    import numpy as np

    a = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return float(a) if a.ndim == 0 else a


# -- metrics ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A column the analysis can fit: which way is better, its standard error, its label."""

    column: str
    lower_is_better: bool
    stderr_column: str | None

    @property
    def label(self) -> str:
        if self.column.startswith("score_"):
            return f"{self.column} (normalised score, 0 = chance)"
        return f"{self.column} (nats/token)"


def held_out_title(column: str) -> str:
    """'AR loss' for `final_held_out_ar_loss`, 'MD ELBO' for `best_held_out_md_elbo`, ..."""
    name, kind = (
        column.removeprefix("final_").removeprefix("best_").removeprefix("held_out_").rsplit("_", 1)
    )
    return f"{name.upper()} {'ELBO' if kind == 'elbo' else 'loss'}"


def metric_names(
    objectives: Sequence[ObjectiveColumns], modes: Sequence[str], tasks: Sequence[str]
) -> tuple[str, ...]:
    """Every metric a run of this objective pair, scored in these modes on these tasks (their
    names: a file task by its stem), can be fitted on: its held-out `final_`/`best_` values and
    `score_<mode>`, `score_<mode>_per_token` and `score_<mode>:<task>`."""
    held_out = tuple(c for c in summary_metric_columns(objectives) if not c.endswith("_stderr"))
    scores = tuple(
        name
        for mode in (modes if tasks else ())
        for name in (
            f"score_{mode}",
            f"score_{mode}_per_token",
            *(f"score_{mode}:{t}" for t in tasks),
        )
    )
    return held_out + scores


def is_loss_metric(column: str) -> bool:
    """A run summary's held-out loss column (`final_`/`best_held_out_*`, no stderr): lower is better."""
    return column.startswith(("final_held_out_", "best_held_out_")) and not column.endswith(
        "_stderr"
    )


def is_score_metric(column: str) -> bool:
    """A multiple-choice score column of the analysis table (`score_<mode>...`): higher is better."""
    return column.startswith("score_") and not column.endswith("_stderr")
