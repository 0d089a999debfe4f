"""Prepared corpora: documents split, tokenized and stored as token memmaps, cached on disk.

A prepared corpus holds two token streams, each document followed by eos:
- `train.bin`: the training documents in ONE seeded order (data.order_seed). The unique
  subset of a run at repetition R is a prefix of this stream, so subsets are nested.
- `validation.bin`: the held-out documents in source order, never in any training subset.

Documents go to validation by a hash of their content, so the split is stable under
re-runs and does not move when documents are added elsewhere in the source. Preparation is
cached by the source's fingerprint and the settings, and guarded by a file lock so trials
of a sweep starting together prepare it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualsweep.config import DataConfig
from dualsweep.data.sources import DataError, fingerprint, shard_documents, text_documents
from dualsweep.data.special import SpecialTokens
from dualsweep.data.tokenizer import MIN_BPE_VOCAB, TOKENIZER_SPECIALS, cached_tokenizer
from dualsweep.paths import default_cache_dir, exclusive_lock

FORMAT_VERSION = 1


def cache_root(config: DataConfig) -> Path:
    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


def is_validation(document: bytes, fraction: float) -> bool:
    """Held out when the first 8 bytes of the document's SHA-256, as a fraction of 2^64, fall below `fraction`."""
    digest = hashlib.sha256(document).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def shard_specials(vocab_size: int, eos: int) -> SpecialTokens:
    """Shards bring their own eos; pad, bos and mask take the last three ids of the vocabulary."""
    return SpecialTokens(pad=vocab_size - 3, bos=vocab_size - 2, eos=eos, mask=vocab_size - 1)


@dataclass(frozen=True)
class PreparedCorpus:
    directory: Path
    train_tokens: np.ndarray
    """Training documents in the seeded order, each followed by eos (a read-only memmap)."""
    validation_tokens: np.ndarray
    """Held-out documents, each followed by eos (a read-only memmap)."""
    special: SpecialTokens
    meta: dict

    @property
    def corpus_hash(self) -> str:
        return self.meta["corpus_hash"]

    def training_sequences(self, seq_len: int) -> np.ndarray:
        """The training stream cut into consecutive (N, seq_len) sequences (a view)."""
        n = len(self.train_tokens) // seq_len
        return self.train_tokens[: n * seq_len].reshape(n, seq_len)

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
    settings = {
        "format": FORMAT_VERSION,
        "source": config.source,
        "fingerprint": fingerprint(config),
        "text_field": config.text_field,
        "max_documents": config.max_documents,
        "shard_eos_id": config.shard_eos_id,
        "shard_dtype": config.shard_dtype,
        "validation_fraction": config.validation_fraction,
        "order_seed": config.order_seed,
        "vocab_size": vocab_size,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def prepare_corpus(config: DataConfig, vocab_size: int, log=print) -> PreparedCorpus:
    """The prepared corpus for this data config and vocabulary, building it if not cached."""
    root = cache_root(config) / "corpora"
    directory = root / corpus_key(config, vocab_size)
    if not (directory / "meta.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(root / f"{directory.name}.lock"):
            if not (directory / "meta.json").is_file():  # another process may have built it
                _build(config, vocab_size, directory, log)
    return open_corpus(directory)


def open_corpus(directory: Path) -> PreparedCorpus:
    meta = json.loads((directory / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    return PreparedCorpus(
        directory=directory,
        train_tokens=np.memmap(directory / "train.bin", dtype=dtype, mode="r"),
        validation_tokens=np.memmap(directory / "validation.bin", dtype=dtype, mode="r"),
        special=SpecialTokens(**meta["special"]),
        meta=meta,
    )


def _build(config: DataConfig, vocab_size: int, directory: Path, log) -> None:
    started = time.perf_counter()
    log(f"preparing corpus ({config.source}) in {directory} ...")
    if config.source == "shards":
        documents, special, tokenizer_file = _shard_documents(config, vocab_size)
    else:
        documents, special, tokenizer_file = _text_documents(
            config, vocab_size, directory.parent.parent
        )
    train = [d for d, held_out in documents if not held_out]
    validation = [d for d, held_out in documents if held_out]
    if not train or not validation:
        raise DataError(
            f"data.validation_fraction: {config.validation_fraction} splits {len(documents)} documents "
            f"into {len(train)} training and {len(validation)} held-out; both must be non-empty"
        )
    order = np.random.default_rng(config.order_seed).permutation(len(train))
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_train = _write_stream(tmp / "train.bin", (train[i] for i in order), special.eos, dtype)
    n_validation = _write_stream(tmp / "validation.bin", validation, special.eos, dtype)
    corpus_hash = hashlib.sha256()
    for document, _ in documents:
        corpus_hash.update(hashlib.sha256(np.ascontiguousarray(document).tobytes()).digest())
    meta = {
        "format": FORMAT_VERSION,
        "source": config.source,
        "corpus_hash": corpus_hash.hexdigest()[:16],
        "dtype": np.dtype(dtype).name,
        "vocab_size": vocab_size,
        "special": vars(special),
        "tokenizer": tokenizer_file,
        "train_documents": len(train),
        "validation_documents": len(validation),
        "train_tokens": n_train,
        "validation_tokens": n_validation,
        "order_seed": config.order_seed,
        "validation_fraction": config.validation_fraction,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(directory, ignore_errors=True)  # a half-built folder from a killed run
    os.replace(tmp, directory)
    log(
        f"prepared {len(train)} training documents ({n_train:,} tokens) and {len(validation)} "
        f"held-out ({n_validation:,} tokens) in {time.perf_counter() - started:.1f}s"
    )


def _write_stream(path: Path, documents, eos: int, dtype) -> int:
    """Append each document and an eos (unless it already ends with one) to a flat token file."""
    n = 0
    with path.open("wb") as f:
        for document in documents:
            tokens = np.asarray(document, dtype=dtype)
            if len(tokens) == 0 or tokens[-1] != eos:
                tokens = np.append(tokens, np.array(eos, dtype=dtype))
            f.write(tokens.tobytes())
            n += len(tokens)
    return n


def _limited(iterator, limit: int):
    for i, item in enumerate(iterator):
        if limit and i >= limit:
            return
        yield item


def _text_documents(config: DataConfig, vocab_size: int, cache_dir: Path):
    """(token ids, held out?) per document, the specials, and the tokenizer's path."""
    if vocab_size < MIN_BPE_VOCAB:
        raise DataError(
            f"model.vocab_size: byte-level BPE needs at least {MIN_BPE_VOCAB} entries (got {vocab_size})"
        )
    texts = [t for t in _limited(text_documents(config), config.max_documents) if t.strip()]
    held_out = [is_validation(t.encode("utf-8"), config.validation_fraction) for t in texts]
    train_texts = [t for t, h in zip(texts, held_out, strict=True) if not h]
    train_hash = hashlib.sha256("\x00".join(train_texts).encode("utf-8")).hexdigest()
    tokenizer, tokenizer_path = cached_tokenizer(train_texts, train_hash, vocab_size, cache_dir)
    encoded = [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(texts)]
    return list(zip(encoded, held_out, strict=True)), TOKENIZER_SPECIALS, str(tokenizer_path)


def _shard_documents(config: DataConfig, vocab_size: int):
    special = shard_specials(vocab_size, config.shard_eos_id)
    if config.shard_eos_id >= special.pad:
        raise DataError(
            f"data.shard_eos_id: {config.shard_eos_id} must be below vocab_size - 3 = {special.pad}"
        )
    documents = list(_limited(shard_documents(config), config.max_documents))
    top = max(int(d.max()) for d in documents) if documents else -1
    if top >= special.pad:
        raise DataError(
            f"model.vocab_size: shards hold token ids up to {top}, but ids >= vocab_size - 3 = "
            f"{special.pad} are reserved for pad, bos and mask; raise model.vocab_size"
        )
    held_out = (
        is_validation(d.astype(np.int64).tobytes(), config.validation_fraction) for d in documents
    )
    return list(zip(documents, held_out, strict=True)), special, None
