"""What the commands share: their exit codes, the checks of output folders, and how a sweep
argument (a file or a name) is found.

What belongs here: refusing, before any work, an output path that cannot hold what a command
writes (a file, a read-only folder, a folder of other files, an interrupted run), and a
sweep argument that names nothing. Each check raises ConfigError with one line naming the
option and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from dualsweep.config import ConfigError, SweepConfig, load_sweep
from dualsweep.schema import CHECKPOINT_FILE, RUN_LOCK_FILE, RUN_MARKER_FILE

EXIT_FAILED = 1
EXIT_USAGE = 2


def writable_folder(path: Path, option: str) -> None:
    """Refuse, before any work, a path that is a file or whose nearest existing folder is read-only."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write to {existing} (permission denied)")


def check_run_folder(out: Path, *, force: bool, resume: bool) -> None:
    """`--out` must be new, empty, or a dualsweep run folder: never a folder of other files.

    Only the run marker (`.dualsweep-run`, written first by every run) makes a folder a run:
    a folder of the user's that happens to hold a `checkpoint.pt` or a `summary.parquet` is
    refused like any other, with or without --resume or --force."""
    writable_folder(out, "--out")
    if not out.is_dir() or not [p for p in out.iterdir() if p.name != RUN_LOCK_FILE]:
        return
    if not (out / RUN_MARKER_FILE).is_file():
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(
            f"--out: {out} holds files that are not a dualsweep run ({held}); "
            "choose a new or empty folder (nothing there is overwritten)"
        )
    if (out / CHECKPOINT_FILE).exists() and not (resume or force):
        raise ConfigError(
            f"--out: {out} holds an interrupted run's checkpoint; use --resume to continue it, "
            "or --force to start over"
        )


SWEEPS_FOLDER = Path("sweeps")


def sweep_file(arg: str) -> Path:
    """The sweep file a command was given: a file path as it is, or a sweep name: the file of
    sweeps/ named `<name>.yaml` or holding `name: <name>`."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        named = SWEEPS_FOLDER / f"{arg}.yaml"
        if named.is_file():
            return named
        for candidate in sorted(SWEEPS_FOLDER.glob("*.yaml")):
            try:
                if load_sweep(candidate).name == arg:
                    return candidate
            except ConfigError:
                continue
        raise ConfigError(
            f"sweep: {arg!r} is no file, and no sweep of {SWEEPS_FOLDER}/ is named so "
            f"(give the sweep file's path)"
        )
    raise ConfigError(f"sweep: {arg}: no such sweep file")


def sweep_of(arg: str) -> SweepConfig:
    return load_sweep(sweep_file(arg))


def sweep_name(arg: str, results: str | Path) -> str:
    """The name of a sweep given as a file (its `name:`) or by name (its results folder, or
    the sweep file of sweeps/ named so): the commands that read results take either."""
    path = Path(arg)
    if path.is_file():
        return load_sweep(path).name
    if len(path.parts) == 1 and (Path(results) / arg).is_dir():
        return arg
    return sweep_of(arg).name
