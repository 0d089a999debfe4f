"""Data: document sources, the BPE tokenizer, prepared corpora, repetition plans, the DataModule."""

from dualsweep.data.corpus import PreparedCorpus, prepare_corpus
from dualsweep.data.repetition import RepetitionPlan, subset_hash
from dualsweep.data.sources import DataError

__all__ = ["DataError", "PreparedCorpus", "RepetitionPlan", "prepare_corpus", "subset_hash"]
