"""Prepared corpora: what a run trains on, opened from shards `dualsweep prepare` wrote or
prepared on first use into a cache.

A prepared corpus holds two token streams, each document followed by eos (see prepare.py,
which makes them, and shards.py, which reads them):
- train: the training documents in ONE seeded order (data.order_seed). The unique subset
  of a run at repetition R is a prefix of this stream, so subsets are nested.
- validation: the held-out documents in source order, never in any training subset.

`source: shards` with a `path` holding prepare's index.json is read in place (memory maps,
no copy), its dtype, specials and vocabulary taken from the index. Every other source (the
built-in corpus included) is prepared by the same code into the cache, keyed by the
source's fingerprint and the settings, under a file lock so that trials of a sweep starting
together prepare it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualsweep.config import DataConfig
from dualsweep.data.prepare import (
    FORMAT_VERSION,
    INDEX_FILE,
    PrepareSettings,
    is_prepared,
    is_validation,
    prepare,
    shard_specials,
)
from dualsweep.data.shards import SequenceView, TokenStream, check_shards
from dualsweep.data.sources import DataError, cache_identity
from dualsweep.paths import default_cache_dir, exclusive_lock
from dualsweep.special_tokens import SpecialTokens

__all__ = [
    "PreparedCorpus",
    "cache_root",
    "corpus_key",
    "is_validation",
    "open_corpus",
    "prepare_corpus",
    "shard_specials",
]


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def cache_root(config: DataConfig) -> Path:
    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


@dataclass(frozen=True)
class PreparedCorpus:
    directory: Path
    train_tokens: TokenStream
    """Training documents in the seeded order, each followed by eos (read-only memory maps)."""
    validation_tokens: TokenStream
    """Held-out documents, each followed by eos (read-only memory maps)."""
    special: SpecialTokens
    meta: dict
    """The index (see prepare.py), with `tokenizer` an absolute path (None for token sources)."""

    @property
    def corpus_hash(self) -> str:
        return self.meta["corpus_hash"]

    def training_sequences(self, seq_len: int) -> np.ndarray | SequenceView:
        """The training stream cut into consecutive (N, seq_len) sequences (a view)."""
        return self.train_tokens.sequences(seq_len)

    def validation_sequences(self, seq_len: int, count: int) -> np.ndarray:
        """The first `count` (or all, if fewer) consecutive held-out sequences, (n, seq_len)."""
        n = min(count, len(self.validation_tokens) // seq_len)
        if n == 0:
            raise DataError(
                f"data.validation_fraction: the held-out split has {len(self.validation_tokens)} "
                f"tokens, fewer than one sequence of seq_len={seq_len}"
            )
        return np.asarray(self.validation_tokens[: n * seq_len]).reshape(n, seq_len)


def corpus_key(config: DataConfig, vocab_size: int) -> str:
    """The cache folder's name of `config`'s corpus: its source's identity and the settings of
    the split, the order and the vocabulary (what every source shares)."""
    settings = {
        "format": FORMAT_VERSION,
        **cache_identity(config),
        "validation_fraction": config.validation_fraction,
        "order_seed": config.order_seed,
        "vocab_size": vocab_size,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def prepare_corpus(config: DataConfig, vocab_size: int, log=print) -> PreparedCorpus:
    """The prepared corpus for this data config and vocabulary: prepared shards in place, or
    the cached preparation of the source (made now if absent)."""
    if config.source == "shards" and is_prepared(Path(config.path).expanduser()):
        return open_corpus(Path(config.path).expanduser(), vocab_size)
    root = cache_root(config) / "corpora"
    directory = root / corpus_key(config, vocab_size)
    if not is_prepared(directory):
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / f"{directory.name}.lock"):
            if not is_prepared(directory):  # another process may have built it
                # One shard per split: a cached corpus is read as two flat memory maps.
                settings = PrepareSettings(shard_tokens=0)
                prepare(
                    config,
                    vocab_size,
                    directory,
                    settings,
                    tokenizer_cache=cache_root(config),
                    log=log,
                )
    return open_corpus(directory, vocab_size)


def open_corpus(
    directory: Path, vocab_size: int | None = None, *, verify: bool = False
) -> PreparedCorpus:
    """A prepared corpus; with `vocab_size`, refused unless it was prepared for that vocabulary.
    Its shards are checked (`shards.check_shards`; every checksum with `verify`)."""
    try:
        index = json.loads((directory / INDEX_FILE).read_text())
    except (OSError, ValueError) as e:
        raise DataError(
            f"{directory / INDEX_FILE}: unreadable ({type(e).__name__}: {e}); prepare the corpus again"
        ) from None
    if index.get("format") != FORMAT_VERSION:
        raise DataError(
            f"{directory / INDEX_FILE}: shards of format {index.get('format')}, this version "
            f"reads format {FORMAT_VERSION}; prepare them again"
        )
    if vocab_size is not None and index["vocab_size"] != vocab_size:
        raise DataError(
            f"model.vocab_size: {vocab_size}, but the shards at {directory} were prepared for a "
            f"vocabulary of {index['vocab_size']}; set model.vocab_size to {index['vocab_size']}"
        )
    dtype = np.dtype(index["dtype"])
    with exclusive_lock(directory / ".verify.lock") if _writable(directory) else nullcontext():
        # (one process checks the checksums; concurrent trials then read its verified.json)
        for split in ("train", "validation"):
            check_shards(directory, index[split]["shards"], dtype, full=verify)

    def stream(split: str) -> TokenStream:
        return TokenStream([directory / s["file"] for s in index[split]["shards"]], dtype)

    tokenizer = str(directory / index["tokenizer"]) if index["tokenizer"] else None
    return PreparedCorpus(
        directory=directory,
        train_tokens=stream("train"),
        validation_tokens=stream("validation"),
        special=SpecialTokens(**index["special"]),
        meta={**index, "tokenizer": tokenizer},
    )
