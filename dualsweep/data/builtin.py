"""The built-in offline corpus: the running Python's standard-library docstrings and pydoc topics.

Every Python installation ships it, so a tiny model trains with no download and no network.
Docstrings are read with `ast` from the source files, never by importing modules (imports have
side effects: `antigravity` opens a browser). Test suites and site-packages are skipped, so
the corpus depends only on the Python version; its content hash is recorded with every run.
"""

from __future__ import annotations

import ast
import functools
import sysconfig
from collections.abc import Iterator
from pathlib import Path

MIN_DOCSTRING_CHARS = 20
SKIPPED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_bundled"}
)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _docstrings(source: str) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a few stdlib files are deliberately invalid
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= MIN_DOCSTRING_CHARS:
                yield doc


def builtin_documents(root: Path | None = None) -> list[str]:
    """pydoc topics (sorted by name), then docstrings in path order; exact duplicates dropped."""
    if root is None:  # read once per process: preparation passes over its source twice
        return list(_stdlib_documents())
    return _documents(root)


@functools.cache
def _stdlib_documents() -> tuple[str, ...]:
    return tuple(_documents(stdlib_dir()))


def _documents(root: Path) -> list[str]:
    documents: list[str] = []
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    documents.extend(topics[name].strip() for name in sorted(topics))
    files = sorted(
        p for p in root.rglob("*.py") if not SKIPPED_DIRS.intersection(p.relative_to(root).parts)
    )
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        documents.extend(_docstrings(source))
    return list(dict.fromkeys(d for d in documents if d))
