"""The special tokens of a vocabulary (no torch: corpus preparation needs them, not the model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens; pad, bos and mask are never modelled."""

    pad: int
    bos: int
    eos: int
    mask: int

    @property
    def unmodelled(self) -> tuple[int, int, int]:
        return (self.pad, self.bos, self.mask)
