"""Where trial folders live: a local or shared path, or a cloud URI mirrored from local disk.

With a path (a local folder, or NFS/Lustre shared by every node of a cluster), trials train
in `<path>/<sweep>/<run_key>/` directly. With a URI (`s3://`, `gs://`, any filesystem
pyarrow knows, `file://` included), each trial trains in a local staging folder on its node,
pulls its folder from the URI before starting (to resume), and pushes it after every
checkpoint and at the end; the driver pulls summaries and curves to collect them.
"""

from __future__ import annotations

from pathlib import Path

from dualsweep.paths import default_cache_dir
from dualsweep.schema import CHECKPOINT_FILE, TRAIN_LOG_FILE

LOCAL_ONLY = {".lock"}  # never mirrored: a lock belongs to one machine


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

    def trial_dir(self, key: str) -> Path:
        return self.root / key

    def log_path(self, key: str) -> str:
        """Where the trial's train.log is to be read: the URI's copy when there is one."""
        return (
            f"{self.uri}/{key}/{TRAIN_LOG_FILE}"
            if self.uri
            else str(self.trial_dir(key) / TRAIN_LOG_FILE)
        )

    @property
    def tune_storage(self) -> str:
        """Ray Tune's own experiment folder (Tune syncs URIs itself)."""
        return f"{self.uri}/.tune" if self.uri else str(self.root / ".tune")

    def _remote(self):
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.uri)

    def pull(self, key: str, names: tuple[str, ...] | None = None) -> None:
        """Copy the trial's remote folder (or only `names` in it) over its local one."""
        if not self.uri:
            return
        import pyarrow.fs

        fs, base = self._remote()
        source = f"{base}/{key}"
        info = fs.get_file_info(
            pyarrow.fs.FileSelector(source, recursive=True, allow_not_found=True)
        )
        for item in info:
            relative = item.path[len(source) + 1 :]
            if item.type != pyarrow.fs.FileType.File or (names and relative not in names):
                continue
            target = self.trial_dir(key) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            pyarrow.fs.copy_files(
                item.path,
                str(target),
                source_filesystem=fs,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )

    def push(self, key: str) -> None:
        """Copy the trial's local folder to the URI (files overwritten, locks skipped)."""
        if not self.uri:
            return
        import pyarrow.fs

        fs, base = self._remote()
        local = self.trial_dir(key)
        for path in sorted(local.rglob("*")):
            if path.is_file() and path.name not in LOCAL_ONLY:
                target = f"{base}/{key}/{path.relative_to(local).as_posix()}"
                fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                pyarrow.fs.copy_files(
                    str(path),
                    target,
                    source_filesystem=pyarrow.fs.LocalFileSystem(),
                    destination_filesystem=fs,
                )
        # A finished trial deletes its checkpoint locally; do the same remotely.
        if not (local / CHECKPOINT_FILE).exists():
            info = fs.get_file_info(f"{base}/{key}/{CHECKPOINT_FILE}")
            if info.type == pyarrow.fs.FileType.File:
                fs.delete_file(info.path)
