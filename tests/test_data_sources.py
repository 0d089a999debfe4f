"""The data-source registry: a new source is one entry, and the config and both cache keys
(the prepared corpus's, and an unfinished preparation's) follow from it; the five built-in
sources keep the keys they had before the registry."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import platform
import sys

import numpy as np
import pytest

from dualsweep import schema
from dualsweep.config import ConfigError, DataConfig, run_config_from_dict
from dualsweep.data import DataError, prepare_corpus
from dualsweep.data import sources as sources_module
from dualsweep.data.corpus import corpus_key
from dualsweep.data.prepare import PrepareSettings, resume_key
from dualsweep.data.sources import DataSource, get_source, register_source, text_documents
from dualsweep.schema import DataSourceFields

VOCAB = 320
MTIME = 1_700_000_000_000_000_000


def csv_rows(config: DataConfig, files):
    """One document per row of each .csv file: its `data.text_field` column."""
    for path in files:
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), 2):
                if config.text_field not in row:
                    raise DataError(
                        f"{path}:{line}: no column data.text_field={config.text_field!r}"
                    )
                yield row[config.text_field]


CSV = DataSource(
    DataSourceFields("csv", required=("path",), identity=("text_field",)),
    csv_rows,
    suffixes=(".csv",),
)


@pytest.fixture
def csv_source():
    """The csv source, registered for one test only: other tests see the built-ins alone."""
    register_source(CSV)
    yield CSV
    del sources_module._SOURCES["csv"]
    del schema.DATA_SOURCES["csv"]


def write_csv(path, rows: int = 60):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["title", "body"])
        for i in range(rows):
            writer.writerow(
                [f"title {i}", f"row {i}: " + "lorem ipsum dolor sit amet " * (i % 4 + 1)]
            )
    return path


def test_a_registered_source_is_configured_prepared_and_keyed_by_its_settings(csv_source, tmp_path):
    path = write_csv(tmp_path / "table" / "rows.csv")
    raw = {"data": {"source": "csv", "path": str(path.parent), "text_field": "body"}}
    config = run_config_from_dict(raw).data  # accepted without a config edit
    config = DataConfig(**{**vars(config), "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ConfigError, match=r"^data\.path: is required for source 'csv'"):
        run_config_from_dict({"data": {"source": "csv"}})

    texts = list(text_documents(config))
    assert len(texts) == 60 and texts[1] == "row 1: " + "lorem ipsum dolor sit amet " * 2
    body = prepare_corpus(config, VOCAB, log=lambda m: None)
    assert body.meta["source"] == "csv"
    assert body.directory.name == corpus_key(config, VOCAB)
    assert body.meta["train"]["documents"] + body.meta["validation"]["documents"] == 60

    # Its own setting is in both keys: another column is another corpus, never the cached one.
    titles = DataConfig(**{**vars(config), "text_field": "title"})
    settings = PrepareSettings()
    assert corpus_key(titles, VOCAB) != corpus_key(config, VOCAB)
    assert resume_key(titles, VOCAB, settings) != resume_key(config, VOCAB, settings)
    title = prepare_corpus(titles, VOCAB, log=lambda m: None)
    assert title.directory != body.directory
    tokens = {
        name: corpus.meta["train"]["tokens"] + corpus.meta["validation"]["tokens"]
        for name, corpus in (("body", body), ("title", title))
    }
    assert tokens["title"] < tokens["body"] / 3  # "title 7" against 1-4 lorem sentences

    # Fields it does not declare are in neither key (the built-ins' shared layout is not its).
    for field, value in (("shard_eos_id", 7), ("shard_dtype", "uint32"), ("hf_split", "test")):
        other = DataConfig(**{**vars(config), field: value})
        assert corpus_key(other, VOCAB) == corpus_key(config, VOCAB), field
        assert resume_key(other, VOCAB, settings) == resume_key(config, VOCAB, settings), field
    # Its content is: an edited file changes its fingerprint.
    write_csv(path, rows=61)
    assert corpus_key(config, VOCAB) != body.directory.name


def test_a_bad_row_names_the_file_and_line(csv_source, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("title\nonly a title\n")
    config = DataConfig(source="csv", path=str(path), text_field="body")
    with pytest.raises(DataError, match=r"rows\.csv:2: no column data\.text_field='body'"):
        list(text_documents(config))


def test_an_unknown_source_names_the_registered_ones():
    with pytest.raises(
        ConfigError,
        match=r"^data\.source: unknown data source \(registered: builtin, text_dir, jsonl, "
        r"shards, hf\) \(got 'csv'\)$",
    ):
        run_config_from_dict({"data": {"source": "csv", "path": "x"}})


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="a data source named 'jsonl' is already registered"):
        register_source(DataSource(DataSourceFields("jsonl"), csv_rows, suffixes=(".csv",)))
    register_source(get_source("jsonl"))  # the same entry again: nothing changes
    assert schema.DATA_SOURCES["jsonl"] is get_source("jsonl").fields


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(MTIME, MTIME))  # the fingerprint holds modification times


def builtin_source_configs(root) -> dict[str, DataConfig]:
    """One config per built-in source, over files of fixed content and modification time."""
    _write(root / "texts" / "a.txt", b"the first document\n")
    _write(root / "texts" / "sub" / "b.txt", b"the second document, a little longer\n")
    _write(root / "docs.jsonl", b'{"body": "one"}\n{"body": "two"}\n')
    _write(root / "tokens" / "part.bin", np.arange(1, 41, dtype=np.uint16).tobytes())
    common = {"validation_fraction": 0.2, "order_seed": 3, "max_documents": 7}
    return {
        "builtin": DataConfig(**common),
        "text_dir": DataConfig(source="text_dir", path=str(root / "texts"), **common),
        "jsonl": DataConfig(
            source="jsonl", path=str(root / "docs.jsonl"), text_field="body", **common
        ),
        "shards": DataConfig(
            source="shards",
            path=str(root / "tokens"),
            shard_eos_id=10,
            shard_dtype="uint16",
            **common,
        ),
        "hf": DataConfig(
            source="hf",
            hf_dataset="wikitext",
            hf_config="wikitext-2-raw-v1",
            hf_split="validation",
            **common,
        ),
    }


# corpus_key of each config above at vocab 320, as the code before the registry gave it
# (commit 7d61e65: `git archive HEAD dualsweep` into a scratch folder, run on its
# PYTHONPATH with the same sys.version and platform as below). Prepared corpora in caches
# and shard folders are found by these keys: they must not move.
CORPUS_KEYS_BEFORE_THE_REGISTRY = {
    "builtin": "521c8112f9405ca6",
    "text_dir": "5a2e73fc37d76732",
    "jsonl": "1424599f651fef90",
    "shards": "75c8202e3fabc2b8",
    "hf": "6c8350e684d507e4",
}
# The first 16 hex of the SHA-256 of the resume key with PrepareSettings(tokenizer_sample_mb=64).
# These moved once, in the registry's commit: the resume key gained shard_eos_id and
# shard_dtype (before, an interrupted raw-shard preparation rerun with another separator id
# reused its staged chunks). Only an unfinished preparation is affected: it starts over.
RESUME_KEYS = {
    "builtin": "a764e99443f0a82e",
    "text_dir": "a4b8e045cdca917a",
    "jsonl": "a094f3347cf7c107",
    "shards": "4ef9656dc8ab2d34",
    "hf": "eaa5b55f21e5a94c",
}


def test_the_builtin_sources_keep_their_cache_keys(tmp_path, monkeypatch):
    # The built-in corpus is keyed by the Python that ships it: fixed here.
    monkeypatch.setattr(sys, "version", "3.12.0 (fixed for the key test)")
    monkeypatch.setattr(platform, "python_implementation", lambda: "CPython")
    settings = PrepareSettings(tokenizer_sample_mb=64)
    configs = builtin_source_configs(tmp_path)
    assert {n: corpus_key(c, VOCAB) for n, c in configs.items()} == CORPUS_KEYS_BEFORE_THE_REGISTRY
    resume = {
        n: hashlib.sha256(resume_key(c, VOCAB, settings).encode()).hexdigest()[:16]
        for n, c in configs.items()
    }
    assert resume == RESUME_KEYS
    # The fix: a raw-shard preparation with another separator id resumes nothing.
    shards = configs["shards"]
    other = dataclasses.replace(shards, shard_eos_id=11)
    assert resume_key(other, VOCAB, settings) != resume_key(shards, VOCAB, settings)


OTHER_VALUES = {"text_field": "title", "shard_eos_id": 11, "shard_dtype": "uint32"}


@pytest.mark.parametrize(
    "name, field",
    [(name, f) for name, fields in schema.DATA_SOURCES.items() for f in fields.identity],
)
def test_a_builtin_sources_identity_fields_are_in_its_corpus_key(tmp_path, name, field):
    """The layout the built-ins keep covers what each declares (a new built-in identity field
    needs a value in OTHER_VALUES)."""
    config = builtin_source_configs(tmp_path)[name]
    changed = DataConfig(**{**vars(config), field: OTHER_VALUES[field]})
    assert corpus_key(changed, VOCAB) != corpus_key(config, VOCAB)
