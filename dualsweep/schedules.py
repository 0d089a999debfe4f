"""Learning-rate schedules as pure functions of the step."""

from __future__ import annotations

import math


def wsd_multiplier(
    step: int,
    total_steps: int,
    *,
    warmup_fraction: float,
    decay_fraction: float,
    final_fraction: float = 0.0,
    shape: str = "linear",
) -> float:
    """Warmup-stable-decay: the peak-lr multiplier used for the update of `step` (0-based).

    Linear warmup over the first round(warmup_fraction * total) steps reaching 1 at the end of
    warmup, 1 through the stable phase, then a decay over the last round(decay_fraction * total)
    steps from 1 towards `final_fraction` (linear, or 1 - sqrt of the decay progress).
    """
    warmup = round(warmup_fraction * total_steps)
    decay = round(decay_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    decay_start = total_steps - decay
    if decay == 0 or step < decay_start:
        return 1.0
    progress = (step - decay_start) / decay  # 0 at the first decay step
    if shape == "sqrt":
        remaining = 1.0 - math.sqrt(progress)
    elif shape == "linear":
        remaining = 1.0 - progress
    else:
        raise ValueError(f"unknown decay shape {shape!r}")
    return final_fraction + (1.0 - final_fraction) * remaining
