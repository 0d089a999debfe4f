"""The objective interface and its registry: AR and MD are two instances, registered once.

An objective says what it draws for a sequence (its corruption), how the model attends for
it, how a sequence's loss is summed, how it scores a multiple-choice continuation, and its
name in columns and logs. Training (`objectives.mix`), the held-out evaluation, the scoring
modes and the result columns (`dualsweep.schema`) all read these definitions; a run mixes the
pair named by `objective.objectives` (alpha weighs the first). A new objective is a subclass
registered with `register()` in the process that trains: training, the held-out evaluation
and the result columns pick it up with no other change (tests/test_objectives.py trains
one); one that `scores` also adds its name to the torch-free `schema.SCORING_MODES`, which
the config checks `evaluation.modes` against.

Masked diffusion, masked-next-token form (MNTP): draw t ~ U(0, 1) per sequence, replace each
maskable input token by the mask id with probability t, attend bidirectionally, and at
position i predict token i + 1 only where input i + 1 was masked. Weighting the summed
cross-entropy of those targets by 1 / t gives, in expectation over t and the masks, an upper
bound on the sequence's negative log-likelihood (the masked-diffusion ELBO).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from dualsweep import schema
from dualsweep.config import ConfigError
from dualsweep.model import BIDIRECTIONAL, CAUSAL
from dualsweep.objectives.losses import (
    ar_nll_sums,
    mask_tokens,
    maskable_positions,
    md_nll_sums,
    sample_mask_rates,
)
from dualsweep.schema import AR_COLUMNS, MD_COLUMNS, ObjectiveColumns
from dualsweep.special_tokens import SpecialTokens


@dataclass(frozen=True)
class Rows:
    """Some rows of a batch, flagged on the host (to choose work without a device sync) and
    on the batch's device (to select with, without a host-to-device copy per use)."""

    host: np.ndarray
    """Flags (B,) on the host."""
    device: torch.Tensor
    """The same flags (B,), bool, on the batch's device."""

    def __invert__(self) -> Rows:
        return Rows(~self.host, ~self.device)

    def any(self) -> bool:
        return bool(self.host.any())


def every_row(n: int, device: torch.device | str = "cpu") -> Rows:
    """All n rows of a batch (made on the device, nothing copied)."""
    return Rows(np.ones(n, dtype=bool), torch.ones(n, dtype=torch.bool, device=device))


@dataclass(frozen=True)
class Draw:
    """An objective's corruption of some rows of a batch; the other rows are left as they were."""

    inputs: torch.Tensor
    """Model inputs (B, T)."""
    masked: torch.Tensor | None
    """Replaced positions (B, T); None when the objective replaces nothing (`inputs` are the
    clean tokens)."""
    rates: torch.Tensor
    """Corruption rate per row (B,); 1 where unused."""


@dataclass(frozen=True)
class ScoreRow:
    """One forward pass's row when scoring a continuation (attending as its objective does):
    its input and where it is read."""

    tokens: list[int]
    targets: list[int]
    """Positions whose original token is read, each from the logits at the position before."""


class Objective:
    """One training objective of the shared model (subclass it and `register` an instance)."""

    name: str
    """Its short name, in config (`objective.objectives`), scoring modes, columns and logs."""
    bidirectional: bool
    """How the model attends for it: causally, or bidirectionally."""
    columns: ObjectiveColumns
    """Its result columns (`columns.estimated`: its draws are random)."""
    scores: bool = False
    """It has a multiple-choice scoring mode of its own name (`score_rows`); `register` adds
    the name to `schema.SCORING_MODES`."""

    @property
    def held_out_seed_offset(self) -> int:
        """Added to `held_out_seed` for this objective's held-out draws, so that two random
        objectives never share draws (a hash of its name)."""
        return zlib.crc32(self.name.encode())

    @property
    def attention(self) -> int:
        """The model's `prefix_lengths` for this objective's rows: CAUSAL or BIDIRECTIONAL."""
        return BIDIRECTIONAL if self.bidirectional else CAUSAL

    def draw(
        self,
        tokens: torch.Tensor,
        rows: Rows,
        special: SpecialTokens,
        generator: torch.Generator,
        *,
        stratified: bool,
        min_rate: float,
        common: bool = False,
    ) -> Draw:
        """Corrupt the rows of `tokens` (B, T) where `rows` (B,) is True.

        With `common`, draw for every row and keep the draws of `rows`: a row's draw is then
        the same whichever rows train on this objective (common random numbers across alpha).

        `rows.host` counts and chooses without a device sync; `rows.device` selects on the
        device without a copy. A draw makes no host-to-device copy (it runs per step on a
        GPU, where each would wait for the work queued before it)."""
        raise NotImplementedError

    def sequence_sums(
        self,
        nll: torch.Tensor,
        targets: torch.Tensor,
        masked: torch.Tensor | None,
        rates: torch.Tensor,
    ) -> torch.Tensor:
        """Each row's summed loss (B,) from the next-token NLL (B, T-1) of the corrupted inputs."""
        raise NotImplementedError

    def score_rows(
        self, context: list[int], continuation: list[int], *, mask_id: int, span: int
    ) -> list[ScoreRow] | None:
        """The rows that score `continuation` after `context`; None: no scoring mode of its own."""
        return None


class Autoregressive(Objective):
    """Next-token prediction with causal attention on the clean tokens."""

    name = "ar"
    bidirectional = False
    columns = AR_COLUMNS
    scores = True

    def draw(self, tokens, rows, special, generator, *, stratified, min_rate, common=False) -> Draw:
        return Draw(inputs=tokens, masked=None, rates=torch.ones(len(tokens), device=tokens.device))

    def sequence_sums(self, nll, targets, masked, rates) -> torch.Tensor:
        return ar_nll_sums(nll, targets)

    def score_rows(self, context, continuation, *, mask_id, span) -> list[ScoreRow]:
        tokens = [*context, *continuation]
        return [ScoreRow(tokens, list(range(len(context), len(tokens))))]


class MaskedDiffusion(Objective):
    """Masked diffusion as masked next-token prediction (see the module's docstring)."""

    name = "md"
    bidirectional = True
    columns = MD_COLUMNS
    scores = True
    held_out_seed_offset = 0  # the seed its committed held-out curves were drawn with

    def draw(self, tokens, rows, special, generator, *, stratified, min_rate, common=False) -> Draw:
        device = tokens.device
        count = len(tokens) if common else int(rows.host.sum())
        drawn = sample_mask_rates(
            count, generator, stratified=stratified, min_rate=min_rate, device=device
        )
        if common:  # every row drew; the other rows' rates are dropped
            rates = torch.where(rows.device, drawn, torch.ones_like(drawn))
        else:  # the selected rows' rates in row order (masked_scatter needs no index or copy)
            rates = torch.ones(len(tokens), device=device).masked_scatter(rows.device, drawn)
        maskable = maskable_positions(tokens, special) & rows.device[:, None]
        inputs, masked = mask_tokens(tokens, rates, maskable, special.mask, generator)
        return Draw(inputs=inputs, masked=masked, rates=rates)

    def sequence_sums(self, nll, targets, masked, rates) -> torch.Tensor:
        return md_nll_sums(nll, targets, masked, rates)

    def score_rows(self, context, continuation, *, mask_id, span) -> list[ScoreRow]:
        """Pseudo-log-likelihood: the continuation masked `span` tokens at a time (0: all at
        once), each masked token read at the position before it, as in training."""
        tokens = [*context, *continuation]
        positions = list(range(len(context), len(tokens)))
        step = span if span > 0 else len(positions)
        rows = []
        for start in range(0, len(positions), step):
            chunk = positions[start : start + step]
            masked = [mask_id if j in chunk else t for j, t in enumerate(tokens)]
            rows.append(ScoreRow(masked, chunk))
        return rows


_REGISTRY: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Make `objective` available by its name (to configs, scoring and the result columns)."""
    current = _REGISTRY.get(objective.name)
    if current is not None and type(current) is not type(objective):
        raise ValueError(f"an objective named {objective.name!r} is already registered")
    if objective.columns.name != objective.name:
        raise ValueError(
            f"objective {objective.name!r}: its columns are named {objective.columns.name!r}"
        )
    _REGISTRY[objective.name] = objective
    schema.OBJECTIVE_COLUMNS[objective.name] = objective.columns
    if not objective.bidirectional:
        schema.CAUSAL_OBJECTIVES.add(objective.name)
    if objective.scores and objective.name not in schema.SCORING_MODES:
        schema.SCORING_MODES.append(objective.name)  # the list itself: importers hold it
    return objective


def get_objective(name: str) -> Objective:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"objective.objectives: unknown objective {name!r} (registered: {', '.join(_REGISTRY)})"
        ) from None


def registered() -> tuple[Objective, ...]:
    return tuple(_REGISTRY.values())


AR = register(Autoregressive())
MD = register(MaskedDiffusion())
