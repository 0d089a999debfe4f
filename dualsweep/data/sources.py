"""The data-source registry: where raw documents come from, one entry per kind of source.

A source is one `DataSource`: its name and config fields (`schema.DataSourceFields`: the
fields it requires, and those that change the documents it gives), how it reads its
documents (text, or token ids split at `data.shard_eos_id`), its fingerprint and the
suffixes of its files. `register_source` adds one; the config then accepts its name, and
both cache keys of a corpus prepared from it (`corpus.corpus_key`, prepare's resume key) hold
`cache_identity`: its fingerprint and its identity fields, never a list kept by hand.

Sources yield documents in a deterministic order (sorted paths, file order), so the
document-level split and the seeded document order are stable under re-runs. The readers of
the built-in sources are in `readers.py`.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualsweep import schema
from dualsweep.config import ConfigError, DataConfig
from dualsweep.data.readers import (
    DataError,
    files_fingerprint,
    hf_records,
    jsonl_records,
    source_files,
    text_files,
    token_shards,
)
from dualsweep.schema import DATA_SOURCES, DataSourceFields

__all__ = [
    "DataError",
    "DataSource",
    "cache_identity",
    "check_source",
    "fingerprint",
    "get_source",
    "raw_documents",
    "register_source",
    "source_of",
    "text_documents",
]


@dataclass(frozen=True)
class DataSource:
    """One kind of data source: what the config knows of it, and how its documents are read."""

    fields: DataSourceFields
    """Its name, required and identity fields, and whether it gives token ids."""
    read: Callable[[DataConfig, list[Path]], Iterable[str] | Iterable[np.ndarray]]
    """Its documents in source order, given the config and its files (`files`): strings, or
    1-D token-id arrays if `fields.token_ids`."""
    suffixes: tuple[str, ...] = ()
    """Endings of its files under `data.path` (none: it reads no files there)."""
    fingerprint: Callable[[DataConfig], dict] | None = None
    """A cheap identity of its current content (None: its files' names, sizes and times)."""

    def __post_init__(self) -> None:
        if self.fingerprint is None and not self.suffixes:
            raise ValueError(f"data source {self.name!r}: give its fingerprint or its suffixes")

    @property
    def name(self) -> str:
        return self.fields.name

    def files(self, config: DataConfig) -> list[Path]:
        """Its files under `data.path`, sorted; DataError if there are none."""
        return source_files(config, self.suffixes) if self.suffixes else []

    def identify(self, config: DataConfig) -> dict:
        if self.fingerprint is not None:
            return self.fingerprint(config)
        return files_fingerprint(config, self.files(config))

    def documents(self, config: DataConfig) -> Iterator[str | np.ndarray]:
        yield from self.read(config, self.files(config))


_SOURCES: dict[str, DataSource] = {}


def register_source(source: DataSource) -> DataSource:
    """Make `source` available by its name, to configs (`data.source`) and to preparation."""
    # (a built-in's fields are declared in the schema before its entry registers)
    if _SOURCES.get(source.name, source) != source or (
        schema.DATA_SOURCES.get(source.name, source.fields) != source.fields
    ):
        raise ValueError(f"a data source named {source.name!r} is already registered")
    _SOURCES[source.name] = source
    schema.DATA_SOURCES[source.name] = source.fields
    return source


def get_source(name: str) -> DataSource:
    try:
        return _SOURCES[name]
    except KeyError:
        raise ConfigError(
            f"data.source: unknown data source (registered: {', '.join(_SOURCES)}) (got {name!r})"
        ) from None


def source_of(config: DataConfig) -> DataSource:
    return get_source(config.source)


# -- what every caller asks of a source ----------------------------------------------------


def check_source(config: DataConfig) -> None:
    """Fail at once (DataError) when a file source's path is missing or holds no such files."""
    source_of(config).files(config)


def fingerprint(config: DataConfig) -> dict:
    """What identifies the source's content without reading it all."""
    return source_of(config).identify(config)


# The five built-in sources were keyed before sources declared their identity fields: both
# keys held these fields, whatever the source. They keep that layout, so that the corpora
# prepared for them keep their keys; a source registered since has its own identity fields
# in both keys instead. (The resume key used to lack the shard fields: an interrupted
# preparation of raw shards resumed with another shard_eos_id or dtype would have reused its
# staged chunks. It now has them, so such a preparation starts over once after the upgrade.)
_FORMAT_2_SOURCES = frozenset({"builtin", "text_dir", "jsonl", "shards", "hf"})
_FORMAT_2_FIELDS = ("text_field", "shard_eos_id", "shard_dtype")


def cache_identity(config: DataConfig) -> dict:
    """What selects the documents of `config`'s source, in both cache keys (the prepared
    corpus, and the resume state of a preparation): the source's name, its fingerprint,
    `data.max_documents` and its identity fields."""
    source = source_of(config)
    names = _FORMAT_2_FIELDS if source.name in _FORMAT_2_SOURCES else source.fields.identity
    return {
        "source": source.name,
        "fingerprint": source.identify(config),
        "max_documents": config.max_documents,
        **{name: getattr(config, name) for name in names},
    }


def text_documents(config: DataConfig) -> Iterator[str]:
    """Documents of a text source, in source order."""
    source = source_of(config)
    if source.fields.token_ids:
        raise ValueError(f"{config.source!r} is not a text source")
    yield from source.documents(config)


def raw_documents(config: DataConfig) -> Iterator[tuple[int, str | np.ndarray]]:
    """(index in the source, document) for every document preparation reads: text, or token
    ids of a token source; the first `data.max_documents`, empty ones skipped (their indices too)."""
    source = source_of(config)
    for index, document in enumerate(source.documents(config)):
        if config.max_documents and index >= config.max_documents:
            return
        if len(document) if source.fields.token_ids else document.strip():
            yield index, document


# -- the built-in sources ------------------------------------------------------------------


def _builtin_documents(config: DataConfig, files: list[Path]) -> list[str]:
    from dualsweep.data.builtin import builtin_documents

    return builtin_documents()


def _python_version(config: DataConfig) -> dict:
    """The built-in corpus depends on the Python that ships it only."""
    return {"python": sys.version, "implementation": platform.python_implementation()}


def _hf_name(config: DataConfig) -> dict:
    return {"dataset": config.hf_dataset, "config": config.hf_config, "split": config.hf_split}


register_source(
    DataSource(DATA_SOURCES["builtin"], _builtin_documents, fingerprint=_python_version)
)
register_source(DataSource(DATA_SOURCES["text_dir"], text_files, suffixes=(".txt",)))
register_source(
    DataSource(DATA_SOURCES["jsonl"], jsonl_records, suffixes=(".jsonl", ".jsonl.gz", ".jsonl.zst"))
)
register_source(DataSource(DATA_SOURCES["shards"], token_shards, suffixes=(".npy", ".bin")))
register_source(DataSource(DATA_SOURCES["hf"], hf_records, fingerprint=_hf_name))
