"""A census of what in a training step would make the host wait for a GPU, countable on a CPU.

On a GPU the host queues kernels and runs ahead; three kinds of call in the step's own code
make it wait for everything queued before them:

- `constructions`: a tensor built from host data on the device (`torch.tensor(ids,
  device=...)`, `torch.as_tensor(x, device=...)`): a blocking copy from pageable memory;
- `copies`: `.to(device)`, `.cuda()` or `.copy_` onto the device, blocking unless asked
  `non_blocking=True` (and, on a GPU, from pinned memory: from pageable memory even a
  non-blocking copy waits);
- `host_reads`: a value read back on the host (`.item()`, `.tolist()`, `bool(t)`, `int(t)`,
  `.cpu()`, `.numpy()`, `nonzero`, boolean-mask indexing).

A `TorchFunctionMode` sees every torch call; the census counts those made directly from
dualsweep's own files (the library's own internals, an optimizer's bookkeeping on its CPU
step counters say, are torch's business and show up, where real, in the GPU check's
`torch.cuda.set_sync_debug_mode` count). On a CPU every tensor is on the "device", so the
same code path is counted that a GPU would run: a copy that names the device is counted as
a copy whether or not it moves anything here.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import dualsweep

OUR_CODE = str(Path(dualsweep.__file__).resolve().parent)
CONSTRUCTORS = {torch.tensor, torch.as_tensor, torch.asarray}
HOST_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.masked_select,
    torch.Tensor.masked_select,
}


@dataclass
class Census:
    """What the step's own code did that would wait for a GPU, with where it did it."""

    constructions: int = 0
    blocking_copies: int = 0
    async_copies: int = 0
    host_reads: int = 0
    places: Counter = field(default_factory=Counter)
    """`kind file:line` -> count, for the report."""

    @property
    def blocking(self) -> int:
        """Calls that make the host wait: constructions, blocking copies and host reads."""
        return self.constructions + self.blocking_copies + self.host_reads

    def as_dict(self) -> dict:
        return {
            "constructions": self.constructions,
            "blocking_copies": self.blocking_copies,
            "async_copies": self.async_copies,
            "host_reads": self.host_reads,
            "places": dict(self.places),
        }


class SyncCensus(TorchFunctionMode):
    """Count, while active, the calls of dualsweep's own code described in the module's
    docstring; `census` holds the counts."""

    def __init__(self):
        super().__init__()
        self.census = Census()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        place = _our_caller()
        if place is not None:
            kind = _kind(func, args, kwargs)
            if kind is not None:
                setattr(self.census, kind, getattr(self.census, kind) + 1)
                self.census.places[f"{kind} {place}"] += 1
        return func(*args, **kwargs)


def _our_caller() -> str | None:
    """`file:line` of the call into torch when dualsweep's own code made it, else None."""
    frame = sys._getframe(2)  # past __torch_function__ and _our_caller
    while frame is not None and frame.f_code.co_filename in (__file__, torch.overrides.__file__):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(OUR_CODE):
        return None
    return f"{Path(frame.f_code.co_filename).relative_to(Path(OUR_CODE).parent)}:{frame.f_lineno}"


def _kind(func, args, kwargs) -> str | None:
    if func in CONSTRUCTORS:
        data = args[0] if args else kwargs.get("data")
        explicit = kwargs.get("device") is not None
        return "constructions" if explicit and not isinstance(data, torch.Tensor) else None
    if func in HOST_READS:
        return "host_reads"
    if func is torch.Tensor.__getitem__ and _bool_index(args[1] if len(args) > 1 else None):
        return "host_reads"  # a boolean mask index counts its True entries on the host
    if func is torch.Tensor.to:
        device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
        if device is None or device.type == "cpu" and args[0].device.type != "cpu":
            return "host_reads" if device is not None else None  # .to("cpu") of a GPU tensor
        return _copy(args[0], non_blocking)
    if func is torch.Tensor.cuda:
        return _copy(args[0], kwargs.get("non_blocking", len(args) > 2 and args[2]))
    if func is torch.Tensor.copy_:
        source, target = args[0], args[1] if len(args) > 1 else kwargs["src"]
        if source.device != target.device:
            return _copy(target, kwargs.get("non_blocking", len(args) > 2 and args[2]))
    return None


def _copy(source: torch.Tensor, non_blocking: bool) -> str:
    # From pageable memory even a non-blocking copy waits; a CPU build cannot pin, so on a
    # CPU the census takes the request at its word.
    pinned = source.device.type != "cpu" or not torch.cuda.is_available() or source.is_pinned()
    return "async_copies" if non_blocking and pinned else "blocking_copies"


def _bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)
