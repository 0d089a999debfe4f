"""Evaluation of trained models: held-out losses (and, later, zero-shot multiple choice)."""

from dualsweep.evaluate.heldout import HeldOutLosses, held_out_losses

__all__ = ["HeldOutLosses", "held_out_losses"]
