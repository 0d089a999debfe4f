"""Data, read top to bottom as one pass: source -> documents (`sources`, the registry of data
sources, with `readers`, how the built-in ones read) -> split and tokenizer and shards
(`prepare`, with `tokenizer` and `shards`) -> the prepared corpus a run opens (`corpus`) ->
the repetition plan (`repetition`) -> the DataModule (`datamodule`)."""

from dualsweep.data.corpus import PreparedCorpus, prepare_corpus
from dualsweep.data.prepare import PrepareSettings, prepare
from dualsweep.data.repetition import RepetitionPlan, subset_hash
from dualsweep.data.sources import DataError

__all__ = [
    "DataError",
    "PrepareSettings",
    "PreparedCorpus",
    "RepetitionPlan",
    "prepare",
    "prepare_corpus",
    "subset_hash",
]
