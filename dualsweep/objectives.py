"""Training objectives as pure functions of tensors: AR, masked diffusion (MNTP form), the mix.

Both objectives use the same next-token layout: position i predicts token i + 1, so a
sequence of T tokens has T - 1 targets, and token 0 is context for both. Tokens that are not
modelled (pad, bos, mask) are never targets and never masked; every other token, the
document-separating eos included, is a target of both objectives, so the AR negative
log-likelihood and the MD ELBO bound the same quantity and are comparable in nats/token.

Masked diffusion, masked-next-token form (MNTP): draw t ~ U(0, 1) per sequence, replace each
maskable input token by the mask id with probability t, attend bidirectionally, and at
position i predict token i + 1 only where input i + 1 was masked. Weighting the summed
cross-entropy of those targets by 1 / t gives, in expectation over t and the masks, an upper
bound on the sequence's negative log-likelihood (the masked-diffusion ELBO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dualsweep.data.special import SpecialTokens
from dualsweep.model import BIDIRECTIONAL, CAUSAL


def next_token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (B, T-1) of predicting tokens[:, i+1] from logits[:, i], in float32.

    Computed over all T positions (the last has no target and is ignored) so that the
    logits are read in place: slicing off the last position first would copy all of them.
    """
    B, T, V = logits.shape
    targets = torch.cat([tokens[:, 1:], tokens.new_full((B, 1), -100)], dim=1)
    nll = F.cross_entropy(
        logits.reshape(-1, V).float(), targets.reshape(-1), reduction="none", ignore_index=-100
    )
    return nll.view(B, T)[:, :-1]


def modelled(tokens: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """True (B, T) where a token is modelled: not pad, bos or mask."""
    return ~torch.isin(tokens, torch.tensor(special.unmodelled, device=tokens.device))


def maskable_positions(tokens: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """True (B, T) where MD may mask: modelled tokens, never position 0 (no position predicts it)."""
    maskable = modelled(tokens, special)
    maskable[:, 0] = False
    return maskable


def sample_mask_rates(
    n: int,
    generator: torch.Generator,
    *,
    stratified: bool = False,
    min_rate: float = 1e-3,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """n mask rates t in [min_rate, 1): i.i.d. U(0, 1), or one per stratum [k/n, (k+1)/n) shuffled."""
    u = torch.rand(n, generator=generator, device=device)
    if stratified:
        order = torch.randperm(n, generator=generator, device=device)
        u = (order + u[:1]) / n  # one shared offset keeps each t uniform, strata disjoint
    return u.clamp(min=min_rate)


def mask_tokens(
    tokens: torch.Tensor,
    rates: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each maskable token of row b by `mask_id` with probability rates[b].

    Returns the corrupted inputs and the boolean (B, T) mask of replaced positions.
    """
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    masked = (u < rates[:, None]) & maskable
    return tokens.masked_fill(masked, mask_id), masked


def ar_nll_sums(nll: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sequence summed AR negative log-likelihood (B,) over valid targets (B, T-1)."""
    return (nll * targets).sum(dim=1)


def md_nll_sums(
    nll: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, rates: torch.Tensor
) -> torch.Tensor:
    """Per-sequence MD ELBO estimate (B,): summed NLL of masked targets, weighted by 1 / t."""
    masked_targets = masked[:, 1:] & targets
    return (nll * masked_targets).sum(dim=1) / rates


def document_ids(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Document index (B, T) of each position of packed sequences; an eos closes its document.

    Computed from the tokens the model sees: a masked eos does not split documents, so the
    attention pattern never reveals a masked token.
    """
    is_eos = (tokens == eos_id).long()
    return torch.cumsum(is_eos, dim=1) - is_eos


def ar_sequence_flags(alpha: float, first_index: int, count: int) -> np.ndarray:
    """Which of the sequences first_index .. first_index+count-1 of the training stream are AR.

    Sequence n is AR when round(alpha * (n + 1)) > round(alpha * n): after any number N of
    sequences exactly round(alpha * N) were AR, so the realised AR share tracks alpha to
    within half a sequence at every point of training, for any alpha in [0, 1]. The flags
    depend only on the global index, so they are the same for any batch size or resume point.
    """
    n = np.arange(first_index, first_index + count + 1, dtype=np.float64)
    ar_so_far = np.floor(alpha * n + 0.5)
    return np.diff(ar_so_far) > 0


MIX_ALLOCATIONS = ("sequence", "step")


def ar_rows_per_step(alpha: float, batch_size: int) -> int:
    """AR rows of every batch under the per-step allocation: round(alpha * B), but at least
    one row of each objective whenever 0 < alpha < 1 (so every step's gradient has both)."""
    if alpha <= 0.0:
        return 0
    if alpha >= 1.0:
        return batch_size
    if batch_size < 2:
        raise ValueError(f"a per-step mix needs at least 2 sequences per batch (got {batch_size})")
    return min(max(round(alpha * batch_size), 1), batch_size - 1)


def objective_allocation(
    alpha: float, step: int, batch_size: int, rule: str
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of step `step`'s batch are AR (B,), and each row's weight in the batch loss (B,).

    - `sequence`: whole sequences are AR or MD by `ar_sequence_flags` (the cumulative AR share
      tracks alpha), every row weighs 1/B. Unbiased over training, but a step may hold one
      objective only (alpha = 1/256, B = 16: one AR sequence every 16 steps).
    - `step`: every batch holds n_AR = `ar_rows_per_step` AR rows (the first ones; the data
      order is already shuffled) and B - n_AR MD rows, weighted so that the batch loss is
      alpha * mean(AR rows) + (1 - alpha) * mean(MD rows): each step's gradient is then an
      unbiased estimate of the paper's loss, the small-batch form of its per-device split.

    The weights sum to 1 over the batch; at alpha 0 or 1 both rules give one objective, 1/B each.
    """
    if rule == "sequence":
        is_ar = ar_sequence_flags(alpha, step * batch_size, batch_size)
        return is_ar, np.full(batch_size, 1.0 / batch_size)
    if rule != "step":
        raise ValueError(f"unknown mix allocation {rule!r} (one of {', '.join(MIX_ALLOCATIONS)})")
    n_ar = ar_rows_per_step(alpha, batch_size)
    is_ar = np.arange(batch_size) < n_ar
    if n_ar in (0, batch_size):
        return is_ar, np.full(batch_size, 1.0 / batch_size)
    weights = np.where(is_ar, alpha / n_ar, (1.0 - alpha) / (batch_size - n_ar))
    return is_ar, weights


@dataclass(frozen=True)
class Corruption:
    """What the model sees for a batch: clean tokens for AR rows, masked tokens for MD rows."""

    inputs: torch.Tensor
    """Model inputs (B, T)."""
    masked: torch.Tensor | None
    """Masked positions (B, T), or None when no row is MD."""
    rates: torch.Tensor
    """Mask rate t per row (B,); 1 on AR rows, where it is unused."""
    is_ar: np.ndarray
    """Host-side objective flags (B,), so that batch composition is known without a device sync."""
    weights: torch.Tensor
    """Each row's weight in the whole batch's loss (B,), summing to 1 over the batch."""

    def rows(self, start: int, stop: int) -> Corruption:
        """The corruption of rows start..stop-1 (a micro-batch)."""
        return Corruption(
            inputs=self.inputs[start:stop],
            masked=None if self.masked is None else self.masked[start:stop],
            rates=self.rates[start:stop],
            is_ar=self.is_ar[start:stop],
            weights=self.weights[start:stop],
        )


def corrupt_batch(
    tokens: torch.Tensor,
    is_ar: np.ndarray,
    special: SpecialTokens,
    generator: torch.Generator,
    *,
    weights: np.ndarray | None = None,
    stratified: bool = False,
    min_mask_rate: float = 1e-3,
) -> Corruption:
    """Draw the MD corruption of a whole batch: rates and masks for the MD rows only.

    Drawn for the whole batch at once, so that splitting it into micro-batches afterwards
    changes nothing. With no MD row (alpha = 1) nothing is drawn at all. `weights` are the
    rows' weights in the batch loss (from `objective_allocation`; default 1/B each).
    """
    B = len(tokens)
    weights = np.full(B, 1.0 / B) if weights is None else weights
    row_weights = torch.from_numpy(np.asarray(weights, dtype=np.float32)).to(tokens.device)
    rates = torch.ones(B, device=tokens.device)
    n_md = int((~is_ar).sum())
    if n_md == 0:
        return Corruption(inputs=tokens, masked=None, rates=rates, is_ar=is_ar, weights=row_weights)
    md_rows = torch.from_numpy(np.flatnonzero(~is_ar)).to(tokens.device)
    md_rates = sample_mask_rates(
        n_md, generator, stratified=stratified, min_rate=min_mask_rate, device=tokens.device
    )
    rates = rates.index_copy(0, md_rows, md_rates)
    ar_rows = torch.from_numpy(is_ar).to(tokens.device, non_blocking=True)
    maskable = maskable_positions(tokens, special) & ~ar_rows[:, None]
    inputs, masked = mask_tokens(tokens, rates, maskable, special.mask, generator)
    return Corruption(inputs=inputs, masked=masked, rates=rates, is_ar=is_ar, weights=row_weights)


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
    *,
    document_masking: bool = False,
) -> MixedLoss:
    """alpha * L_AR + (1 - alpha) * L_MD in one forward pass, one objective per sequence.

    `corruption.is_ar` (from `ar_sequence_flags`) picks each sequence's objective; AR
    sequences attend causally on their clean tokens, MD sequences bidirectionally on their
    masked tokens (`corrupt_batch`), through per-sample attention masks in a single forward.

    How the weights realise the mix: every sequence has its own per-token loss (AR NLL /
    n_targets, or MD masked NLL / (t * n_targets)) and a weight from `objective_allocation`.
    Under the `sequence` rule every row weighs 1/B, so the expected batch loss is
    share_AR * E[L_AR] + (1 - share_AR) * E[L_MD], and the cumulative AR share of sequences
    stays within half a sequence of alpha: over training the gradient weights are alpha and
    1 - alpha. Under the `step` rule AR rows weigh alpha / n_AR and MD rows (1 - alpha) / n_MD,
    so each batch's loss is alpha * mean(AR rows) + (1 - alpha) * mean(MD rows). With
    alpha = 1 (all flags True) this is the AR loss and no mask is drawn; with alpha = 0 the
    MD loss.
    """
    B, T = tokens.shape
    n_ar = int(corruption.is_ar.sum())
    ar_rows = torch.from_numpy(corruption.is_ar).to(tokens.device, non_blocking=True)
    if n_ar == B:
        prefix: torch.Tensor | int = CAUSAL
    elif n_ar == 0:
        prefix = BIDIRECTIONAL
    else:
        prefix = torch.where(ar_rows, CAUSAL, T)
    docs = document_ids(corruption.inputs, special.eos) if document_masking else None
    logits = model(corruption.inputs, prefix, docs)
    nll = next_token_nll(logits, tokens)
    targets = modelled(tokens[:, 1:], special)
    n_targets = targets.sum(dim=1).clamp(min=1)
    if n_ar == B:
        sums = ar_nll_sums(nll, targets)
    elif n_ar == 0:
        sums = md_nll_sums(nll, targets, corruption.masked, corruption.rates)
    else:
        md = md_nll_sums(nll, targets, corruption.masked, corruption.rates)
        sums = torch.where(ar_rows, ar_nll_sums(nll, targets), md)
    sequence_losses = sums / n_targets
    loss = (sequence_losses * corruption.weights).sum()
    return MixedLoss(loss=loss, sequence_losses=sequence_losses)


@torch.no_grad()
def held_out_sums(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    special: SpecialTokens,
    rates: torch.Tensor,
    masked: torch.Tensor,
    *,
    document_masking: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed AR NLL (B,), summed MD ELBO per draw (K, B) and target counts (B,) of a batch.

    Draw k masks `masked[k]` (B, T) at rates `rates[k]` (B,), drawn by the caller once for the
    whole held-out set (see `evaluate.heldout`), so that the estimate does not depend on how
    the set is batched.
    """
    targets = modelled(tokens[:, 1:], special)
    docs = document_ids(tokens, special.eos) if document_masking else None
    ar = ar_nll_sums(next_token_nll(model(tokens, CAUSAL, docs), tokens), targets)
    md = []
    for draw_rates, draw_masked in zip(rates, masked, strict=True):
        inputs = tokens.masked_fill(draw_masked, special.mask)
        docs = document_ids(inputs, special.eos) if document_masking else None
        nll = next_token_nll(model(inputs, BIDIRECTIONAL, docs), tokens)
        md.append(md_nll_sums(nll, targets, draw_masked, draw_rates))
    return ar, torch.stack(md), targets.sum(dim=1)
