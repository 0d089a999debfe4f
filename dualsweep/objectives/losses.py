"""Pure tensor functions the objectives are made of: next-token NLL, targets, masking draws.

Every objective uses the same next-token layout: position i predicts token i + 1, so a
sequence of T tokens has T - 1 targets, and token 0 is context for all. Tokens that are not
modelled (pad, bos, mask) are never targets and never masked; every other token, the
document-separating eos included, is a target of every objective, so the AR negative
log-likelihood and the MD ELBO bound the same quantity and are comparable in nats/token.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from dualsweep.special_tokens import SpecialTokens

IGNORE = -100  # a target that has no loss (the last position of a row)


class _LowPrecisionNLL(torch.autograd.Function):
    """Cross-entropy (N,) in float32 of bf16 (or fp16) logits (N, V), never copying them to
    float32. The float32 route (`F.cross_entropy(logits.float())`) writes a float32 copy of
    the logits, their float32 log-softmax, a float32 gradient and its bf16 copy: about 40
    bytes per logit moved; this one moves about 16 (max, shift, exp and a float32-accumulated
    sum forward; one scaled copy of the saved exponentials backward).

    Precision: the shift by the row's maximum (itself a logit) is exact for the logits within
    a factor of 2 of it, which carry the sum; each exponential is rounded to bf16 (relative
    2^-9) and the sum accumulates in float32, so log-sum-exp is within about 1e-3 nats, below
    the rounding of the bf16 logits themselves (2^-9 of a logit of 10 is 0.02). The gradient,
    softmax minus one-hot, is bf16 as the logits' gradient is under autocast anyway."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != IGNORE
        safe = targets.clamp(min=0)[:, None]
        top = logits.amax(dim=-1, keepdim=True)
        exps = (logits - top).exp()
        total = exps.sum(dim=-1, dtype=torch.float32)  # (N,)
        log_sum_exp = top.squeeze(-1).float() + total.log()
        nll = (log_sum_exp - logits.gather(-1, safe).squeeze(-1).float()) * valid
        ctx.save_for_backward(exps, total, safe, valid)
        return nll

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        exps, total, safe, valid = ctx.saved_tensors
        weight = (grad * valid)[:, None]  # (N, 1): d nll / d logit = softmax - one-hot
        grad_logits = exps * (weight / total[:, None]).to(exps.dtype)
        grad_logits.scatter_add_(-1, safe, -weight.to(exps.dtype))
        return grad_logits, None


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (N,) in float32 of logits (N, V) for targets (N,); 0 where a target is
    IGNORE. float32 logits take `F.cross_entropy`; bf16 and fp16 ones `_LowPrecisionNLL`."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        return _LowPrecisionNLL.apply(logits, targets)
    return F.cross_entropy(logits.float(), targets, reduction="none", ignore_index=IGNORE)


def next_token_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (B, T-1) of predicting tokens[:, i+1] from logits[:, i], in float32.

    Computed over all T positions (the last has no target and is ignored) so that the
    logits are read in place: slicing off the last position first would copy all of them.
    """
    B, T, V = logits.shape
    targets = torch.cat([tokens[:, 1:], tokens.new_full((B, 1), IGNORE)], dim=1)
    nll = token_nll(logits.reshape(-1, V), targets.reshape(-1))
    return nll.view(B, T)[:, :-1]


def chunked_next_token_nll(
    features: torch.Tensor,
    head: torch.Tensor,
    tokens: torch.Tensor,
    chunk_tokens: int,
    *,
    compiled: bool = False,
) -> torch.Tensor:
    """`next_token_nll` of the logits `features @ head.T`, never holding them whole.

    The (B, T, V) logits of a large vocabulary dominate a training step's memory (8 x 2,048
    positions x 51,200 tokens is 3.4 GB in float32, and autograd keeps them and their
    gradient). Here `chunk_tokens` positions at a time go through the head and the
    cross-entropy under activation checkpointing: the forward keeps only each chunk's
    (features, targets), and the backward recomputes one chunk's logits at a time. Costs
    one more head matmul per position; the values equal the unchunked ones to float rounding.
    `chunk_tokens` of 0, or of every position, is one piece with nothing recomputed.
    `features` (B, T, C) are what the head reads, `head` its (V, C) weight. `compiled` runs
    the head matmul and the cross-entropy as one `torch.compile`d graph, which reads the
    logits in their own dtype (no float32 copy of them is written).
    """
    B, T, C = features.shape
    targets = torch.cat([tokens[:, 1:], tokens.new_full((B, 1), IGNORE)], dim=1).reshape(-1)
    flat = features.reshape(-1, C)
    head_nll = compiled_head_nll() if compiled else _head_nll
    if not chunk_tokens or chunk_tokens >= B * T:
        return head_nll(flat, head, targets).view(B, T)[:, :-1]
    pieces = [
        checkpoint(
            head_nll,
            flat[start : start + chunk_tokens],
            head,
            targets[start : start + chunk_tokens],
            use_reentrant=False,
        )
        for start in range(0, B * T, chunk_tokens)
    ]
    return torch.cat(pieces).view(B, T)[:, :-1]


def _head_nll(features: torch.Tensor, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return token_nll(F.linear(features, head), targets)


@functools.cache
def compiled_head_nll(backend="inductor"):
    """`_head_nll` through `torch.compile` (made once per process and backend, on first use;
    `benchmarks/compiled_flops.py` passes a counting backend)."""
    return torch.compile(_head_nll, backend=backend)


def modelled(tokens: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """True (B, T) where a token is modelled: not pad, bos or mask.

    Compared with Python scalars: a tensor of the ids built here would be a blocking
    host-to-device copy in every micro-batch on a GPU."""
    pad, bos, mask = special.unmodelled
    return (tokens != pad) & (tokens != bos) & (tokens != mask)


def maskable_positions(tokens: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    """True (B, T) where MD may mask: modelled tokens, never position 0 (no position predicts it)."""
    maskable = modelled(tokens, special)
    maskable[:, 0] = False
    return maskable


def sample_mask_rates(
    n: int,
    generator: torch.Generator,
    *,
    stratified: bool = False,
    min_rate: float = 1e-3,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """n mask rates t in [min_rate, 1): i.i.d. U(0, 1), or one per stratum [k/n, (k+1)/n) shuffled."""
    u = torch.rand(n, generator=generator, device=device)
    if stratified:
        order = torch.randperm(n, generator=generator, device=device)
        u = (order + u[:1]) / n  # one shared offset keeps each t uniform, strata disjoint
    return u.clamp(min=min_rate)


def mask_tokens(
    tokens: torch.Tensor,
    rates: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each maskable token of row b by `mask_id` with probability rates[b].

    Returns the corrupted inputs and the boolean (B, T) mask of replaced positions.
    """
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    masked = (u < rates[:, None]) & maskable
    return tokens.masked_fill(masked, mask_id), masked


def ar_nll_sums(nll: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sequence summed AR negative log-likelihood (B,) over valid targets (B, T-1)."""
    return (nll * targets).sum(dim=1)


def md_nll_sums(
    nll: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, rates: torch.Tensor
) -> torch.Tensor:
    """Per-sequence MD ELBO estimate (B,): summed NLL of masked targets, weighted by 1 / t."""
    masked_targets = masked[:, 1:] & targets
    return (nll * masked_targets).sum(dim=1) / rates


def document_ids(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Document index (B, T) of each position of packed sequences; an eos closes its document.

    Computed from the tokens the model sees: a masked eos does not split documents, so the
    attention pattern never reveals a masked token.
    """
    is_eos = (tokens == eos_id).long()
    return torch.cumsum(is_eos, dim=1) - is_eos
