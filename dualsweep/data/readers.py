"""How each built-in data source reads its documents: text files, JSON lines, Hugging Face
datasets and raw token shards, and the listing of a source's files under `data.path`.

A reader takes the config and the source's files (in sorted order, so that the split and the
seeded document order are stable under re-runs) and yields documents in source order: strings,
or arrays of token ids split at `data.shard_eos_id`. Which reader serves which `data.source`
is the registry's business (`sources.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dualsweep.config import DataConfig


class DataError(ValueError):
    """The data does not fit the config (missing path, bad record, too few tokens...)."""


def source_files(config: DataConfig, suffixes: tuple[str, ...]) -> list[Path]:
    """`data.path` itself if it is a file of one of `suffixes`, else the files of those
    suffixes below the folder, sorted; a missing path or a folder without any is refused."""
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


def files_fingerprint(config: DataConfig, files: list[Path]) -> dict:
    """A file source's identity without reading its files: names, sizes, modification times."""
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


def text_files(config: DataConfig, files: list[Path]) -> Iterator[str]:
    """One document per text file."""
    for path in files:
        yield read_text(path)


def read_text(path: Path) -> str:
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


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
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


def jsonl_records(config: DataConfig, files: list[Path]) -> Iterator[str]:
    """The `data.text_field` string of each JSON line (blank lines skipped)."""
    for path in files:
        for line_number, line in utf8_lines(path):
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


def hf_records(config: DataConfig, files: list[Path]) -> Iterator[str]:
    """The `data.text_field` of each record of a Hugging Face dataset split, streamed."""
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


def token_shards(config: DataConfig, files: list[Path]) -> Iterator[np.ndarray]:
    """Token-id documents of pre-tokenised shards, each ending with `shard_eos_id`."""
    dtype = np.dtype(config.shard_dtype)
    for path in files:
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
