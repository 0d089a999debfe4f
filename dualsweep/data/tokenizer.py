"""Byte-level BPE tokenizer trained with HF `tokenizers` on the training split, cached by content.

The four specials take ids 0-3 (pad, bos, eos, mask); the byte alphabet is always present,
so any text encodes. The cache key is a hash of the training documents and the settings, so a
tokenizer is trained once per (corpus, vocabulary size) however many runs share it.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from dualsweep.config.run import MIN_BPE_VOCAB
from dualsweep.paths import atomic_write
from dualsweep.special_tokens import SpecialTokens

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|mask|>")
TOKENIZER_SPECIALS = SpecialTokens(pad=0, bos=1, eos=2, mask=3)
assert MIN_BPE_VOCAB == 256 + len(SPECIAL_TOKENS)


def tokenizer_key(documents_hash: str, vocab_size: int) -> str:
    blob = f"bpe-v1|{documents_hash}|{vocab_size}|{'|'.join(SPECIAL_TOKENS)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_tokenizer(documents: Sequence[str], vocab_size: int):
    """A byte-level BPE `tokenizers.Tokenizer` of at most `vocab_size` entries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < MIN_BPE_VOCAB:
        raise ValueError(
            f"model.vocab_size: byte-level BPE needs at least {MIN_BPE_VOCAB} (got {vocab_size})"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer, length=len(documents))
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == token_id
    return tokenizer


def cached_tokenizer(
    documents: Sequence[str], documents_hash: str, vocab_size: int, cache_dir: Path
):
    """Load the tokenizer for these documents from the cache, training and saving it if absent."""
    from tokenizers import Tokenizer

    path = cache_dir / "tokenizers" / f"{tokenizer_key(documents_hash, vocab_size)}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path)), path
    tokenizer = train_tokenizer(documents, vocab_size)
    # A concurrent reader sees the whole file or none.
    atomic_write(path, lambda tmp: tokenizer.save(str(tmp)))
    return tokenizer, path


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


# -- encoding long texts in pieces ---------------------------------------------------------
# HF `tokenizers` holds ~200 bytes per character while it encodes (measured: 81 MB for one
# 0.42 MB document, 326 MB for 1.7 MB, a 320-entry byte-level BPE), so a long document, or
# a batch of many, would take far more memory than the text. A byte-level BPE with the GPT-2
# split regex (`'s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`) encodes a
# text as the concatenation of its pieces when every cut falls where the regex ends a match
# whichever way the text goes on: BPE never merges across the regex's matches.


def cutter(tokenizer):
    """`cut` with this tokenizer's added tokens kept whole, if pieces of a text cut by it
    encode to exactly the ids of the whole text (byte-level BPE with the regex split and no
    prefix space, no normalizer, no post-processor that adds tokens, no added token that
    strips the whitespace beside it); else None."""
    import json

    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    post = spec.get("post_processor")
    added = spec.get("added_tokens", [])
    if not (
        spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
        and (post is None or post.get("type") == "ByteLevel")
        and spec.get("model", {}).get("type") == "BPE"
        and not any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added)
    ):
        return None
    return functools.partial(cut, keep=tuple(t["content"] for t in added))


def _letter_or_number(character: str) -> bool:
    return unicodedata.category(character)[0] in "LN"


def _safe_cut(text: str, at: int, keep: tuple[str, ...]) -> bool:
    """Whether the regex split has a boundary before text[at] that does not depend on what
    follows: a space between two non-spaces (the space starts the next match, the run before
    it ends there), or a letter or number followed by neither a space, letter nor number (a
    ` ?\\p{L}+` or ` ?\\p{N}+` run ends there); and no added token (matched in the raw text
    before the split) spans it. Python's whitespace includes the regex's."""
    before, after = text[at - 1], text[at]
    if before.isspace():
        return False
    if after == " ":
        safe = at + 1 < len(text) and not text[at + 1].isspace()
    else:
        safe = _letter_or_number(before) and not after.isspace() and not _letter_or_number(after)
    return safe and not any(_spans(text, at, token) for token in keep)


def _spans(text: str, at: int, token: str) -> bool:
    """Whether an occurrence of `token` in `text` holds both text[at - 1] and text[at]."""
    start = text.find(token, max(0, at - len(token) + 1), at + len(token) - 1)
    while start != -1 and start < at:
        if start + len(token) > at:
            return True
        start = text.find(token, start + 1, at + len(token) - 1)
    return False


def cut(text: str, size: int, keep: tuple[str, ...] = ()) -> list[str]:
    """`text` in consecutive pieces of at most `size` characters, each cut at a safe place
    (`_safe_cut`; `keep`: added tokens not to cut through); a stretch with no safe place
    within `size` runs on to the next one."""
    pieces, start = [], 0
    while len(text) - start > size:
        end = _last_cut(text, start + 1, start + size, keep)
        if end is None:
            end = _next_cut(text, start + size + 1, keep)
        if end is None:
            break
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def _last_cut(text: str, low: int, high: int, keep: tuple[str, ...]) -> int | None:
    """The last safe cut in [low, high]: spaces first (found by C-speed rfind), else any."""
    at = text.rfind(" ", low, high + 1)
    while at >= low:
        if _safe_cut(text, at, keep):
            return at
        at = text.rfind(" ", low, at)
    for at in range(high, low - 1, -1):  # text without spaces (CJK, code): letters then punctuation
        if _safe_cut(text, at, keep):
            return at
    return None


def _next_cut(text: str, low: int, keep: tuple[str, ...]) -> int | None:
    for at in range(low, len(text)):
        if _safe_cut(text, at, keep):
            return at
    return None
