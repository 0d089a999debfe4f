"""The special tokens of a vocabulary: bottom layer, no torch (corpus preparation, the
objectives' masking and the evaluation all need them, and none may import another's layer)."""

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
