"""One optimizer step of the dual objective: the single definition every training loop runs.

The LightningModule calls it, and so does the benchmarks' bare PyTorch loop, so that a
framework benchmark compares the same work. Everything random in a step (which rows train
which objective of the pair, the mask rates and masks) is drawn for the whole batch from a
generator seeded by (seed, step), and the learning rate is a function of the step: a step
computes the same thing on every re-run, after a resume, and whatever the micro-batch size
or the number of data-parallel workers (training/distributed.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dualsweep.config import RunConfig
from dualsweep.objectives import (
    Corruption,
    Objective,
    corrupt_batch,
    dual_objective_loss,
    objective_allocation,
    objective_order,
    objective_order_on_device,
)
from dualsweep.schedules import wsd_multiplier
from dualsweep.special_tokens import SpecialTokens
from dualsweep.training.distributed import SINGLE_WORKER, OverlappedGradientSum, Workers
from dualsweep.training.optim import set_lr_multiplier


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`'s draws: distinct for every (run seed, step) pair in use."""
    return seed * 1_000_003 + step


@dataclass(frozen=True)
class StepStats:
    """What one step measured; tensors stay on the device (read back only at log steps)."""

    loss: torch.Tensor
    """This worker's share of the batch's mixed loss (0-d, detached): the whole batch's with
    one worker, and the workers' shares add up to it."""
    loss_sums: tuple[torch.Tensor, torch.Tensor]
    """Sum of the per-sequence losses of this worker's rows of each objective of the pair
    (0-d, detached): AR NLLs, MD's 1/t-weighted ELBO estimates."""
    rows: tuple[int, int]
    """This worker's rows of each objective of the pair."""
    lr_multiplier: float
    """The schedule's multiplier of every peak learning rate at this step."""


def lr_multiplier_at(config: RunConfig, step: int, total_steps: int) -> float:
    optim = config.optim
    return wsd_multiplier(
        step,
        total_steps,
        warmup_fraction=optim.warmup_fraction,
        decay_fraction=optim.decay_fraction,
        final_fraction=optim.final_lr_fraction,
        shape=optim.decay_shape,
    )


def train_step(
    model: torch.nn.Module,
    optimizers: Sequence,
    tokens: torch.Tensor,
    *,
    step: int,
    total_steps: int,
    config: RunConfig,
    pair: Sequence[Objective],
    special: SpecialTokens,
    generator: torch.Generator,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    workers: Workers = SINGLE_WORKER,
) -> StepStats:
    """Set the step's learning rate, draw its objectives and masks, accumulate the gradient
    over micro-batches, clip it, and step every optimizer.

    `optimizers` step with `.step()` and `.zero_grad()`; Lightning's wrappers qualify (their
    param groups are the wrapped optimizer's). `pair` holds the registered objectives of
    `config.objective.objectives` (alpha weighs the first). `generator` lives on the tokens' device and is
    re-seeded here. `backward` is Lightning's `manual_backward` inside the module (it applies
    the precision plugin), plain `loss.backward()` elsewhere. Autocast, where wanted, is the
    caller's context around this call.

    With several data-parallel `workers`, each gets the same whole batch `tokens` and
    computes its share of the rows (the batch in `objective_order`, dealt out row by row:
    `Workers.share`); the gradients are summed over the workers before clipping, so every worker
    steps to the same weights. The returned sums and row counts are this worker's.
    """
    objective, train = config.objective, config.train
    multiplier = lr_multiplier_at(config, step, total_steps)
    set_lr_multiplier([getattr(o, "optimizer", o) for o in optimizers], multiplier)
    generator.manual_seed(step_seed(train.seed, step))
    B = len(tokens)
    is_first, weights = objective_allocation(objective.alpha, step, B, objective.mix_allocation)
    # The whole batch's draws, on every worker: the same numbers whatever the worker count.
    corruption = corrupt_batch(
        tokens,
        is_first,
        special,
        generator,
        pair,
        weights=weights,
        stratified=objective.mask_rate_sampling == "stratified",
        min_mask_rate=objective.min_mask_rate,
        common_masks=objective.common_masks,
    )
    tokens, corruption = _own_rows(tokens, corruption, workers.share(B))
    # Gradient accumulation: each part's loss carries its rows' whole-batch weights, so the
    # parts (of every worker) add up to the whole batch's gradient.
    rows = len(tokens)
    micro = min(train.micro_batch_size or rows, rows)
    parts, batch_loss = [], 0.0
    with contextlib.ExitStack() as stack:
        summing = None
        if workers.size > 1:  # the sum over workers overlaps the last backward pass
            summing = stack.enter_context(OverlappedGradientSum(model.parameters(), workers))
        for start in range(0, rows, micro):
            if summing is not None and start + micro >= rows:
                summing.arm()
            part = dual_objective_loss(
                model,
                tokens[start : start + micro],
                corruption.rows(start, start + micro),
                special,
                pair,
                document_masking=config.data.document_masking,
                loss_chunk_tokens=train.loss_chunk_tokens,
                compiled_head=train.compile,  # the blocks are compiled by the caller
            )
            backward(part.loss)
            parts.append(part.sequence_losses.detach())
            batch_loss = batch_loss + part.loss.detach()
        if summing is not None:
            summing.finish()
    if config.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    losses = torch.cat(parts)
    first_rows = corruption.first.device
    n_first = int(corruption.is_first.sum())
    return StepStats(
        loss=batch_loss,
        loss_sums=((losses * first_rows).sum(), (losses * ~first_rows).sum()),
        rows=(n_first, rows - n_first),
        lr_multiplier=multiplier,
    )


def _own_rows(
    tokens: torch.Tensor, corruption: Corruption, share: slice
) -> tuple[torch.Tensor, Corruption]:
    """The tokens and corruption of this worker's `share` of the batch in `objective_order`
    (views when those rows are contiguous in batch order; the order is computed on the host
    and on the device alike, so nothing is copied between them)."""
    rows = objective_order(corruption.is_first)[share]
    first = int(rows[0])
    if np.array_equal(rows, np.arange(first, first + len(rows))):
        return tokens[first : first + len(rows)], corruption.rows(first, first + len(rows))
    index = objective_order_on_device(corruption.first.device)[share]
    return tokens[index], corruption.take(rows, index)
