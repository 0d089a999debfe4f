"""Token shards on disk: fixed-size flat token files written whole or not at all, and the
concatenated, memory-mapped view training reads them through.

A split's stream (documents each followed by eos) is cut into shards of `shard_tokens`
tokens, `<split>-00000.bin`, `<split>-00001.bin`, ... (the last one shorter); a document
may straddle two shards. A shard is written to a hidden temporary name and renamed when
complete, so a shard file that exists is a finished shard. Pure numpy, no torch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dualsweep.data.sources import DataError
from dualsweep.paths import DiskFullError, atomic_write

HASH = "blake2b"  # a shard's checksum in index.json: fast, and in every Python
VERIFIED_FILE = "verified.json"  # shards whose checksum matched, by (size, mtime)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits it, else uint32."""
    if vocab_size > 2**32:
        raise DataError(f"model.vocab_size: {vocab_size} ids do not fit uint32 token shards")
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


def disk_full(path: Path) -> DataError:
    return DataError(f"{path}: the disk is full (the partial file was removed)")


def write_atomically(path: Path, chunks: Iterable[np.ndarray]) -> int:
    """Write `chunks` to `path` through a hidden temporary file renamed at the end; return the
    items written. A failed write (a full disk) leaves no file behind and names the file."""
    written = 0

    def write(tmp: Path) -> None:
        nonlocal written
        with tmp.open("wb") as f:
            for chunk in chunks:
                f.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
                written += len(chunk)

    try:
        atomic_write(path, write)
    except DiskFullError:
        raise disk_full(path) from None
    return written


class ShardWriter:
    """Cuts a token stream into finished shards of `shard_tokens` tokens (0: one shard).

    `append` takes tokens in stream order, writing them straight to the open shard's
    temporary file (nothing is buffered); a full shard is renamed into place and the next
    one opened; `close` finishes the last, shorter one. `first_shard` resumes the stream
    after that many finished shards.
    """

    def __init__(
        self,
        directory: Path,
        split: str,
        dtype: np.dtype,
        shard_tokens: int = 0,
        first_shard: int = 0,
    ):
        self.directory, self.split, self.dtype = directory, split, np.dtype(dtype)
        self.shard_tokens = shard_tokens
        # Shards finished before a resume: their checksums are read back when the split closes.
        self.shards = [
            {"file": shard_name(split, i), "tokens": shard_tokens} for i in range(first_shard)
        ]
        self._file = None
        self._hash = hashlib.blake2b()
        self._filled = 0

    def append(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens, dtype=self.dtype)
        while len(tokens):
            take = len(tokens)
            if self.shard_tokens:
                take = min(take, self.shard_tokens - self._filled)
            self._write(tokens[:take])
            tokens = tokens[take:]
            if self.shard_tokens and self._filled == self.shard_tokens:
                self._finish()

    def close(self) -> list[dict]:
        """Finish the last shard; return every shard's entry: file, tokens, bytes, checksum."""
        if self._file is not None or not self.shards:
            self._finish()
        for shard in self.shards:
            if HASH not in shard:  # finished before a resume
                path = self.directory / shard["file"]
                shard.update(bytes=path.stat().st_size, **{HASH: file_checksum(path)})
        return self.shards

    def _path(self) -> Path:
        return self.directory / shard_name(self.split, len(self.shards))

    def _write(self, tokens: np.ndarray) -> None:
        path = self._path()
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            if self._file is None:
                self._file = tmp.open("wb")
            data = memoryview(np.ascontiguousarray(tokens)).cast("B")
            self._file.write(data)
            self._hash.update(data)
        except OSError as e:
            self.abort()
            if e.errno == errno.ENOSPC:
                raise disk_full(path) from None
            raise
        self._filled += len(tokens)

    def _finish(self) -> None:
        path = self._path()
        if self._file is None:
            path.with_name(f".{path.name}.tmp").write_bytes(b"")  # an empty split's one shard
        else:
            self._file.close()
            self._file = None
        os.replace(path.with_name(f".{path.name}.tmp"), path)
        entry = {"file": path.name, "tokens": self._filled}
        entry.update(bytes=self._filled * self.dtype.itemsize, **{HASH: self._hash.hexdigest()})
        self.shards.append(entry)
        self._hash = hashlib.blake2b()
        self._filled = 0

    def abort(self) -> None:
        """Close and remove the shard being written (a finished shard is kept)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        path = self._path()
        path.with_name(f".{path.name}.tmp").unlink(missing_ok=True)


def file_checksum(path: Path) -> str:
    """The file's blake2b, read in 8 MB blocks."""
    digest = hashlib.blake2b()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_shards(
    directory: Path, shards: list[dict], dtype: np.dtype, *, full: bool = False
) -> None:
    """Refuse (DataError naming the shard) a shard that is missing, of another size than the
    index says, or, the first time it is used after being written or changed, of other
    content (its checksum); `full` checks every checksum again.

    Sizes are checked at every open (a stat per shard). Checksums are checked once per
    version of a file: a shard that matched is recorded in `verified.json` with its size and
    modification time, and read again only when either changes (or with `full`). An index
    written before checksums existed is checked by size only."""
    stamps = {} if full else _read_stamps(directory)
    verified = dict(stamps)
    for shard in shards:
        path = directory / shard["file"]
        if not path.is_file():
            raise DataError(f"{path}: shard missing; prepare the corpus again")
        size = path.stat().st_size
        expected = shard.get("bytes", shard["tokens"] * np.dtype(dtype).itemsize)
        if size != expected:
            raise DataError(
                f"{path}: {size:,} bytes where index.json says {expected:,}: the shard is "
                "truncated or was replaced; prepare the corpus again"
            )
        if HASH not in shard:
            continue
        stamp = [size, path.stat().st_mtime_ns]
        if stamps.get(shard["file"]) == stamp:
            continue
        if file_checksum(path) != shard[HASH]:
            raise DataError(
                f"{path}: its content does not match its checksum in index.json (damaged or "
                "changed since it was prepared); prepare the corpus again"
            )
        verified[shard["file"]] = stamp
    if verified != stamps:
        try:
            atomic_write(
                directory / VERIFIED_FILE, lambda tmp: tmp.write_text(json.dumps(verified))
            )
        except OSError:  # read-only shards: checked again at the next open
            pass


def record_verified(directory: Path, shards: list[dict]) -> None:
    """Record shards just written (their checksums computed as they were written) as verified."""
    stamps = _read_stamps(directory)
    for shard in shards:
        stat = (directory / shard["file"]).stat()
        stamps[shard["file"]] = [stat.st_size, stat.st_mtime_ns]
    atomic_write(directory / VERIFIED_FILE, lambda tmp: tmp.write_text(json.dumps(stamps)))


def _read_stamps(directory: Path) -> dict:
    try:
        return json.loads((directory / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}


class TokenStream:
    """Shards of one split read as one flat, read-only token stream (memory maps, no copy)."""

    def __init__(self, paths: list[Path], dtype: np.dtype):
        self.dtype = np.dtype(dtype)
        self.parts = [
            np.memmap(p, dtype=self.dtype, mode="r")
            if p.stat().st_size
            else np.empty(0, self.dtype)
            for p in paths
        ]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens start..stop-1 as an array (a view when they lie in one shard)."""
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            part = self.parts[first]
            offset = start - int(self.starts[first])
            take = min(stop - start, len(part) - offset)
            pieces.append(part[offset : offset + take])
            start += take
            first += 1
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.empty(0, self.dtype)

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, step = item.indices(len(self))
        if step != 1:
            raise IndexError("a token stream is read in contiguous ranges")
        return self.read(start, max(start, stop))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.read(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    def sequences(self, seq_len: int) -> SequenceView | np.ndarray:
        """The stream cut into consecutive (N, seq_len) sequences: a reshaped memory map when
        it is one shard, else a view that gathers rows across shards."""
        n = len(self) // seq_len
        if len(self.parts) == 1:
            return self.parts[0][: n * seq_len].reshape(n, seq_len)
        return SequenceView(self, seq_len, n)


class SequenceView:
    """Rows of a multi-shard stream: `len`, a leading slice (another view) and integer-array
    indexing (a (k, seq_len) array), which is what the repetition plan and data module use."""

    def __init__(self, stream: TokenStream, seq_len: int, count: int):
        self.stream, self.seq_len, self.count = stream, seq_len, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item):
        T = self.seq_len
        if isinstance(item, slice):
            start, stop, step = item.indices(self.count)
            if start == 0 and step == 1:  # a prefix: the unique subset
                return SequenceView(self.stream, T, max(stop, 0))
            if step != 1:
                raise IndexError("sequences are sliced in contiguous ranges")
            return self.stream.read(start * T, stop * T).reshape(-1, T)
        rows = np.asarray(item)
        if rows.ndim == 0:
            return self.stream.read(int(rows) * T, (int(rows) + 1) * T)
        if rows.size and (rows.min() < -self.count or rows.max() >= self.count):
            raise IndexError(f"sequence index out of range for {self.count} sequences")
        rows = rows % max(self.count, 1)
        out = np.empty((len(rows), T), dtype=self.stream.dtype)
        for i, row in enumerate(rows.tolist()):
            out[i] = self.stream.read(row * T, (row + 1) * T)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.stream.read(0, self.count * self.seq_len).reshape(self.count, self.seq_len)
        return rows if dtype is None else rows.astype(dtype)
