"""Zero-shot multiple-choice tasks: the JSONL format, and built-in tasks made from held-out text.

A task is a list of items {context, choices, label}; a model scores each choice by the
log-probability of its tokens given the context. Built-in tasks are made offline from the
corpus's held-out documents only (never a training document), deterministically from a seed,
so every model of a sweep answers the same items and a tiny model gets signal with no download:

- `continuation`: the true next words of a held-out passage against spans of the same
  length drawn from other held-out documents;
- `word_order`: two adjacent words of a held-out sentence in their order against the two
  swapped (a minimal pair), read after up to 8 words of the sentence and before its next word;
- `cloze`: a frequent word of a held-out sentence (the, of, is, ...) against three other
  frequent words, with the same context on both sides.

Items are distinct (no sentence position is asked twice), so the bootstrap standard error
treats them as independent. `word_order` and `cloze` keep rows short (about 15 tokens), so
thousands of items cost seconds; this is what lets a 1M-parameter sweep tell models apart.

`task_registry` names these builders (and any task registered later). Torch-free.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class TaskError(ValueError):
    """A task file or task name is invalid (the message names the file, line and field)."""


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]
    label: int


@dataclass(frozen=True)
class Task:
    name: str
    items: tuple[Item, ...]

    @property
    def chance(self) -> float:
        """Expected accuracy of uniform guessing."""
        return sum(1 / len(item.choices) for item in self.items) / len(self.items)


def load_task(path: str | Path) -> Task:
    """A task from JSONL lines {"context": str, "choices": [str, ...], "label": int}."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: task file not found")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise TaskError(f"{where}: expected an object with context, choices and label")
        context, choices, label = record.get("context"), record.get("choices"), record.get("label")
        if not isinstance(context, str):
            raise TaskError(f"{where}: context must be a string (got {context!r})")
        if not (
            isinstance(choices, list)
            and len(choices) >= 2
            and all(isinstance(c, str) and c for c in choices)
        ):
            raise TaskError(
                f"{where}: choices must be a list of at least two non-empty strings (got {choices!r})"
            )
        if not (
            isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(choices)
        ):
            raise TaskError(f"{where}: label must be an index into choices (got {label!r})")
        items.append(Item(context=context, choices=tuple(choices), label=label))
    if not items:
        raise TaskError(f"{path}: no items")
    return Task(name=path.stem, items=tuple(items))


_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def continuation_task(
    documents: Sequence[str],
    *,
    n_items: int,
    seed: int,
    n_choices: int = 4,
    context_words: int = 32,
    continuation_words: int = 8,
) -> Task:
    """Choose the true next `continuation_words` words of a held-out passage among `n_choices`."""
    rng = random.Random(seed)
    words = [_WORD.findall(d) for d in documents]
    long_enough = [i for i, w in enumerate(words) if len(w) >= context_words + continuation_words]
    usable = [i for i, w in enumerate(words) if len(w) >= continuation_words]
    if not long_enough or len(usable) < n_choices:
        raise TaskError(
            f"continuation: the held-out documents are too short or too few for {n_choices}-way items "
            f"of {context_words} + {continuation_words} words"
        )
    items = []
    for _ in range(n_items):
        doc = rng.choice(long_enough)
        cut = rng.randint(context_words, len(words[doc]) - continuation_words)
        context = " ".join(words[doc][cut - context_words : cut])
        true = " ".join(words[doc][cut : cut + continuation_words])
        choices = [true]
        others = [i for i in usable if i != doc]
        while len(choices) < n_choices:
            other = words[rng.choice(others)]
            start = rng.randint(0, len(other) - continuation_words)
            span = " ".join(other[start : start + continuation_words])
            if span not in choices:
                choices.append(span)
        rng.shuffle(choices)
        items.append(
            Item(
                context=context, choices=tuple(" " + c for c in choices), label=choices.index(true)
            )
        )
    return Task(name="continuation", items=tuple(items))


def _sentences(documents: Sequence[str], min_words: int, max_words: int) -> list[list[str]]:
    """The held-out sentences of `min_words` to `max_words` words, as word lists."""
    sentences = []
    for document in documents:
        for sentence in _SENTENCE_END.split(document):
            words = _WORD.findall(sentence)
            if min_words <= len(words) <= max_words:
                sentences.append(words)
    return sentences


def _sample(rng: random.Random, candidates: list, n_items: int, task: str) -> list:
    """`n_items` distinct candidates (items are independent draws for the bootstrap error)."""
    if len(candidates) < n_items:
        raise TaskError(
            f"{task}: the held-out documents give {len(candidates)} distinct items, fewer than "
            f"evaluation.task_items={n_items}; lower task_items or hold out more documents "
            "(data.validation_fraction)"
        )
    return rng.sample(candidates, n_items)


def word_order_task(
    documents: Sequence[str],
    *,
    n_items: int,
    seed: int,
    context_words: int = 8,
    tail_words: int = 1,
    min_words: int = 4,
    max_words: int = 60,
) -> Task:
    """Choose a held-out word pair in its order over the same two words swapped.

    A minimal pair (same words, same length, one local order change). The context is the
    sentence's last `context_words` words before the pair; each choice is the pair (in one
    order) and the `tail_words` words after it, so short rows keep scoring cheap in every mode
    while the pair is read with context on both sides.
    """
    rng = random.Random(seed)
    sentences = _sentences(documents, min_words, max_words)
    candidates = [
        (s, i)
        for s, words in enumerate(sentences)
        for i in range(len(words) - 1)
        if words[i] != words[i + 1]  # swapping equal words changes nothing
    ]
    if not candidates:
        raise TaskError(f"word_order: no held-out sentence of {min_words}-{max_words} words")
    items = []
    for s, i in _sample(rng, candidates, n_items, "word_order"):
        words = sentences[s]
        context = " ".join(words[max(0, i - context_words) : i])
        tail = words[i + 2 : i + 2 + tail_words]
        right = " ".join([words[i], words[i + 1], *tail])
        wrong = " ".join([words[i + 1], words[i], *tail])
        label = rng.randrange(2)
        choices = (right, wrong) if label == 0 else (wrong, right)
        prefix = " " if context else ""
        items.append(Item(context=context, choices=tuple(prefix + c for c in choices), label=label))
    return Task(name="word_order", items=tuple(items))


_PLAIN_WORD = re.compile(r"[a-z]+")


def cloze_task(
    documents: Sequence[str],
    *,
    n_items: int,
    seed: int,
    n_choices: int = 4,
    vocabulary: int = 32,
    context_words: int = 8,
    tail_words: int = 1,
    min_context_words: int = 2,
) -> Task:
    """Choose the held-out word among `n_choices` of the `vocabulary` most frequent words.

    Cloze over frequent words (the, of, is, to, a, ...): the answer is mostly a matter of
    syntax and agreement, which a model of a million parameters can learn. The frequent words
    are counted in the held-out documents themselves. Context: the sentence's last
    `context_words` words before the blank (at least `min_context_words`); each choice is a
    candidate word followed by the sentence's next `tail_words` words, so the blank is read
    with context on both sides.
    """
    rng = random.Random(seed)
    sentences = _sentences(documents, min_context_words + 1, 10**9)
    counts: dict[str, int] = {}
    for words in sentences:
        for word in words:
            if _PLAIN_WORD.fullmatch(word):
                counts[word] = counts.get(word, 0) + 1
    frequent = sorted(counts, key=lambda w: (-counts[w], w))[:vocabulary]
    if len(frequent) < n_choices:
        raise TaskError(f"cloze: fewer than {n_choices} distinct words in the held-out documents")
    common = set(frequent)
    candidates = [
        (s, i)
        for s, words in enumerate(sentences)
        for i in range(min_context_words, len(words))
        if words[i] in common
    ]
    items = []
    for s, i in _sample(rng, candidates, n_items, "cloze"):
        words = sentences[s]
        true = words[i]
        tail = words[i + 1 : i + 1 + tail_words]
        others = rng.sample([w for w in frequent if w != true], n_choices - 1)
        options = [true, *others]
        rng.shuffle(options)
        choices = tuple(" " + " ".join([w, *tail]) for w in options)
        context = " ".join(words[max(0, i - context_words) : i])
        items.append(Item(context=context, choices=choices, label=options.index(true)))
    return Task(name="cloze", items=tuple(items))
