"""Held-out losses of a model: AR NLL and the MD ELBO, in nats per token, comparable.

The held-out set is fixed, and so are its K masking draws (one seeded generator per draw and
batch), so two evaluations differ only by the model: curves are smooth and runs comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dualsweep.objectives import SpecialTokens, held_out_sums


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


def _draw_seed(seed: int, draw: int, batch: int) -> int:
    return (seed * 1_000_003 + draw) * 1_000_033 + batch


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
    was_training = model.training
    model.eval()
    ar_total = torch.zeros((), dtype=torch.float64, device=device)
    md_totals = torch.zeros(draws, dtype=torch.float64, device=device)
    n_targets = torch.zeros((), dtype=torch.float64, device=device)
    for batch_index, start in enumerate(range(0, len(tokens), batch_size)):
        batch = tokens[start : start + batch_size].to(device, non_blocking=True)
        generators = [
            torch.Generator(device=device).manual_seed(_draw_seed(seed, k, batch_index))
            for k in range(draws)
        ]
        ar, md, counts = held_out_sums(
            model,
            batch,
            special,
            generators,
            min_mask_rate=min_mask_rate,
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
