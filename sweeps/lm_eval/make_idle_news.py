"""Make idle_news.jsonl, the local multiple-choice task of sweeps/lm_eval/, from IDLE's change logs.

    python sweeps/lm_eval/make_idle_news.py     # rewrites sweeps/lm_eval/idle_news.jsonl

The text is CPython's `idlelib/NEWS.txt`, `NEWS2x.txt` and `HISTORY.txt`, as the running
Python ships them (PSF License Version 2, in LICENSE-PSF.txt beside this file): text none of
us wrote, present offline on every Python installation, and not in the built-in corpus (which
reads docstrings and pydoc topics, not these files). Each item is the start of one change
entry (its first 8 words) and four continuations of 6 words: the entry's own next words and
the same span of three other entries, shuffled by a fixed seed. The committed file is the one
this made on Python 3.11.7; another Python's change logs give other items.
"""

from __future__ import annotations

import idlelib
import json
import random
import re
import sys
from pathlib import Path

SOURCES = ("NEWS.txt", "NEWS2x.txt", "HISTORY.txt")
CONTEXT_WORDS, CHOICE_WORDS, CHOICES, ITEMS, SEED = 8, 6, 4, 300, 0


def entries(text: str) -> list[list[str]]:
    """The words of each change entry: a paragraph that starts with "- " or "* "."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block[:2] in ("- ", "* "):
            words = block[2:].split()
            if len(words) >= CONTEXT_WORDS + CHOICE_WORDS and "http" not in block:
                found.append(words)
    return found


def main() -> int:
    folder = Path(idlelib.__file__).parent
    words = [e for name in SOURCES for e in entries((folder / name).read_text(encoding="utf-8"))]
    rng = random.Random(SEED)
    rng.shuffle(words)
    spans = [" ".join(w[CONTEXT_WORDS : CONTEXT_WORDS + CHOICE_WORDS]) for w in words]
    items = []
    for i, entry in enumerate(words[:ITEMS]):
        others = rng.sample(
            [s for j, s in enumerate(spans) if j != i and s != spans[i]], CHOICES - 1
        )
        choices = [spans[i], *others]
        rng.shuffle(choices)
        items.append(
            {
                "context": " ".join(entry[:CONTEXT_WORDS]),
                "choices": choices,
                "label": choices.index(spans[i]),
            }
        )
    out = Path(__file__).with_name("idle_news.jsonl")
    out.write_text("".join(json.dumps(item) + "\n" for item in items))
    print(f"{len(items)} items from {len(words)} entries of {', '.join(SOURCES)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
