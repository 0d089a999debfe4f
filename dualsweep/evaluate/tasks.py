"""Zero-shot multiple-choice tasks: the JSONL format, and built-in tasks made from held-out text.

A task is a list of items {context, choices, label}; a model scores each choice by the
log-probability of its tokens given the context. Built-in tasks are made offline from the
corpus's held-out documents only (never a training document), deterministically from a seed,
so every model of a sweep answers the same items and a tiny model gets signal with no download:

- `continuation`: the true next words of a held-out passage against spans of the same
  length drawn from other held-out documents;
- `word_order`: a held-out sentence against the same sentence with two adjacent words
  swapped (a minimal pair: same words, same length, one local order change).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BUILTIN_TASKS = ("continuation", "word_order")


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


def word_order_task(
    documents: Sequence[str], *, n_items: int, seed: int, min_words: int = 6, max_words: int = 30
) -> Task:
    """Choose the held-out sentence over the same sentence with two adjacent words swapped."""
    rng = random.Random(seed)
    sentences = []
    for document in documents:
        for sentence in _SENTENCE_END.split(document):
            words = _WORD.findall(sentence)
            if min_words <= len(words) <= max_words and len(set(words)) > 1:
                sentences.append(words)
    if not sentences:
        raise TaskError(f"word_order: no held-out sentence of {min_words}-{max_words} words")
    items = []
    for _ in range(n_items):
        words = rng.choice(sentences)
        while True:  # two adjacent, different words (swapping equal words changes nothing)
            i = rng.randrange(len(words) - 1)
            if words[i] != words[i + 1]:
                break
        swapped = [*words[:i], words[i + 1], words[i], *words[i + 2 :]]
        choices = [" ".join(words), " ".join(swapped)]
        label = rng.randrange(2)
        if label == 1:
            choices.reverse()
        items.append(Item(context="", choices=tuple(choices), label=label))
    return Task(name="word_order", items=tuple(items))


def builtin_task(name: str, held_out_documents: Sequence[str], *, n_items: int, seed: int) -> Task:
    if name == "continuation":
        return continuation_task(held_out_documents, n_items=n_items, seed=seed)
    if name == "word_order":
        return word_order_task(held_out_documents, n_items=n_items, seed=seed)
    raise TaskError(f"{name}: not a built-in task ({', '.join(BUILTIN_TASKS)}) nor a .jsonl file")
