"""The LightningDataModule: a prepared corpus served as the batches of a repetition plan.

The training dataset is indexed by optimizer step, so a batch is a pure function of
(config, step): the same in every re-run, and resumable from any step.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dualsweep.config import RunConfig
from dualsweep.data.corpus import PreparedCorpus, prepare_corpus
from dualsweep.data.repetition import RepetitionPlan, subset_hash


class StepBatches(Dataset):
    """Item i is the batch of step `start_step + i`: {"tokens": (B, T) int64, "step": int}."""

    def __init__(self, sequences: np.ndarray, plan: RepetitionPlan, start_step: int = 0):
        self.sequences = sequences
        self.plan = plan
        self.start_step = start_step

    def __len__(self) -> int:
        return self.plan.steps - self.start_step

    def __getitem__(self, index: int) -> dict:
        step = self.start_step + index
        ids = self.plan.sequence_ids(step)
        tokens = torch.from_numpy(self.sequences[ids].astype(np.int64))
        return {"tokens": tokens, "step": step}


class DualSweepData(L.LightningDataModule):
    def __init__(self, config: RunConfig, log=print):
        super().__init__()
        self.config = config
        self.log = log
        self.corpus: PreparedCorpus | None = None
        self.plan: RepetitionPlan | None = None
        self.start_step = 0

    def setup(self, stage: str | None = None) -> None:
        """Prepare (or open the cached) corpus and check it holds the run's unique subset.

        Runs in the training process: preparation is cached and locked, so concurrent
        trials build a corpus once; the check fails before any training step.
        """
        if self.corpus is not None:
            return
        self.corpus = prepare_corpus(self.config.data, self.config.model.vocab_size, log=self.log)
        sequences = self.corpus.training_sequences(self.config.model.seq_len)
        self.plan = RepetitionPlan.for_run(self.config, len(sequences))

    @property
    def unique_subset(self) -> np.ndarray:
        return self.corpus.training_sequences(self.config.model.seq_len)[
            : self.plan.unique_sequences
        ]

    def unique_subset_hash(self) -> str:
        return subset_hash(self.unique_subset, self.plan.unique_sequences)

    def held_out_tokens(self) -> torch.Tensor:
        """The fixed held-out sequences (n, T), the same for every run on this corpus."""
        cfg = self.config
        array = self.corpus.validation_sequences(
            cfg.model.seq_len, cfg.held_out.validation_sequences
        )
        return torch.from_numpy(array.astype(np.int64))

    def train_dataloader(self) -> DataLoader:
        dataset = StepBatches(self.unique_subset, self.plan, self.start_step)
        # Batches are whole steps (batch_size=None), each a function of its step alone, so
        # worker processes prefetch exactly the batches the main process would read, in order.
        # From the page cache the memmap gather is cheap; from network storage at R = 1 (every
        # batch unseen, random 4 KB reads) `train.loader_workers` keeps reads off the step.
        workers = self.config.train.loader_workers
        return DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            prefetch_factor=4 if workers else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
