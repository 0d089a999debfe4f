"""Optimisers: AdamW alone, or Muon for the 2-D hidden weights and AdamW for the rest.

Muon orthogonalises the update of each hidden weight matrix (attention and MLP projections);
embeddings, the output head and norm gains stay with AdamW, as in the paper and in Muon's
own recommendation. `NewtonSchulzMuon` is torch's `torch.optim.Muon` update written out
(tests/test_optim.py checks the two agree), plus one thing torch's cannot do: a fused matrix
is orthogonalised block by block. The attention's fused qkv weight is three matrices, q, k
and v, and the reference implementations (Keller Jordan's Muon, modded-nanogpt)
orthogonalise them separately; one Newton-Schulz pass over the (3C, C) stack would couple
their singular values and scale the step by sqrt(3).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dualsweep.config import OptimConfig

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz (Keller Jordan's Muon)
NS_STEPS = 5


def orthogonalise(update: torch.Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """Approximate U V^T of update = U S V^T by a quintic Newton-Schulz iteration in bfloat16."""
    a, b, c = NS_COEFFICIENTS
    x = update.bfloat16()
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(
            x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a
        )  # aX + (bA + cA²)X
    return x.T if tall else x


class NewtonSchulzMuon(torch.optim.Optimizer):
    """Muon: torch's update, with fused matrices orthogonalised block by block.

    Nesterov momentum (buffer as an exponential average), orthogonalised update, decoupled
    weight decay lr * wd, and the step scaled by sqrt(max(1, rows / cols)). A parameter group's
    `blocks` (default 1) cuts each of its matrices into that many equal row blocks, each
    orthogonalised and scaled as a matrix of its own: the same as torch's Muon stepping the
    blocks as separate parameters.
    """

    def __init__(self, params, lr: float, weight_decay: float, momentum: float, blocks: int = 1):
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "blocks": blocks}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum)
                p.mul_(1 - lr * wd)
                rows = p.size(0) // group["blocks"]
                scale = math.sqrt(max(1.0, rows / p.size(1)))
                for start in range(0, p.size(0), rows):
                    block = slice(start, start + rows)
                    p[block].add_(orthogonalise(update[block]), alpha=-lr * scale)
        return loss


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden 2-D weight matrices of the blocks, everything else), each parameter once."""
    hidden, rest = [], []
    for name, p in model.named_parameters():
        (hidden if name.startswith("blocks.") and p.ndim == 2 else rest).append(p)
    return hidden, rest


def build_optimizers(model: nn.Module, config: OptimConfig) -> list[torch.optim.Optimizer]:
    """The run's optimisers; each param group's peak lr is kept in `initial_lr` for the schedule."""
    hidden, rest = split_parameters(model)
    # The fused kernel (CPU and CUDA): on the tiny model its step takes a quarter of the
    # per-parameter loop's time, about 1% of a whole training step (benchmarks/RESULTS.md).
    adamw_kwargs = {"betas": config.betas, "eps": 1e-8, "fused": True}
    if config.optimizer == "adamw":
        groups = [
            {"params": hidden, "weight_decay": config.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        optimizers = [torch.optim.AdamW(groups, lr=config.lr, **adamw_kwargs)]
    else:
        fused = {id(p) for name, p in model.named_parameters() if name.endswith("attn.qkv.weight")}
        muon = NewtonSchulzMuon(
            [
                {"params": [p for p in hidden if id(p) in fused], "blocks": 3},  # q, k, v
                {"params": [p for p in hidden if id(p) not in fused]},
            ],
            lr=config.muon_lr,
            weight_decay=config.weight_decay,
            momentum=config.muon_momentum,
        )
        adamw = torch.optim.AdamW(
            [{"params": rest, "weight_decay": 0.0}], lr=config.lr, **adamw_kwargs
        )
        optimizers = [muon, adamw]
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def set_lr_multiplier(optimizers, multiplier: float) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
