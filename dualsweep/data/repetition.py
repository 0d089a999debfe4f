"""Repetition-controlled sampling: which unique sequences each training step sees.

With a fixed token budget and R repetitions, the unique subset is the first budget / R
tokens (whole sequences) of the corpus's one seeded document order, so the subsets of a
sweep are nested and models differ only by repetition. Training walks the subset R times
(the budget's worth of sequences), in a fresh seeded order each epoch. Pure numpy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from dualsweep.config import RunConfig
from dualsweep.data.sources import DataError


@dataclass(frozen=True)
class RepetitionPlan:
    unique_sequences: int
    """Size of the unique subset, in sequences (the first ones of the training stream)."""
    batch_size: int
    steps: int
    seed: int
    _epoch_orders: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def for_run(cls, config: RunConfig, available_sequences: int) -> RepetitionPlan:
        if config.unique_sequences > available_sequences:
            raise DataError(
                f"data.repetitions: R={config.data.repetitions} with train.token_budget="
                f"{config.train.token_budget} needs {config.unique_tokens:,} unique tokens, but the "
                f"training split has {available_sequences * config.model.seq_len:,} "
                f"({available_sequences} sequences of {config.model.seq_len}); raise repetitions, "
                "lower the budget or use a larger corpus"
            )
        return cls(
            unique_sequences=config.unique_sequences,
            batch_size=config.train.batch_size,
            steps=config.steps,
            seed=config.train.seed,
        )

    @property
    def epochs(self) -> float:
        """Realised passes over the unique subset."""
        return self.steps * self.batch_size / self.unique_sequences

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The seeded permutation of the unique subset used in `epoch`."""
        order = self._epoch_orders.get(epoch)
        if order is None:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.unique_sequences)
            if len(self._epoch_orders) >= 2:  # steps move forward: keep this epoch and the last
                self._epoch_orders.pop(min(self._epoch_orders))
            self._epoch_orders[epoch] = order
        return order

    def sequence_ids(self, step: int) -> np.ndarray:
        """Indices into the unique subset of the `batch_size` sequences of `step`."""
        stream = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, positions = np.divmod(stream, self.unique_sequences)
        ids = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            here = epochs == epoch
            ids[here] = self.epoch_order(int(epoch))[positions[here]]
        return ids

    def epoch_at(self, step: int) -> float:
        """Passes over the unique subset completed after `step` + 1 steps."""
        return (step + 1) * self.batch_size / self.unique_sequences


def subset_hash(sequences: np.ndarray, unique_sequences: int) -> str:
    """SHA-256 (16 hex) of the unique subset's token bytes."""
    digest = hashlib.sha256()
    chunk = 1 << 16
    for start in range(0, unique_sequences, chunk):
        stop = min(start + chunk, unique_sequences)
        digest.update(np.ascontiguousarray(sequences[start:stop]).tobytes())
    return digest.hexdigest()[:16]
