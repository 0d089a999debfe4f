"""From a source's raw documents to the token shards training reads: streamed with bounded
memory, tokenized in parallel, resumable after a kill. The one preparation path, for
`dualsweep prepare` and for the corpora a run prepares into its cache.

    source -> documents -> split -> tokenizer -> shards -> (repetition plan, at training)

- documents (`sources.py`): any source, document by document, in a deterministic order
  (`data.max_documents` caps them; empty ones are skipped).
- split (`is_validation`): a document is held out when the hash of its content says so,
  stable under re-runs and under additions elsewhere in the source.
- tokenizer (`tokenizer.py`): byte-level BPE trained on the first `tokenizer_sample_mb` of
  the training split's text in source order, or a given tokenizer file; copied next to the
  shards. Token-id sources (raw `.npy`/`.bin` shards) need none.
- shards (`shards.py`), in two passes over disk:
  1. encode: documents in batches, encoded by `workers` processes (results taken in
     order), appended to staging chunks of about a quarter of the memory bound; each chunk
     ends at a document boundary and is recorded, with the count of source documents it
     covers, only once its files are whole;
  2. order: the training documents in the one seeded order of `data.order_seed` (a
     permutation of their count; its prefixes are the nested unique subsets of a sweep),
     read back with positioned reads, and the held-out ones in source order, written as
     fixed-size shards; `index.json` last: its presence marks a finished preparation.

Memory: the bound (`memory_mb`) covers the staging chunk (a quarter) and the batches in
flight (half, counting the ~200 bytes a character the tokenizer holds while it encodes);
shards are written straight to disk. A document longer than a batch is encoded in pieces,
cut where the byte-level split guarantees the ids of the whole (`tokenizer.cutter`). Beyond
the bound: such a document itself (its text and ids, ~12 bytes a character); the tokenizer's
training (~100 MB for a 1 MB sample) while it trains; and in pass 2 28 bytes per document of
a split (its length, chunk, offset and place in the order): 0.9 GB for 32M documents. Resume: a killed preparation, run again with the
same arguments, keeps its finished chunks and shards and skips the documents they cover; a
file that is not recorded whole (a chunk) or not of its full size (a shard) is redone.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualsweep.config import DataConfig
from dualsweep.config.fields import POSITIVE_INTEGER, Checked, bound
from dualsweep.data.shards import (
    ShardWriter,
    record_verified,
    shard_name,
    token_dtype,
    write_atomically,
)
from dualsweep.data.sources import (
    DataError,
    cache_identity,
    fingerprint,
    raw_documents,
    source_of,
)
from dualsweep.data.tokenizer import MIN_BPE_VOCAB, SPECIAL_TOKENS, TOKENIZER_SPECIALS
from dualsweep.paths import atomic_write
from dualsweep.schema import TOKENIZER_FILE
from dualsweep.special_tokens import SpecialTokens

FORMAT_VERSION = 2
INDEX_FILE = "index.json"
STAGING = ".staging"  # pass 1's chunks and the resume state; removed when finished


_NON_NEGATIVE_INTEGER = bound(0, integer=True, why="must be a non-negative integer")


@dataclass(frozen=True, kw_only=True)
class PrepareSettings(Checked):
    """How a preparation runs (its speed, memory and shard size), checked like a config
    section; of these, only the tokenizer settings change the tokens."""

    workers: int = field(default=1, metadata=POSITIVE_INTEGER)
    """Encoding processes (1: encode in this process)."""
    memory_mb: int = field(default=1024, metadata=POSITIVE_INTEGER)
    """Memory bound of the streaming parts (staging chunk, batches in flight, shard writer), in MB."""
    shard_tokens: int = field(default=1 << 27, metadata=_NON_NEGATIVE_INTEGER)
    """Tokens per shard (0: one shard per split); 2^27 is 256 MB of uint16."""
    tokenizer: str = ""
    """An existing tokenizer file to use instead of training one."""
    tokenizer_sample_mb: int = field(default=512, metadata=_NON_NEGATIVE_INTEGER)
    """Training-split text the tokenizer is trained on, in MB (the first, in source order)."""


def is_validation(document: bytes, fraction: float) -> bool:
    """Held out when the first 8 bytes of the document's SHA-256, as a fraction of 2^64, fall below `fraction`."""
    digest = hashlib.sha256(document).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def shard_specials(vocab_size: int, eos: int) -> SpecialTokens:
    """Shards bring their own eos; pad, bos and mask take the last three ids of the vocabulary."""
    return SpecialTokens(pad=vocab_size - 3, bos=vocab_size - 2, eos=eos, mask=vocab_size - 1)


def is_prepared(directory: Path) -> bool:
    return (directory / INDEX_FILE).is_file()


def prepare(
    config: DataConfig,
    vocab_size: int,
    out: Path,
    settings: PrepareSettings = PrepareSettings(),  # noqa: B008 - frozen
    *,
    tokenizer_cache: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Prepare `config`'s source into shards in `out` (resuming a killed preparation there);
    return the index. `tokenizer_cache` shares trained tokenizers between preparations."""
    out = Path(out)
    if is_prepared(out):
        return json.loads((out / INDEX_FILE).read_text())
    started = time.perf_counter()
    staging = out / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    state = _State.load(staging, config, vocab_size, settings)
    if state.stale:  # what is here was prepared from another source or with other settings
        log(f"{out} holds another source's unfinished preparation: starting over")
        for item in [*staging.iterdir(), *out.glob("*-[0-9][0-9][0-9][0-9][0-9].bin")]:
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        (out / TOKENIZER_FILE).unlink(missing_ok=True)
    token_source = source_of(config).fields.token_ids
    if token_source:
        special, tokenizer_hash = _check_token_source(config, vocab_size), ""
    else:
        special = TOKENIZER_SPECIALS
        tokenizer_hash = _tokenizer(config, vocab_size, out, settings, tokenizer_cache, log)
    dtype = token_dtype(vocab_size)
    log(f"preparing {config.source} into {out}: {settings.workers} encoding process(es)")
    _encode(config, vocab_size, out, staging, state, settings, special, dtype, log)
    index = _order(config, out, staging, state, settings, dtype, log)
    index.update(
        format=FORMAT_VERSION,
        source=config.source,
        source_fingerprint=fingerprint(config),
        vocab_size=vocab_size,
        dtype=dtype.name,
        special=vars(special),
        tokenizer=TOKENIZER_FILE if not token_source else "",
        tokenizer_sha256=tokenizer_hash,
        order_seed=config.order_seed,
        validation_fraction=config.validation_fraction,
        shard_tokens=settings.shard_tokens,
    )
    record_verified(out, index["train"]["shards"] + index["validation"]["shards"])
    write_atomically_text(out / INDEX_FILE, json.dumps(index, indent=2))
    shutil.rmtree(staging, ignore_errors=True)
    train, held_out = index["train"], index["validation"]
    log(
        f"prepared {train['documents']:,} training documents ({train['tokens']:,} tokens, "
        f"{len(train['shards'])} shards) and {held_out['documents']:,} held-out "
        f"({held_out['tokens']:,} tokens) in {time.perf_counter() - started:.1f}s"
    )
    return index


def write_atomically_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


# -- resume state ---------------------------------------------------------------------------


@dataclass
class _State:
    """What pass 1 finished: its chunks (each with the source documents it covers)."""

    path: Path
    chunks: list[dict]
    key: str
    stale: bool = False
    """The folder held another preparation (another source or settings): start over."""

    @classmethod
    def load(cls, staging: Path, config: DataConfig, vocab_size: int, settings) -> _State:
        key = resume_key(config, vocab_size, settings)
        path = staging / "state.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved["key"] == key:
                return cls(path=path, chunks=saved["chunks"], key=key)
            return cls(path=path, chunks=[], key=key, stale=True)
        return cls(path=path, chunks=[], key=key)

    @property
    def consumed(self) -> int:
        return self.chunks[-1]["consumed"] if self.chunks else 0

    def add(self, chunk: dict) -> None:
        self.chunks.append(chunk)
        write_atomically_text(self.path, json.dumps({"key": self.key, "chunks": self.chunks}))


def resume_key(config: DataConfig, vocab_size: int, settings: PrepareSettings) -> str:
    """What pass 1's staged chunks were made from: the source's identity and the settings of
    the split and the tokens (what every source shares). Another key means start over."""
    return json.dumps(
        {
            "format": FORMAT_VERSION,
            **cache_identity(config),
            "validation_fraction": config.validation_fraction,
            "vocab_size": vocab_size,
            "tokenizer": settings.tokenizer,
            "tokenizer_sample_mb": settings.tokenizer_sample_mb,
        },
        sort_keys=True,
    )


# -- tokenizer -------------------------------------------------------------------------------


def _tokenizer(config, vocab_size, out: Path, settings, cache: Path | None, log) -> str:
    """Put the tokenizer at out/tokenizer.json (trained on the sample, or the given file);
    return its SHA-256."""
    from dualsweep.data.tokenizer import cached_tokenizer, load_tokenizer

    path = out / TOKENIZER_FILE
    if not path.is_file():
        if settings.tokenizer:
            source = Path(settings.tokenizer).expanduser()
            if not source.is_file():
                raise DataError(f"tokenizer: {settings.tokenizer!r} is not a file")
            _check_tokenizer(load_tokenizer(source), source, vocab_size)
            atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))
        else:
            if vocab_size < MIN_BPE_VOCAB:
                raise DataError(
                    f"model.vocab_size: byte-level BPE needs at least {MIN_BPE_VOCAB} entries (got {vocab_size})"
                )
            sample, sample_hash = _tokenizer_sample(config, settings.tokenizer_sample_mb << 20)
            if not sample:
                raise DataError(f"data.path: the {config.source} source holds no training text")
            log(f"training a {vocab_size}-entry BPE tokenizer on {len(sample):,} documents")
            _, trained = cached_tokenizer(sample, sample_hash, vocab_size, cache or out / STAGING)
            atomic_write(path, lambda tmp: shutil.copyfile(trained, tmp))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tokenizer_sample(config: DataConfig, limit: int) -> tuple[list[str], str]:
    """The first training-split documents of the source, up to `limit` characters (at
    least one), and the hash that identifies them."""
    sample, size, digest = [], 0, hashlib.sha256()
    for _, text in raw_documents(config):
        if is_validation(text.encode("utf-8"), config.validation_fraction):
            continue
        if sample and size + len(text) > limit:
            break
        digest.update(("\x00" if sample else "").encode() + text.encode("utf-8"))
        sample.append(text)
        size += len(text)
    return sample, digest.hexdigest()


def _check_tokenizer(tokenizer, path: Path, vocab_size: int) -> None:
    size = tokenizer.get_vocab_size()
    if size > vocab_size:
        raise DataError(
            f"{path}: the tokenizer has {size} entries, more than model.vocab_size={vocab_size}"
        )
    for token_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != token_id:
            raise DataError(f"{path}: the tokenizer lacks {token} at id {token_id}")


def _check_token_source(config: DataConfig, vocab_size: int) -> SpecialTokens:
    if config.shard_eos_id < 0:
        raise DataError(
            f"data.shard_eos_id: is required for raw token shards, the id that ends each document "
            f"(got {config.shard_eos_id}; {config.path} holds no index.json of `dualsweep prepare`)"
        )
    special = shard_specials(vocab_size, config.shard_eos_id)
    if config.shard_eos_id >= special.pad:
        raise DataError(
            f"data.shard_eos_id: {config.shard_eos_id} must be below vocab_size - 3 = {special.pad}"
        )
    return special


# -- pass 1: encode into staging chunks -----------------------------------------------------

_ENCODER = None
_CUT = None  # tokenizer.cutter(_ENCODER)
# What HF `tokenizers` holds while it encodes, per character of text: measured 190-200 for a
# 320-entry byte-level BPE (the most tokens per character; tokenizer.py), with a margin.
ENCODE_BYTES_PER_CHARACTER = 240
ENCODE_PIECES = 8


def _start_encoder(tokenizer_file: str, one_thread: bool) -> None:
    """Load the tokenizer in this process; a pool's worker encodes on one thread (the
    processes are the parallelism), this process alone on the tokenizer's own threads."""
    global _ENCODER, _CUT
    if one_thread:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from dualsweep.data.tokenizer import cutter, load_tokenizer

    _ENCODER = load_tokenizer(tokenizer_file)
    _CUT = cutter(_ENCODER)


def _encode_batch(texts: list[str], characters: int) -> list[np.ndarray]:
    """Each text's token ids. No encode call sees more than `characters` characters where the
    tokenizer allows cutting a text into pieces with the same ids (`tokenizer.cutter`); a
    tokenizer that does not encodes a longer text whole. A long text goes in pieces of an
    ENCODE_PIECES-th of that, so that an encode call has pieces for the tokenizer's threads."""
    piece = max(1, characters // ENCODE_PIECES)
    pieces = [(i, p) for i, t in enumerate(texts) for p in (_CUT(t, piece) if _CUT else [t])]
    ids: list[list[np.ndarray]] = [[] for _ in texts]
    for group in _batches(pieces, characters):
        for (i, _), encoding in zip(
            group, _ENCODER.encode_batch([p for _, p in group]), strict=True
        ):
            ids[i].append(np.asarray(encoding.ids, dtype=np.int64))
    return [np.concatenate(parts) for parts in ids]


def _batches(items: Iterable[tuple[int, object]], characters: int):
    """Consecutive (number, text) items in groups of at most `characters` (a longer item is a
    group of its own; token arrays count by length)."""
    batch, size = [], 0
    for item in items:
        if batch and size + len(item[1]) > characters:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item[1])
    if batch:
        yield batch


def _encoded(
    batches, tokenizer_file: str | None, workers: int, characters: int
) -> Iterator[tuple[list, list]]:
    """(batch, token arrays) in batch order; at most 2 x workers batches in flight, each
    encoded `characters` at a time."""
    if tokenizer_file is None:  # token-id documents
        for batch in batches:
            yield batch, [np.asarray(doc, dtype=np.int64) for _, doc in batch]
        return
    if workers == 1:
        _start_encoder(tokenizer_file, one_thread=False)
        for batch in batches:
            yield batch, _encode_batch([text for _, text in batch], characters)
        return
    context = multiprocessing.get_context("spawn")  # no fork after the tokenizer's threads ran
    with context.Pool(workers, initializer=_start_encoder, initargs=(tokenizer_file, True)) as pool:
        pending: deque = deque()
        for batch in batches:
            texts = [t for _, t in batch]
            pending.append((batch, pool.apply_async(_encode_batch, (texts, characters))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


class _Chunk:
    """Pass 1's buffer: the documents of one staging chunk, by split, and their digests."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.tokens = {"train": [], "validation": []}
        self.lengths = {"train": [], "validation": []}
        self.digests: list[bytes] = []
        self.size = 0

    def add(self, split: str, ids: np.ndarray, eos: int) -> None:
        self.digests.append(hashlib.sha256(np.ascontiguousarray(ids).tobytes()).digest())
        tokens = ids.astype(self.dtype)
        if len(tokens) == 0 or tokens[-1] != eos:
            tokens = np.append(tokens, np.array(eos, dtype=self.dtype))
        self.tokens[split].append(tokens)
        self.lengths[split].append(len(tokens))
        self.size += len(tokens)

    def write(self, staging: Path, number: int, consumed: int) -> dict:
        record = {"number": number, "consumed": consumed}
        for split in ("train", "validation"):
            write_atomically(staging / f"{number:05d}.{split}.bin", self.tokens[split])
            lengths = np.asarray(self.lengths[split], dtype=np.uint64)
            write_atomically(staging / f"{number:05d}.{split}.len", [lengths])
            record[split] = {"documents": len(lengths), "tokens": int(lengths.sum())}
        digests = np.frombuffer(b"".join(self.digests), dtype=np.uint8)
        write_atomically(staging / f"{number:05d}.digests", [digests])
        return record


def _encode(config, vocab_size, out, staging, state: _State, settings, special, dtype, log):
    """Pass 1: every document of the source not yet in a finished chunk, into chunks."""
    finished = {f"{c['number']:05d}" for c in state.chunks}
    for item in staging.iterdir():  # a chunk killed before it was recorded is redone
        if item.name[:5].isdigit() and item.name[:5] not in finished:
            item.unlink()
    token_source = source_of(config).fields.token_ids
    tokenizer_file = None if token_source else str(out / TOKENIZER_FILE)
    # The bound: a quarter for the staging chunk, half for the batches: `workers` of them
    # encoding (ENCODE_BYTES_PER_CHARACTER), as many more waiting as text or int64 ids
    # (under 10 bytes a character, at ~2.5 characters a token), two per worker.
    budget = settings.memory_mb << 20
    chunk_tokens = max(1, budget // 4 // dtype.itemsize)
    per_character = ENCODE_BYTES_PER_CHARACTER + 2 * 10
    batch_characters = max(1, budget // 2 // settings.workers // per_character)
    skip = state.consumed
    documents = (item for item in raw_documents(config) if item[0] >= skip)
    chunk, last, top = _Chunk(dtype), skip - 1, -1
    if skip:
        log(f"resuming after {len(state.chunks)} staged chunks ({skip:,} source documents)")
    reported = time.perf_counter()
    batches = _batches(documents, batch_characters)
    encoded_batches = _encoded(batches, tokenizer_file, settings.workers, batch_characters)
    for batch, encoded in encoded_batches:
        for (number, document), ids in zip(batch, encoded, strict=True):
            if token_source:
                held_out = is_validation(ids.tobytes(), config.validation_fraction)
                top = max(top, int(ids.max()) if len(ids) else -1)
            else:
                held_out = is_validation(document.encode("utf-8"), config.validation_fraction)
            chunk.add("validation" if held_out else "train", ids, special.eos)
            last = number
            if chunk.size >= chunk_tokens:
                state.add(chunk.write(staging, len(state.chunks), last + 1))
                chunk = _Chunk(dtype)
        if time.perf_counter() - reported > 30:
            reported = time.perf_counter()
            log(f"  encoded {last + 1:,} source documents ({len(state.chunks)} chunks staged)")
    if top >= vocab_size - 3 and token_source:
        raise DataError(
            f"model.vocab_size: shards hold token ids up to {top}, but ids >= vocab_size - 3 = "
            f"{vocab_size - 3} are reserved for pad, bos and mask; raise model.vocab_size"
        )
    if chunk.size or not state.chunks:
        state.add(chunk.write(staging, len(state.chunks), last + 1))


# -- pass 2: the seeded order, into shards --------------------------------------------------


def _order(config, out: Path, staging: Path, state: _State, settings, dtype, log) -> dict:
    """Pass 2: training documents in the seeded order, held-out ones in source order."""
    totals = {
        split: sum(c[split]["documents"] for c in state.chunks) for split in ("train", "validation")
    }
    if not totals["train"] or not totals["validation"]:
        raise DataError(
            f"data.validation_fraction: {config.validation_fraction} splits "
            f"{totals['train'] + totals['validation']} documents into {totals['train']} training "
            f"and {totals['validation']} held-out; both must be non-empty"
        )
    index = {"corpus_hash": _corpus_hash(staging, state)}
    for split in ("train", "validation"):
        lengths = np.concatenate(
            [
                np.fromfile(staging / f"{c['number']:05d}.{split}.len", dtype=np.uint64)
                for c in state.chunks
            ]
        )
        chunk_of = np.repeat(
            np.arange(len(state.chunks), dtype=np.uint32),
            [c[split]["documents"] for c in state.chunks],
        )
        starts = np.zeros(len(lengths), dtype=np.uint64)  # each document's offset in its chunk
        first = 0
        for c in state.chunks:
            n = c[split]["documents"]
            starts[first : first + n] = (
                np.cumsum(lengths[first : first + n]) - lengths[first : first + n]
            )
            first += n
        order = (
            np.random.default_rng(config.order_seed).permutation(len(lengths))
            if split == "train"
            else np.arange(len(lengths))
        )
        shards = _write_split(
            out, staging, state, split, order, lengths, chunk_of, starts, settings, dtype, log
        )
        index[split] = {
            "documents": int(len(lengths)),
            "tokens": int(lengths.sum()),
            "shards": shards,
        }
    return index


def _write_split(
    out, staging, state, split, order, lengths, chunk_of, starts, settings, dtype, log
):
    """Write a split's documents in `order` as shards, after the full shards already written."""
    size = settings.shard_tokens
    done = 0
    while size and (out / shard_name(split, done)).is_file():
        if (out / shard_name(split, done)).stat().st_size != size * dtype.itemsize:
            (out / shard_name(split, done)).unlink()  # the last, shorter shard: rewritten
            break
        done += 1
    first, offset = _resume_point(order, lengths, done * size)
    writer = ShardWriter(out, split, dtype, size, first_shard=done)
    files = [(staging / f"{c['number']:05d}.{split}.bin").open("rb") for c in state.chunks]
    reported = time.perf_counter()
    try:
        for position in range(first, len(order)):
            if time.perf_counter() - reported > 30:
                reported = time.perf_counter()
                log(f"  {split}: {position:,} of {len(order):,} documents in shards")
            doc = int(order[position])
            start, length = int(starts[doc]), int(lengths[doc])
            if position == first and offset:
                start, length = start + offset, length - offset
            handle = files[int(chunk_of[doc])]
            raw = os.pread(handle.fileno(), length * dtype.itemsize, start * dtype.itemsize)
            writer.append(np.frombuffer(raw, dtype=dtype))
        return writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        for handle in files:
            handle.close()


def _resume_point(order: np.ndarray, lengths: np.ndarray, written: int) -> tuple[int, int]:
    """Where a split's stream resumes after its first `written` tokens: the position (in
    `order`) of the first document not wholly written, and its tokens already written.
    Computed block by block, so that no per-document array beyond the inputs is made."""
    total, block = 0, 1 << 20
    for begin in range(0, len(order), block):
        ends = total + np.cumsum(lengths[order[begin : begin + block]].astype(np.int64))
        if int(ends[-1]) > written:
            i = int(np.searchsorted(ends, written, side="right"))
            return begin + i, written - (int(ends[i - 1]) if i else total)
        total = int(ends[-1])
    return len(order), 0


def _corpus_hash(staging: Path, state: _State) -> str:
    """SHA-256 (16 hex) over every document's token digest, in source order."""
    digest = hashlib.sha256()
    for c in state.chunks:
        digest.update((staging / f"{c['number']:05d}.digests").read_bytes())
    return digest.hexdigest()[:16]
