"""Document sources: where raw documents come from, one function per kind of source.

Text sources yield strings in a deterministic order (sorted paths, file order), so the
document-level split and the seeded document order are stable under re-runs. Token shards
yield arrays of token ids split at the configured document separator. `fingerprint` gives a
cheap identity of a source's current content (paths, sizes, modification times) for caching.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dualsweep.config import DataConfig


class DataError(ValueError):
    """The data does not fit the config (missing path, bad record, too few tokens...)."""


def _files(config: DataConfig, suffixes: tuple[str, ...]) -> list[Path]:
    root = Path(config.path).expanduser()
    if root.is_file() and root.name.endswith(suffixes):
        return [root]
    if not root.is_dir():
        raise DataError(
            f"data.path: {config.path!r} is not a folder or a {'/'.join(suffixes)} file"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise DataError(f"data.path: no {'/'.join(suffixes)} files under {config.path!r}")
    return files


SUFFIXES = {
    "text_dir": (".txt",),
    "jsonl": (".jsonl", ".jsonl.gz", ".jsonl.zst"),
    "shards": (".npy", ".bin"),
}


def check_source(config: DataConfig) -> None:
    """Fail at once (DataError) when a file source's path is missing or holds no such files."""
    if config.source in SUFFIXES:
        _files(config, SUFFIXES[config.source])


def fingerprint(config: DataConfig) -> dict:
    """What identifies the source's content without reading it all."""
    if config.source == "builtin":
        return {"python": sys.version, "implementation": platform.python_implementation()}
    if config.source == "hf":
        return {"dataset": config.hf_dataset, "config": config.hf_config, "split": config.hf_split}
    files = _files(config, SUFFIXES[config.source])
    root = Path(config.path).expanduser()
    # Names below the folder as listed (a file may be a link to one elsewhere); size and
    # modification time are its target's.
    return {
        "files": [
            [
                str(p.relative_to(root)) if p != root else p.name,
                p.stat().st_size,
                p.stat().st_mtime_ns,
            ]
            for p in files
        ]
    }


def text_documents(config: DataConfig) -> Iterator[str]:
    """Documents of a text source, in source order."""
    if config.source == "builtin":
        from dualsweep.data.builtin import builtin_documents

        yield from builtin_documents()
    elif config.source == "text_dir":
        for path in _files(config, SUFFIXES["text_dir"]):
            yield _read_text(path)
    elif config.source == "jsonl":
        yield from _jsonl_documents(config)
    elif config.source == "hf":
        yield from _hf_documents(config)
    else:
        raise ValueError(f"{config.source!r} is not a text source")


def _read_text(path: Path) -> str:
    """A text file's content; a binary or non-UTF-8 file is refused, never read as garbage.

    Refused rather than skipped: a skipped file would silently change the corpus (and its
    split and subsets) between two runs that name the same folder.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); convert "
            "it to UTF-8 or remove it from data.path"
        ) from None
    if "\x00" in text:
        raise DataError(
            f"{path}: holds NUL bytes (a binary file named .txt?); remove it from data.path"
        )
    return text


def _open_binary(path: Path):
    """A file for reading bytes, decompressed on the fly (.gz: gzip; .zst: zstandard)."""
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise DataError(
                f"{path}: reading .zst files needs the zstandard package: pip install zstandard"
            ) from None
        import io

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb")))
    return path.open("rb")


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a file read line by line (files can be large), UTF-8 or refused."""
    line_number = 0
    try:
        with _open_binary(path) as f:
            for line_number, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}:{line_number}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                        "convert the file to UTF-8"
                    ) from None
                yield line_number, text
    except (OSError, EOFError) as e:  # a damaged or truncated compressed file
        raise DataError(f"{path}:{line_number + 1}: unreadable ({type(e).__name__}: {e})") from None


def _jsonl_documents(config: DataConfig) -> Iterator[str]:
    for path in _files(config, SUFFIXES["jsonl"]):
        for line_number, line in _utf8_lines(path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_number}: not valid JSON ({e.msg})") from None
            text = record.get(config.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(
                    f"{path}:{line_number}: no string field data.text_field={config.text_field!r}"
                )
            yield text


def _hf_documents(config: DataConfig) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            "data.source: 'hf' needs the optional `datasets` package: pip install 'dualsweep[hf]'"
        ) from None
    dataset = datasets.load_dataset(
        config.hf_dataset, config.hf_config or None, split=config.hf_split, streaming=True
    )
    for record in dataset:
        text = record.get(config.text_field)
        if not isinstance(text, str):
            raise DataError(
                f"data.text_field: {config.text_field!r} is not a text field of {config.hf_dataset}"
            )
        yield text


def raw_documents(config: DataConfig) -> Iterator[tuple[int, str | np.ndarray]]:
    """(index in the source, document) for every document preparation reads: text, or token
    ids for raw shards; the first `data.max_documents`, empty ones skipped (their indices too)."""
    documents = shard_documents(config) if config.source == "shards" else text_documents(config)
    for index, document in enumerate(documents):
        if config.max_documents and index >= config.max_documents:
            return
        if len(document) if config.source == "shards" else document.strip():
            yield index, document


def shard_documents(config: DataConfig) -> Iterator[np.ndarray]:
    """Token-id documents of pre-tokenised shards, each ending with `shard_eos_id`."""
    dtype = np.dtype(config.shard_dtype)
    for path in _files(config, SUFFIXES["shards"]):
        if path.suffix == ".npy":
            stream = np.load(path, mmap_mode="r")
            if stream.ndim != 1 or stream.dtype.kind not in "iu":
                raise DataError(
                    f"{path}: expected a 1-D integer array, got {stream.dtype} {stream.shape}"
                )
        else:
            stream = np.memmap(path, dtype=dtype, mode="r")
        ends = np.flatnonzero(stream == config.shard_eos_id) + 1
        start = 0
        for end in [*ends.tolist(), len(stream)]:
            if end > start:
                yield np.asarray(stream[start:end])
            start = end
