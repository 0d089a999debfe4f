"""Data parallelism: where this process sits among a run's workers, and the few collectives
a training step needs.

A run with N workers (a Ray Train `TorchTrainer` group, see sweep/trainable.py) is N copies
of the single-process loop: every worker reads the whole step's batch, draws the whole
batch's objectives and masks from the same seed, computes the loss of its own share of the
rows (`Workers.share`: balanced between the objectives), and the gradients are summed across
workers before the optimizers step.
Every worker then holds the same weights, and the numbers are those of one process running
the whole batch, whatever N (to float tolerance: only the order of the sums changes).

Why not `DistributedDataParallel`: a step here runs several micro-batch backward passes
inside one Lightning `training_step`, and DDP's reducer expects one backward per wrapped
forward (the others need `no_sync`, and a missed one is silently unsynchronised). The step
sums the accumulated gradients itself, in buckets, overlapped with the last backward pass
(`OverlappedGradientSum`), with nothing to forget.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dualsweep.config import ConfigError

BUCKET_ELEMENTS = 2**24
"""Gradient elements per all-reduce (64 MB in float32): bounds the extra flat buffer."""


@dataclass(frozen=True)
class Workers:
    """This process's rank among `size` data-parallel workers (rank 0 writes the run's files)."""

    rank: int = 0
    size: int = 1
    device_index: int = 0
    """Which of the accelerators this process sees it trains on: its local rank (its place
    among the workers of its machine), unless its launcher says otherwise."""

    @classmethod
    def current(cls, device_index: int | None = None) -> Workers:
        """The initialised default process group's place, or a single worker.

        The device index defaults to `LOCAL_RANK`, which torchrun and Ray Train set for every
        worker: the workers of one machine see all of its accelerators and must not all take
        the first. Ray Train knows better still which one is a worker's own (sweep/trainable.py
        passes it)."""
        if dist.is_available() and dist.is_initialized():
            if device_index is None:
                device_index = int(os.environ.get("LOCAL_RANK", "0"))
            return cls(dist.get_rank(), dist.get_world_size(), device_index)
        return cls(device_index=device_index or 0)

    @property
    def writes(self) -> bool:
        """Rank 0 keeps the curve, evaluates held-out losses and writes checkpoints and results."""
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This worker's share of a batch's rows in objective order (step.py): every size-th
        row from its rank on. Dealt out this way, each worker gets its share of the first
        objective's rows and of the second's (within one row), so every worker does about
        the same attention work: contiguous shares would give some workers only causal AR
        rows and others only bidirectional MD rows, twice the attention work, and the AR
        workers would wait at the gradient sum. A share is still in objective order, so at
        most one of its micro-batches holds both objectives."""
        if batch_size % self.size:
            raise ValueError(
                f"a batch of {batch_size} sequences does not split evenly over {self.size} workers"
            )
        return slice(self.rank, None, self.size)


SINGLE_WORKER = Workers()


def training_device(accelerator: str, workers: Workers, device_count: int) -> torch.device:
    """The device this worker trains on: the CPU, or the visible GPU of its `device_index`.

    `device_count` is `torch.cuda.device_count()` (a parameter, so that the choice can be
    checked on a machine without GPUs). Lightning's `devices=1` would put every worker of a
    machine on GPU 0; this is the device to give it instead (`trainer_devices`)."""
    if accelerator == "cpu":
        return torch.device("cpu")
    if not 0 <= workers.device_index < device_count:
        raise ConfigError(
            f"train.device: worker {workers.rank} of {workers.size} should train on GPU "
            f"{workers.device_index}, but this process sees {device_count} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return torch.device("cuda", workers.device_index)


def trainer_devices(device: torch.device) -> int | list[int]:
    """Lightning's `devices` for a single-device Trainer on `device`: the GPU by its index."""
    return [device.index if device.index is not None else 0] if device.type == "cuda" else 1


def sum_gradients(parameters: Iterable[torch.nn.Parameter], workers: Workers) -> None:
    """Replace every gradient by its sum over the workers (bucketed, one dtype per bucket)."""
    if workers.size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    bucket: list[torch.Tensor] = []
    filled = 0
    for grad in grads:
        if bucket and (grad.dtype != bucket[0].dtype or filled + grad.numel() > BUCKET_ELEMENTS):
            _sum_bucket(bucket)
            bucket, filled = [], 0
        bucket.append(grad)
        filled += grad.numel()
    if bucket:
        _sum_bucket(bucket)


class OverlappedGradientSum:
    """The gradient sum over the workers, started while the step's last backward pass runs.

    Fixed buckets of parameters, in reverse order (roughly the order the backward pass
    finishes their gradients: the last layers first, as DDP buckets them); a bucket's
    all-reduce starts, asynchronously, once every gradient in it is final, and only after the
    buckets before it started, so every worker issues the same all-reduces in the same order.
    `arm()` before the last micro-batch's backward; `finish()` after it waits for the sums
    and writes them back. The sums equal `sum_gradients`' (the same element-wise all-reduce);
    what changes is that communication overlaps the backward pass instead of following it.
    Use as a context manager: the hooks are removed on exit.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], workers: Workers):
        params = [p for p in parameters if p.requires_grad]
        self.buckets: list[list[torch.nn.Parameter]] = []
        for p in reversed(params):
            last = self.buckets[-1] if self.buckets else None
            if (
                last is None
                or p.dtype != last[0].dtype
                or sum(q.numel() for q in last) + p.numel() > BUCKET_ELEMENTS
            ):
                self.buckets.append([])
            self.buckets[-1].append(p)
        self._bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        self._hooks = [p.register_post_accumulate_grad_hook(self._ready) for p in params]
        self._armed = False
        self._ready_count = [0] * len(self.buckets)
        self._next = 0
        self._pending: list[tuple[object, torch.Tensor, list[torch.Tensor]]] = []

    def __enter__(self) -> OverlappedGradientSum:
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()

    def arm(self) -> None:
        """The next backward pass is the step's last: sum each bucket as it completes."""
        self._armed = True

    def _ready(self, param: torch.nn.Parameter) -> None:
        if not self._armed:
            return
        self._ready_count[self._bucket_of[id(param)]] += 1
        while self._next < len(self.buckets) and self._ready_count[self._next] == len(
            self.buckets[self._next]
        ):
            self._launch()

    def _launch(self) -> None:
        grads = [p.grad for p in self.buckets[self._next] if p.grad is not None]
        self._next += 1
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)
            self._pending.append((work, flat, grads))

    def finish(self) -> None:
        """Start what the last pass left (parameters it did not reach), wait, write back."""
        while self._next < len(self.buckets):
            self._launch()
        for work, flat, grads in self._pending:
            work.wait()
            _copy_back(flat, grads)
        self._pending.clear()


def _copy_back(flat: torch.Tensor, grads: list[torch.Tensor]) -> None:
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _sum_bucket(grads: list[torch.Tensor]) -> None:
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    _copy_back(flat, grads)


def sum_over_workers(values: torch.Tensor, workers: Workers) -> torch.Tensor:
    """The element-wise sum of `values` over the workers (a copy; unchanged for one worker)."""
    if workers.size == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def broadcast_from_first(value, workers: Workers):
    """Rank 0's `value` (any picklable object) on every worker."""
    if workers.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value, workers: Workers) -> list:
    """Every worker's `value`, in rank order, on every worker."""
    if workers.size == 1:
        return [value]
    out: list = [None] * workers.size
    dist.all_gather_object(out, value)
    return out


def start_identical(module: torch.nn.Module, device: torch.device, workers: Workers) -> None:
    """Move `module` to its training `device`, then copy rank 0's parameters and buffers to
    every worker: the workers start identical even where initialisation is not
    bit-reproducible across processes.

    The move comes first because an NCCL group has no CPU backend: it broadcasts tensors on
    the GPU each worker trains on, never on the CPU where the module was built."""
    module.to(device)
    if workers.size == 1:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
