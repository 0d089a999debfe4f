"""Result tables: their columns, provenance, and atomic Parquet I/O. No torch, Lightning or Ray.

A run writes `curve.parquet` (one row per logged step) and `summary.parquet` (one row: every
resolved config field by its plain name, plus the measured columns of `RunSummary`). Column
names are the names used in configs and code (`alpha`, `repetitions`, `held_out_ar_loss`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dualsweep.config import RunConfig, flat_fields, run_key

# One row per logged step. Held-out columns are NaN on rows without an evaluation; train
# columns are NaN on the step-0 row (before any update) and where a kind was absent.
CURVE_COLUMNS = (
    "step",  # optimizer steps completed
    "tokens_seen",  # training tokens consumed after `step` steps
    "epoch",  # passes over the unique subset after `step` steps
    "lr",  # AdamW learning rate used for the last step
    "train_loss",  # mixed objective, mean over the steps since the last row
    "train_ar_loss",  # AR loss of the AR sequences since the last row
    "train_md_loss",  # MD loss (1/t-weighted) of the MD sequences since the last row
    "held_out_ar_loss",  # held-out AR NLL per token (nats)
    "held_out_md_elbo",  # held-out MD ELBO per token (nats), mean of K draws
    "held_out_md_elbo_stderr",  # its Monte-Carlo standard error
    "tokens_per_s",  # training throughput since the last row (evaluation excluded)
    "elapsed_s",  # training time so far (evaluations excluded, checkpoint writes included)
)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The outcome of one run; `row()` adds every resolved config field."""

    config: RunConfig
    status: str  # "finished" or "failed"
    error: str = ""
    n_parameters: int = 0
    n_non_embedding_parameters: int = 0
    steps: int = 0  # optimizer steps completed
    tokens: int = 0  # training tokens consumed
    unique_tokens: int = 0
    unique_sequences: int = 0
    epochs: float = math.nan  # realised passes over the unique subset
    unique_subset_hash: str = ""
    corpus_hash: str = ""
    held_out_tokens: int = 0
    final_held_out_ar_loss: float = math.nan
    best_held_out_ar_loss: float = math.nan
    final_held_out_md_elbo: float = math.nan
    best_held_out_md_elbo: float = math.nan
    final_held_out_md_elbo_stderr: float = math.nan
    train_time_s: float = math.nan  # time in training steps (evaluations excluded)
    held_out_eval_time_s: float = math.nan  # time in the held-out curve evaluations
    wall_time_s: float = math.nan  # the whole run, data preparation included
    tokens_per_s: float = math.nan
    accelerator: str = ""  # what train.device resolved to: cpu or gpu
    precision_used: str = ""  # what train.precision resolved to: 32-true or bf16-mixed
    started_at: str = ""
    finished_at: str = ""
    code_version: str = ""

    def row(self) -> dict[str, Any]:
        measured = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"
        }
        config = flat_fields(self.config)
        assert not set(config) & set(measured), "a measured column shadows a config field"
        return {"run_key": run_key(self.config), **config, **measured}


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write atomically: a reader (or a crash) never sees a half-written table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def curve_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    return frame.astype({"step": "int64", "tokens_seen": "int64"})


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit (and '-dirty') when run from a checkout."""
    from dualsweep import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


# -- sweep tables ----------------------------------------------------------------------
# results/<sweep>/runs.parquet: one row per trial (a run summary row plus `attempts`);
# results/<sweep>/curves.parquet: the curve rows of every trial, keyed by `run_key`;
# results/<sweep>/evals.parquet: multiple-choice results, task x mode rows per `run_key`.
# All are rewritten atomically with one row (or one curve) per run_key, never two.
RESULTS_ROOT = "results"
RUNS_FILE = "runs.parquet"
CURVES_FILE = "curves.parquet"
EVALS_TABLE = "evals.parquet"


class ResultsError(ValueError):
    """A results table cannot be read (damaged, truncated or empty); the message says how to rebuild it."""


def read_table(path: Path) -> pd.DataFrame:
    """A results table, or a ResultsError naming the file and how to rebuild it."""
    try:
        return pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise ResultsError(
            f"{path}: unreadable Parquet table ({type(e).__name__}: {str(e)[:120]}); the trial "
            "folders hold everything it had: `dualsweep sweep SWEEP_FILE --rebuild-tables` "
            "writes it again from them"
        ) from None


@dataclass(frozen=True)
class SweepResults:
    runs: pd.DataFrame
    curves: pd.DataFrame
    evals: pd.DataFrame


def sweep_dir(name: str, root: str | Path = RESULTS_ROOT) -> Path:
    return Path(root) / name


def upsert(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace every row of `path` whose run_key appears in `rows` by `rows` (idempotent)."""
    if path.is_file():
        old = read_table(path)
        old = old[~old["run_key"].isin(set(rows["run_key"]))]
        if len(old):
            rows = pd.concat([old, rows], ignore_index=True)
    order = [
        c for c in ("run_key", "step", "task", "mode", "length_normalized") if c in rows.columns
    ]
    rows = rows.sort_values(order, kind="stable")
    rows = rows.reset_index(drop=True)
    write_parquet(rows, path)
    return rows


def load(name: str, root: str | Path = RESULTS_ROOT) -> SweepResults:
    """The tables of sweep `name` (from results/<name>/), for pandas."""
    directory = sweep_dir(name, root)
    runs_path, curves_path = directory / RUNS_FILE, directory / CURVES_FILE
    if not runs_path.is_file():
        raise FileNotFoundError(
            f"no results for sweep {name!r}: {runs_path} does not exist (run `make sweep SWEEP={name}`)"
        )

    def optional(path: Path) -> pd.DataFrame:
        return read_table(path) if path.is_file() else pd.DataFrame()

    return SweepResults(
        runs=read_table(runs_path),
        curves=optional(curves_path),
        evals=optional(directory / EVALS_TABLE),
    )
