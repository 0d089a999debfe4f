"""Truth surfaces for `dualsweep simulate`: known metrics whose best alpha is set by hand.

Each is loss(alpha, R) = base(R) + CURVATURE * (logit(alpha) - logit(best(R)))^2, logit
being the GP's log-odds (`dualsweep.schema.alpha_log_odds`, alphas clipped to [1/1024,
1023/1024]), so the penalty of an alpha grows with its distance from the best in log-odds,
the scale of the paper's grid. Their scale is the tiny study's: CURVATURE 0.014 nats puts
pure MD (log-odds -6.9) 1.7 nats above the best at R = 1 when the best is 63/64 (log-odds
4.1), as the tiny sweep measured (5.86 against 4.19); base(R) rises 0.05 nats per doubling
of R. Noise is added by the simulator.
"""

from __future__ import annotations

import math

from dualsweep.schema import alpha_log_odds

CURVATURE = 0.014  # nats per squared log-odds unit


def _bowl(alpha: float, r: float, best: float) -> float:
    return (
        4.0 + 0.05 * math.log2(r) + CURVATURE * (alpha_log_odds(alpha) - alpha_log_odds(best)) ** 2
    )


def paper_best_alpha(r: float) -> float:
    """The paper's shape: 63/64 at R = 1, falling as about 16 / R when heavily repeated
    (16 / (R + 15.25): 0.69 at R = 8, 0.34 at R = 32, 0.059 at R = 256)."""
    return 16.0 / (r + 15.25)


def paper_shaped(alpha: float, r: float) -> float:
    """Best alpha 63/64 at R = 1 falling towards 16 / R."""
    return _bowl(alpha, r, paper_best_alpha(r))


def flat(alpha: float, r: float) -> float:
    """Best alpha 15/16 at every R: repetition moves the loss, not where its minimum is."""
    return _bowl(alpha, r, 15 / 16)
