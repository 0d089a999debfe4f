"""Filesystem conventions shared by every layer: run-folder file names, the cache, locks.

Bottom layer: no torch, no Ray. A run folder (from `dualsweep train` or a sweep trial) holds
the files named here; the cache holds prepared corpora and tokenizers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# A run folder.
CONFIG_FILE = "config.yaml"  # the fully resolved run config
CURVE_FILE = "curve.parquet"  # one row per logged step
SUMMARY_FILE = "summary.parquet"  # one row: the run's outcome
CHECKPOINT_FILE = "checkpoint.pt"  # resumable state, deleted once the run finishes
MODEL_FILE = "model.pt"  # the final weights (a state_dict)
TOKENIZER_FILE = "tokenizer.json"  # a copy of the corpus's tokenizer (text corpora)
EVALS_FILE = "evals.parquet"  # multiple-choice results of the final model
TRAIN_LOG_FILE = "train.log"  # a sweep trial's log lines
RUN_MARKER_FILE = ".dualsweep-run"  # written first: this folder is a run (its key inside)


def default_cache_dir() -> Path:
    """$DUALSWEEP_CACHE, or ~/.cache/dualsweep."""
    return Path(os.environ.get("DUALSWEEP_CACHE", Path.home() / ".cache" / "dualsweep"))


@contextlib.contextmanager
def exclusive_lock(path: Path, *, wait: bool = True):
    """Hold an OS lock on `path` (created if absent); the kernel releases it if we die.

    With `wait=False`, raise BlockingIOError at once if another process holds it.
    """
    import fcntl

    with Path(path).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
