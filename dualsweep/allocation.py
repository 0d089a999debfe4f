"""How many rows of a batch train the first objective of the pair (no torch, no numpy).

Training (`objectives.mix`) allocates rows with it, and the plan's FLOP count (`sweep.plan`)
reads it to count causal and bidirectional attention as they run.
"""

from __future__ import annotations


def first_rows_per_step(alpha: float, batch_size: int) -> int:
    """Rows of the first objective in every batch under the per-step allocation:
    round(alpha * B), but at least one row of each objective whenever 0 < alpha < 1 (so every
    step's gradient has both)."""
    if alpha <= 0.0:
        return 0
    if alpha >= 1.0:
        return batch_size
    if batch_size < 2:
        raise ValueError(f"a per-step mix needs at least 2 sequences per batch (got {batch_size})")
    return min(max(round(alpha * batch_size), 1), batch_size - 1)


def first_row_share(alpha: float, batch_size: int, rule: str) -> float:
    """The share of training rows of the first objective: `alpha` over training under the
    `sequence` rule, `first_rows_per_step / batch_size` in every batch under `step`."""
    return alpha if rule == "sequence" else first_rows_per_step(alpha, batch_size) / batch_size
