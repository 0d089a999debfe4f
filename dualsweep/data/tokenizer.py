"""Byte-level BPE tokenizer trained with HF `tokenizers` on the training split, cached by content.

The four specials take ids 0-3 (pad, bos, eos, mask); the byte alphabet is always present,
so any text encodes. The cache key is a hash of the training documents and the settings, so a
tokenizer is trained once per (corpus, vocabulary size) however many runs share it.
"""

from __future__ import annotations

import hashlib
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
