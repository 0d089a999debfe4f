"""Held-out losses of a model: AR NLL and the MD ELBO, in nats per token, comparable.

The held-out set is fixed, and so are its K masking draws (drawn once from a seed for the
whole set), so two evaluations differ only by the model: curves are smooth, runs comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dualsweep.objectives import (
    SpecialTokens,
    held_out_sums,
    mask_tokens,
    maskable_positions,
    sample_mask_rates,
)


@dataclass(frozen=True)
class HeldOutLosses:
    ar_loss: float
    """AR negative log-likelihood per target token (nats)."""
    md_elbo: float
    """Masked-diffusion ELBO per target token (nats), averaged over the K draws."""
    md_elbo_stderr: float
    """Monte-Carlo standard error of `md_elbo` across the K draws (NaN when K = 1)."""
    tokens: int
    """Target tokens evaluated."""


def held_out_corruptions(
    tokens: torch.Tensor, special: SpecialTokens, *, draws: int, seed: int, min_mask_rate: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """K masking draws of the whole held-out set: rates (K, N) and masks (K, N, T).

    Drawn on the CPU from one seeded generator, with rates stratified across the N sequences
    (each still U(0, 1), so the estimate stays unbiased, with less variance than i.i.d. rates):
    the same for every run and evaluation on this held-out set, whatever the batch size.
    """
    generator = torch.Generator().manual_seed(seed)
    maskable = maskable_positions(tokens, special)
    rates, masks = [], []
    for _ in range(draws):
        draw_rates = sample_mask_rates(
            len(tokens), generator, stratified=True, min_rate=min_mask_rate
        )
        _, masked = mask_tokens(tokens, draw_rates, maskable, special.mask, generator)
        rates.append(draw_rates)
        masks.append(masked)
    return torch.stack(rates), torch.stack(masks)


@torch.no_grad()
def held_out_losses(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    special: SpecialTokens,
    *,
    draws: int,
    seed: int,
    batch_size: int,
    min_mask_rate: float = 1e-3,
    document_masking: bool = False,
) -> HeldOutLosses:
    """Evaluate `model` on held-out sequences `tokens` (N, T), in batches of `batch_size`."""
    device = next(model.parameters()).device
    tokens = tokens.cpu()
    rates, masked = held_out_corruptions(
        tokens, special, draws=draws, seed=seed, min_mask_rate=min_mask_rate
    )
    was_training = model.training
    model.eval()
    ar_total = torch.zeros((), dtype=torch.float64, device=device)
    md_totals = torch.zeros(draws, dtype=torch.float64, device=device)
    n_targets = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(tokens), batch_size):
        rows = slice(start, start + batch_size)
        ar, md, counts = held_out_sums(
            model,
            tokens[rows].to(device, non_blocking=True),
            special,
            rates[:, rows].to(device),
            masked[:, rows].to(device),
            document_masking=document_masking,
        )
        ar_total += ar.double().sum()
        md_totals += md.double().sum(dim=1)
        n_targets += counts.double().sum()
    model.train(was_training)
    per_draw = (md_totals / n_targets).tolist()
    mean = sum(per_draw) / draws
    stderr = (
        math.sqrt(sum((x - mean) ** 2 for x in per_draw) / (draws - 1) / draws)
        if draws > 1
        else math.nan
    )
    return HeldOutLosses(
        ar_loss=(ar_total / n_targets).item(),
        md_elbo=mean,
        md_elbo_stderr=stderr,
        tokens=int(n_targets.item()),
    )
