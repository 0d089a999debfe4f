"""Training objectives: the registry of objectives (AR, MD), their pure loss functions, the mix.

- `registry`: the `Objective` interface, `register`, `get_objective`; AR and MD.
- `losses`: pure tensor functions (next-token NLL, targets, masking draws).
- `mix`: alpha * L_first + (1 - alpha) * L_second over a pair, row allocation, corruption.
"""

from collections.abc import Sequence

from dualsweep.objectives.losses import (
    ar_nll_sums,
    chunked_next_token_nll,
    document_ids,
    mask_tokens,
    maskable_positions,
    md_nll_sums,
    modelled,
    next_token_nll,
    sample_mask_rates,
)
from dualsweep.objectives.mix import (
    MIX_ALLOCATIONS,
    Corruption,
    MixedLoss,
    corrupt_batch,
    dual_objective_loss,
    first_rows_per_step,
    first_sequence_flags,
    objective_allocation,
    objective_order,
    objective_order_on_device,
    rows_to_device,
)
from dualsweep.objectives.registry import (
    AR,
    MD,
    Draw,
    Objective,
    Rows,
    ScoreRow,
    every_row,
    get_objective,
    register,
    registered,
)


def objective_pair(names: Sequence[str]) -> tuple[Objective, Objective]:
    """The registered objectives a run mixes (`objective.objectives`), alpha weighing the first."""
    first, second = (get_objective(name) for name in names)
    return first, second


__all__ = [
    "AR",
    "MD",
    "MIX_ALLOCATIONS",
    "Corruption",
    "Draw",
    "MixedLoss",
    "Objective",
    "Rows",
    "ScoreRow",
    "ar_nll_sums",
    "chunked_next_token_nll",
    "corrupt_batch",
    "document_ids",
    "dual_objective_loss",
    "every_row",
    "first_rows_per_step",
    "first_sequence_flags",
    "get_objective",
    "mask_tokens",
    "maskable_positions",
    "md_nll_sums",
    "modelled",
    "next_token_nll",
    "objective_allocation",
    "objective_order",
    "objective_order_on_device",
    "objective_pair",
    "register",
    "registered",
    "rows_to_device",
    "sample_mask_rates",
]
