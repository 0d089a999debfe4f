"""Counted memory traffic of a training step, on fake tensors: what a GPU step reads and writes
outside its matmuls, measured without a GPU.

On a GPU the elementwise work of a step (norms, rotary embeddings, activations, casts,
residual adds, the loss's softmax) is bound by memory traffic, not arithmetic; at the paper's
470M shape it rivals the matmuls' time. This counts it exactly for the code as written:
one micro-batch's forward and backward through the real `train_step`, under bf16 autocast,
on `FakeTensorMode` tensors (shapes and dtypes only: no memory, seconds on a laptop). Every
aten op's input and output bytes are summed, views and metadata queries excluded, and split
into matmul-like ops (matrix products and attention kernels) and the rest.

It is a model of a GPU step, not a measurement of one: the CPU's autocast policy stands in for
CUDA's (a CPU build cannot make fake CUDA tensors), composite ops are counted as the
decomposition the CPU dispatches (RMSNorm, for one, runs as pow, mean, rsqrt and two
multiplies, where a recent CUDA build has a fused kernel that reads less), and caches are
ignored.
It is exact for what it counts, so it compares two versions of the code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MATMUL_OPS = {
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
}
VIEW_OPS = {
    "view",
    "_unsafe_view",
    "_reshape_alias",
    "reshape",
    "t",
    "transpose",
    "permute",
    "expand",
    "as_strided",
    "slice",
    "select",
    "unsqueeze",
    "squeeze",
    "alias",
    "detach",
    "split",
    "split_with_sizes",
    "unbind",
    "chunk",
    "lift_fresh",
}


@dataclass
class Traffic:
    matmul_bytes: int = 0
    other_bytes: int = 0
    by_op: Counter = field(default_factory=Counter)
    """Bytes of each non-matmul op."""


class TrafficCounter(TorchDispatchMode):
    """Sums the bytes each aten op reads (its tensor inputs) and writes (its tensor outputs)."""

    def __init__(self):
        super().__init__()
        self.traffic = Traffic()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not outputs or name in VIEW_OPS:  # metadata (sizes, devices) and views move nothing
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        moved = sum(t.numel() * t.element_size() for t in inputs + outputs)
        if name in MATMUL_OPS:
            self.traffic.matmul_bytes += moved
        else:
            self.traffic.other_bytes += moved
            self.traffic.by_op[name] += moved
        return out


class _NoStep:
    """An optimizer that does nothing (the count is of forward and backward)."""

    def __init__(self, model):
        self.param_groups = [{"params": list(model.parameters()), "lr": 0.0, "initial_lr": 1.0}]

    def step(self):
        pass

    def zero_grad(self, set_to_none: bool = True):
        pass


def counted_step(config, model, tokens: torch.Tensor, special) -> None:
    """One real `train_step` of `config` on `tokens` (forward, backward and clip of every
    micro-batch) with an optimizer that does nothing: what the counting benchmarks count."""
    from dualsweep.objectives import objective_pair
    from dualsweep.training.step import train_step

    train_step(
        model,
        [_NoStep(model)],
        tokens,
        step=1,
        total_steps=config.steps,
        config=config,
        pair=objective_pair(config.objective.objectives),
        special=special,
        generator=torch.Generator(),
    )


def step_traffic(config, alpha: float = 0.5) -> Traffic:
    """The counted traffic of one micro-batch (forward, backward, clip) of `config`'s step at
    `alpha`, under bf16 autocast, on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from dualsweep.model import Transformer
    from dualsweep.special_tokens import SpecialTokens

    micro = config.train.micro_batch_size or config.train.batch_size
    config = config.replace(alpha=alpha, batch_size=micro, micro_batch_size=micro)
    V = config.model.vocab_size
    special = SpecialTokens(pad=V - 3, bos=V - 2, mask=V - 1, eos=0)
    with FakeTensorMode():
        model = Transformer(config.model)
        tokens = torch.randint(1, V - 3, (micro, config.model.seq_len))
        counter = TrafficCounter()
        with counter, torch.autocast("cpu", dtype=torch.bfloat16):
            counted_step(config, model, tokens, special)
    return counter.traffic


def bytes_per_token_per_layer(config, traffic: Traffic) -> float:
    micro = config.train.micro_batch_size or config.train.batch_size
    return traffic.other_bytes / (micro * config.model.seq_len * config.model.n_layers)


BASELINE_BYTES_PER_TOKEN_PER_LAYER = 817_000
"""This count for the 470M step at alpha 1/2, taken on commit 4e27c4b (the eager model of
November 2026: float32 residual stream, RMSNorm and RoPE through float32, unfused SwiGLU,
float32 logits before the cross-entropy); the GPU-speed issue's target is half of it."""


def traffic_ratio():
    """The `make bench` row: today's count over the baseline's."""
    from .common import Ratio
    from .gpu_stages import size_config

    config = size_config("470m")
    traffic = step_traffic(config)
    per = bytes_per_token_per_layer(config, traffic)
    top = ", ".join(f"{name} {b / 1e9:.0f} GB" for name, b in traffic.by_op.most_common(6))
    return Ratio(
        "step_traffic",
        "non-matmul bytes per token per layer of the 470M step (fake tensors, bf16 autocast), "
        "over the count at commit 4e27c4b",
        "bytes now",
        "bytes at 4e27c4b",
        per / BASELINE_BYTES_PER_TOKEN_PER_LAYER,
        (per / BASELINE_BYTES_PER_TOKEN_PER_LAYER,) * 2,
        "<= 0.5",
        {
            "bytes_per_token_per_layer": per,
            "matmul_bytes_per_micro_batch": traffic.matmul_bytes,
            "other_bytes_per_micro_batch": traffic.other_bytes,
            "largest": top,
        },
    )
