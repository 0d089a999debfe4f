"""Where trial folders live: a local or shared path, or a cloud URI mirrored from local disk.

A trial's folder is named by its point and run key, `alpha0.5_R4_seed0_<run_key>`, so that
`ls` and TensorBoard show which run is which (a folder named by the run key alone, as sweeps
before made them, is still found and used).

With a path (a local folder, or NFS/Lustre shared by every node of a cluster), trials train
in `<path>/<sweep>/<folder>/` directly. With a URI (`s3://`, `gs://`, any filesystem
pyarrow knows, `file://` included), each trial trains in a local staging folder on its node,
pulls its folder from the URI before starting (to resume), and pushes it after every
checkpoint and at the end; the driver pulls summaries and curves to collect them.
"""

from __future__ import annotations

from pathlib import Path

from dualsweep.config import RunConfig, run_key, run_label
from dualsweep.paths import default_cache_dir
from dualsweep.schema import CHECKPOINT_FILE, TRAIN_LOG_FILE, TRIAL_LOCK_FILE

LOCAL_ONLY = {TRIAL_LOCK_FILE}  # never mirrored: a lock belongs to one machine


def is_uri(storage: str | Path) -> bool:
    return "://" in str(storage)


class TrialStorage:
    def __init__(self, storage: str | Path, sweep: str, staging: str | Path | None = None):
        self.sweep = sweep
        if is_uri(storage):
            self.uri = f"{str(storage).rstrip('/')}/{sweep}"
            self.root = Path(staging or default_cache_dir() / "staging").resolve() / sweep
        else:
            self.uri = None
            self.root = Path(storage).resolve() / sweep
        self._by_key: dict[str, str] = {}  # run key: folder name, once looked up

    def folder(self, config: RunConfig) -> str:
        """The trial's folder name: its point and run key (or the run key alone, where a
        sweep of before left one)."""
        key = run_key(config)
        if key not in self._by_key:
            self._by_key[key] = key if self._has_folder(key) else trial_folder_name(config)
        return self._by_key[key]

    def _has_folder(self, name: str) -> bool:
        if (self.root / name).is_dir():
            return True
        if not self.uri:
            return False
        import pyarrow.fs

        fs, base = self._remote()
        return fs.get_file_info(f"{base}/{name}").type == pyarrow.fs.FileType.Directory

    def trial_dir(self, config: RunConfig) -> Path:
        return self.root / self.folder(config)

    def log_path(self, config: RunConfig) -> str:
        """Where the trial's train.log is to be read: the URI's copy when there is one."""
        if self.uri:
            return f"{self.uri}/{self.folder(config)}/{TRAIN_LOG_FILE}"
        return str(self.trial_dir(config) / TRAIN_LOG_FILE)

    @property
    def tune_storage(self) -> str:
        """Ray Tune's own experiment folder (Tune syncs URIs itself)."""
        return f"{self.uri}/.tune" if self.uri else str(self.root / ".tune")

    def _remote(self):
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.uri)

    def pull(self, config: RunConfig, names: tuple[str, ...] | None = None) -> None:
        """Copy the trial's remote folder (or only `names` in it) over its local one."""
        if not self.uri:
            return
        import pyarrow.fs

        fs, base = self._remote()
        folder = self.folder(config)
        source = f"{base}/{folder}"
        info = fs.get_file_info(
            pyarrow.fs.FileSelector(source, recursive=True, allow_not_found=True)
        )
        for item in info:
            relative = item.path[len(source) + 1 :]
            if item.type != pyarrow.fs.FileType.File or (names and relative not in names):
                continue
            target = self.root / folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(
                item.path,
                str(target),
                source_filesystem=fs,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )

    def push(self, config: RunConfig) -> None:
        """Copy the trial's local folder to the URI (files overwritten, locks skipped)."""
        if not self.uri:
            return
        import pyarrow.fs

        fs, base = self._remote()
        folder = self.folder(config)
        local = self.root / folder
        for path in sorted(local.rglob("*")):
            if path.is_file() and path.name not in LOCAL_ONLY:
                target = f"{base}/{folder}/{path.relative_to(local).as_posix()}"
                fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                pyarrow.fs.copy_files(
                    str(path),
                    target,
                    source_filesystem=pyarrow.fs.LocalFileSystem(),
                    destination_filesystem=fs,
                )
        # A finished trial deletes its checkpoint locally; do the same remotely.
        if not (local / CHECKPOINT_FILE).exists():
            info = fs.get_file_info(f"{base}/{folder}/{CHECKPOINT_FILE}")
            if info.type == pyarrow.fs.FileType.File:
                fs.delete_file(info.path)


def trial_folder_name(config: RunConfig) -> str:
    """`alpha0.984375_R4_seed0_<run_key>`: the point first, for people; the key, for identity."""
    return run_label(config)
