"""Filesystem helpers shared by every layer: the cache folder and OS locks.

Bottom layer: no torch, no Ray. The names of the files a run writes are in `dualsweep.schema`;
the cache holds prepared corpora and tokenizers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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
