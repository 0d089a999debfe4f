"""Held-out losses of a model for each objective of its pair, in nats per token, comparable.

AR gives the exact negative log-likelihood, MD its ELBO (an upper bound on it), so the two
compare directly. The held-out set is fixed, and so are a random objective's K draws (drawn
once from a seed for the whole set), so two evaluations differ only by the model: curves are
smooth, runs comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dualsweep.objectives import (
    Draw,
    Objective,
    document_ids,
    every_row,
    modelled,
    next_token_nll,
)
from dualsweep.schema import ObjectiveColumns
from dualsweep.special_tokens import SpecialTokens


@dataclass(frozen=True)
class HeldOutLosses:
    objectives: tuple[ObjectiveColumns, ...]
    """The columns of the objectives evaluated, in the pair's order."""
    values: dict[str, float]
    """Curve column -> value: each objective's held-out loss per target token (nats; e.g.
    `held_out_ar_loss`, `held_out_md_elbo`), and for a random objective the Monte-Carlo
    standard error of its mean over the K draws (`..._stderr`, NaN when K = 1)."""
    tokens: int
    """Target tokens evaluated."""

    def describe(self, draws: int) -> str:
        """E.g. 'held-out AR loss 5.0172, MD ELBO 5.2306 (+- 0.0012 over 4 draws) nats/token'."""
        parts = []
        for o in self.objectives:
            part = f"{o.title} {self.values[o.held_out]:.4f}"
            if o.held_out_stderr:
                part += f" (+- {self.values[o.held_out_stderr]:.4f} over {draws} draws)"
            parts.append(part)
        return f"held-out {', '.join(parts)} nats/token"


def held_out_draws(
    tokens: torch.Tensor,
    special: SpecialTokens,
    objective: Objective,
    *,
    draws: int,
    seed: int,
    min_mask_rate: float,
) -> list[Draw]:
    """The objective's corruptions of the whole held-out set: K draws for a random objective
    (MD), one (the clean tokens) otherwise.

    Drawn on the CPU from one generator seeded by `seed` plus the objective's
    `held_out_seed_offset` (MD's is 0; two random objectives never share draws, and MD's are
    the same whatever it is paired with), with rates stratified across
    the N sequences (each still U(0, 1), so the estimate stays unbiased, with less variance than
    i.i.d. rates): the same for every run and evaluation on this held-out set, whatever the
    batch size.
    """
    generator = torch.Generator().manual_seed((seed + objective.held_out_seed_offset) % 2**32)
    rows = every_row(len(tokens), tokens.device)
    return [
        objective.draw(tokens, rows, special, generator, stratified=True, min_rate=min_mask_rate)
        for _ in range(draws if objective.columns.estimated else 1)
    ]


@torch.no_grad()
def held_out_losses(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    special: SpecialTokens,
    pair: Sequence[Objective],
    *,
    draws: int,
    seed: int,
    batch_size: int,
    min_mask_rate: float = 1e-3,
    document_masking: bool = False,
) -> HeldOutLosses:
    """Evaluate `model` on held-out sequences `tokens` (N, T), in batches of `batch_size`, for
    each objective of `pair`."""
    device = next(model.parameters()).device
    tokens = tokens.cpu()
    corruptions = [
        held_out_draws(tokens, special, o, draws=draws, seed=seed, min_mask_rate=min_mask_rate)
        for o in pair
    ]
    was_training = model.training
    model.eval()
    totals = [torch.zeros(len(c), dtype=torch.float64, device=device) for c in corruptions]
    n_targets = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(tokens), batch_size):
        rows = slice(start, start + batch_size)
        batch = tokens[rows].to(device, non_blocking=True)
        targets = modelled(batch[:, 1:], special)
        for objective, objective_draws, total in zip(pair, corruptions, totals, strict=True):
            for k, draw in enumerate(objective_draws):
                inputs = draw.inputs[rows].to(device, non_blocking=True)
                docs = document_ids(inputs, special.eos) if document_masking else None
                nll = next_token_nll(model(inputs, objective.attention, docs), batch)
                masked = None if draw.masked is None else draw.masked[rows].to(device)
                sums = objective.sequence_sums(nll, targets, masked, draw.rates[rows].to(device))
                total[k] += sums.double().sum()
        n_targets += targets.sum(dim=1).double().sum()
    model.train(was_training)
    values: dict[str, float] = {}
    for objective, total in zip(pair, totals, strict=True):
        columns = objective.columns
        if not columns.estimated:
            values[columns.held_out] = (total[0] / n_targets).item()
            continue
        per_draw = (total / n_targets).tolist()
        mean = sum(per_draw) / len(per_draw)
        values[columns.held_out] = mean
        values[columns.held_out_stderr] = (
            math.sqrt(sum((x - mean) ** 2 for x in per_draw) / (draws - 1) / draws)
            if draws > 1
            else math.nan
        )
    return HeldOutLosses(
        objectives=tuple(o.columns for o in pair), values=values, tokens=int(n_targets.item())
    )
