"""The mix: alpha * L_first + (1 - alpha) * L_second over a pair of registered objectives.

`objective.objectives` names the pair, (ar, md) by default: the paper's alpha * L_AR +
(1 - alpha) * L_MD. Each row of a batch trains one objective of the pair; `objective_allocation`
says which and with what weight, `corrupt_batch` draws every row's corruption at once, and
`dual_objective_loss` computes the whole mix in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dualsweep.allocation import first_rows_per_step
from dualsweep.objectives.losses import (
    chunked_next_token_nll,
    document_ids,
    modelled,
    next_token_nll,
)
from dualsweep.objectives.registry import Objective, Rows
from dualsweep.special_tokens import SpecialTokens


def first_sequence_flags(alpha: float, first_index: int, count: int) -> np.ndarray:
    """Which of the sequences first_index .. first_index+count-1 of the training stream train
    the pair's first objective (AR by default).

    Sequence n is first when round(alpha * (n + 1)) > round(alpha * n): after any number N of
    sequences exactly round(alpha * N) were first, so the realised share tracks alpha to
    within half a sequence at every point of training, for any alpha in [0, 1]. The flags
    depend only on the global index, so they are the same for any batch size or resume point.
    """
    n = np.arange(first_index, first_index + count + 1, dtype=np.float64)
    first_so_far = np.floor(alpha * n + 0.5)
    return np.diff(first_so_far) > 0


MIX_ALLOCATIONS = ("sequence", "step")


def objective_allocation(
    alpha: float, step: int, batch_size: int, rule: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of step `step`'s batch train the first objective (B,), and each row's weight
    in the batch loss (B,).

    - `sequence`: whole sequences are assigned by `first_sequence_flags` (the cumulative share
      tracks alpha), every row weighs 1/B. Unbiased over training, but a step may hold one
      objective only (alpha = 1/256, B = 16: one AR sequence every 16 steps).
    - `step`: every batch holds n_1 = `first_rows_per_step` rows of the first objective (the
      first rows; the data order is already shuffled) and B - n_1 of the second, weighted so
      that the batch loss is alpha * mean(first rows) + (1 - alpha) * mean(second rows): each
      step's gradient is then an unbiased estimate of the paper's loss, the small-batch form
      of its per-device split.

    The weights sum to 1 over the batch; at alpha 0 or 1 both rules give one objective, 1/B each.
    """
    if rule == "sequence":
        is_first = first_sequence_flags(alpha, step * batch_size, batch_size)
        return is_first, np.full(batch_size, 1.0 / batch_size)
    if rule != "step":
        raise ValueError(f"unknown mix allocation {rule!r} (one of {', '.join(MIX_ALLOCATIONS)})")
    n_first = first_rows_per_step(alpha, batch_size)
    is_first = np.arange(batch_size) < n_first
    if n_first in (0, batch_size):
        return is_first, np.full(batch_size, 1.0 / batch_size)
    weights = np.where(is_first, alpha / n_first, (1.0 - alpha) / (batch_size - n_first))
    return is_first, weights


@dataclass(frozen=True)
class Corruption:
    """What the model sees for a batch: each row corrupted by its objective (AR: clean tokens,
    MD: masked tokens)."""

    inputs: torch.Tensor
    """Model inputs (B, T)."""
    masked: torch.Tensor | None
    """Replaced positions (B, T), or None when no row's objective replaces tokens."""
    rates: torch.Tensor
    """Corruption rate per row (B,), e.g. MD's t; 1 where unused."""
    first: Rows
    """The rows of the pair's first objective: on the host, so that batch composition is known
    without a device sync, and on the device, to select with."""
    weights: torch.Tensor
    """Each row's weight in the whole batch's loss (B,), summing to 1 over the batch."""

    @property
    def is_first(self) -> np.ndarray:
        """Host-side objective flags (B,)."""
        return self.first.host

    def rows(self, start: int, stop: int) -> Corruption:
        """The corruption of rows start..stop-1 (a micro-batch)."""
        return Corruption(
            inputs=self.inputs[start:stop],
            masked=None if self.masked is None else self.masked[start:stop],
            rates=self.rates[start:stop],
            first=Rows(self.first.host[start:stop], self.first.device[start:stop]),
            weights=self.weights[start:stop],
        )

    def take(self, index: np.ndarray, on_device: torch.Tensor) -> Corruption:
        """The corruption of rows `index` (a copy), in that order; `on_device` is the same
        index on the batch's device."""
        return Corruption(
            inputs=self.inputs[on_device],
            masked=None if self.masked is None else self.masked[on_device],
            rates=self.rates[on_device],
            first=Rows(self.first.host[index], self.first.device[on_device]),
            weights=self.weights[on_device],
        )


def objective_order(is_first: np.ndarray) -> np.ndarray:
    """Row order with the first objective's rows first, each group in batch order.

    Cutting a batch in this order into micro-batches (and a worker's share, which keeps the
    order: `Workers.share`) makes every part but at most one (the one straddling the
    boundary) hold a single objective, so its forward pass is all-causal or all-bidirectional
    and takes the mask-free attention kernels.
    """
    return np.argsort(~is_first, kind="stable")


def objective_order_on_device(first: torch.Tensor) -> torch.Tensor:
    """`objective_order` of the device's flags (B,), computed there: the same order, no copy."""
    return torch.argsort((~first).to(torch.uint8), stable=True)


def rows_to_device(
    is_first: np.ndarray, weights: np.ndarray, device: torch.device
) -> tuple[Rows, torch.Tensor]:
    """The step's objective flags and row weights on `device`, in one copy.

    On a GPU, from pinned memory and non-blocking: a copy from ordinary (pageable) host
    memory waits for every kernel queued before it, which would stall the step's pipeline
    once per copy. The float32 weights are those of the host's float64 weights, rounded as
    `np.float32` rounds them."""
    packed = torch.from_numpy(
        np.stack([np.asarray(is_first, dtype=np.float32), np.asarray(weights, dtype=np.float32)])
    )
    if device.type == "cuda":
        packed = packed.pin_memory()
    packed = packed.to(device, non_blocking=True)
    return Rows(np.asarray(is_first, dtype=bool), packed[0] > 0.5), packed[1]


def corrupt_batch(
    tokens: torch.Tensor,
    is_first: np.ndarray,
    special: SpecialTokens,
    generator: torch.Generator,
    pair: Sequence[Objective],
    *,
    weights: np.ndarray | None = None,
    stratified: bool = False,
    min_mask_rate: float = 1e-3,
    common_masks: bool = False,
) -> Corruption:
    """Draw the corruption of a whole batch: each objective of `pair` draws for its rows only
    (the first objective's draws come first).

    Drawn for the whole batch at once, so that splitting it into micro-batches afterwards
    changes nothing. An objective with no row draws nothing (alpha = 1 draws no mask at all).
    `weights` are the rows' weights in the batch loss (from `objective_allocation`; default
    1/B each). `common_masks`: each objective draws for every row (`Objective.draw`).
    """
    B = len(tokens)
    weights = np.full(B, 1.0 / B) if weights is None else weights
    first, row_weights = rows_to_device(is_first, weights, tokens.device)  # the step's one copy
    inputs, masked, rates = tokens, None, torch.ones(B, device=tokens.device)
    for objective, rows in zip(pair, (first, ~first), strict=True):
        if not rows.any():
            continue
        draw = objective.draw(
            tokens,
            rows,
            special,
            generator,
            stratified=stratified,
            min_rate=min_mask_rate,
            **({"common": True} if common_masks else {}),  # (objectives of before lack it)
        )
        if draw.masked is None:  # nothing replaced: its rows keep the clean tokens
            continue
        if masked is None:  # the only objective that replaced tokens: take its draw whole
            inputs, masked, rates = draw.inputs, draw.masked, draw.rates
        else:
            inputs = torch.where(rows.device[:, None], draw.inputs, inputs)
            masked = masked | draw.masked
            rates = torch.where(rows.device, draw.rates, rates)
    return Corruption(inputs=inputs, masked=masked, rates=rates, first=first, weights=row_weights)


@dataclass(frozen=True)
class MixedLoss:
    loss: torch.Tensor
    """These rows' share of the batch loss: per-sequence losses times their batch weights, summed
    (over micro-batches these add up to the whole batch's loss)."""
    sequence_losses: torch.Tensor
    """Per-sequence loss (B,) in nats/token: AR NLL, or the MD ELBO estimate."""


def dual_objective_loss(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    corruption: Corruption,
    special: SpecialTokens,
    pair: Sequence[Objective],
    *,
    document_masking: bool = False,
    loss_chunk_tokens: int = 0,
    compiled_head: bool = False,
) -> MixedLoss:
    """alpha * L_first + (1 - alpha) * L_second in one forward pass, one objective per sequence.

    `corruption.is_first` picks each sequence's objective; each row attends as its objective
    says (AR: causally on clean tokens; MD: bidirectionally on masked tokens), through
    per-sample attention masks in a single forward (mask-free kernels when the batch holds
    one objective).

    How the weights realise the mix: every sequence has its own per-token loss (its
    objective's summed loss / n_targets: AR NLL, or MD masked NLL / t) and a weight from
    `objective_allocation`. Under the `sequence` rule every row weighs 1/B, so the expected
    batch loss is share * E[L_first] + (1 - share) * E[L_second], and the cumulative share of
    first sequences stays within half a sequence of alpha: over training the gradient weights
    are alpha and 1 - alpha. Under the `step` rule first rows weigh alpha / n_1 and second
    rows (1 - alpha) / n_2, so each batch's loss is alpha * mean(first) + (1 - alpha) *
    mean(second). With alpha = 1 this is the first objective's loss and the second draws
    nothing; with alpha = 0 the second's.

    With `loss_chunk_tokens` or `compiled_head`, `model` must also offer `features` and `head`
    (the Transformer does): the output head and cross-entropy then run that many positions at
    a time, or as one compiled graph (`losses.chunked_next_token_nll`).
    """
    first, second = pair
    B, T = tokens.shape
    n_first = int(corruption.is_first.sum())
    first_rows = corruption.first.device
    if n_first == B:
        prefix: torch.Tensor | int = first.attention
    elif n_first == 0:
        prefix = second.attention
    elif first.bidirectional == second.bidirectional:
        prefix = first.attention
    else:
        prefix = torch.where(first_rows, first.attention, second.attention)
        prefix = prefix.clamp(max=T)  # a whole-row prefix: every row's value fits the mask
    docs = document_ids(corruption.inputs, special.eos) if document_masking else None
    if loss_chunk_tokens or compiled_head:  # see losses.chunked_next_token_nll
        features = model.features(corruption.inputs, prefix, docs)
        nll = chunked_next_token_nll(
            features, model.head.weight, tokens, loss_chunk_tokens, compiled=compiled_head
        )
    else:
        nll = next_token_nll(model(corruption.inputs, prefix, docs), tokens)
    targets = modelled(tokens[:, 1:], special)
    n_targets = targets.sum(dim=1).clamp(min=1)
    masked, rates = corruption.masked, corruption.rates
    if n_first == B:
        sums = first.sequence_sums(nll, targets, masked, rates)
    elif n_first == 0:
        sums = second.sequence_sums(nll, targets, masked, rates)
    else:
        sums = torch.where(
            first_rows,
            first.sequence_sums(nll, targets, masked, rates),
            second.sequence_sums(nll, targets, masked, rates),
        )
    sequence_losses = sums / n_targets
    loss = (sequence_losses * corruption.weights).sum()
    return MixedLoss(loss=loss, sequence_losses=sequence_losses)
