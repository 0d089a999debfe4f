"""Filesystem helpers shared by every layer: the cache folder, OS locks and atomic writes.

Bottom layer: no torch, no Ray. The names of the files a run writes are in `dualsweep.schema`;
the cache holds prepared corpora and tokenizers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

# Below this much free space, a write that failed is put down to a full disk: torch's writer
# reports one as a bare stream error, without the OS's ENOSPC.
FULL_DISK_FREE_BYTES = 1 << 20


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


class DiskFullError(OSError):
    """A file could not be written because its disk is full (no partial file is left)."""


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a hidden temporary file beside `path`, then rename it to `path`.

    A reader, or a crash at any moment, sees the previous file whole or the new one whole;
    a failed write leaves no partial file, and on a full disk raises DiskFullError naming
    `path` (a partial file of a large write would keep the disk full)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as e:
        full = _out_of_space(e, path.parent)  # measured before the partial file goes
        tmp.unlink(missing_ok=True)
        if full:
            raise DiskFullError(
                errno.ENOSPC,
                f"{path}: not written, the disk is full (the partial file was removed)",
            ) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def free_bytes(folder: Path) -> int | float:
    """Free space on the disk holding `folder` (or its nearest existing parent); inf if unknown."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return float("inf")


def _out_of_space(error: BaseException, folder: Path) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        cause = cause.__cause__ or cause.__context__
    return free_bytes(folder) < FULL_DISK_FREE_BYTES
