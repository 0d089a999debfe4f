"""The transformer, read top to bottom: one set of parameters for every attention mode.

A pre-norm decoder-style transformer (RMSNorm, rotary position embeddings, SwiGLU, optional
tied output head) on `F.scaled_dot_product_attention`. Autoregressive and masked-diffusion
training differ only in the attention mask (and in the input tokens the objective masks);
no parameter depends on the mode, which is the paper's point: one ordinary model, two losses.

Attention modes, per sample, are given by `prefix_lengths`: position j may attend to
position i when i <= j (causal) or i < prefix_lengths[b] (a bidirectional prefix). So 0 is
causal, the sequence length is fully bidirectional, and k in between is prefix-LM.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dualsweep.config import ModelConfig

# `prefix_lengths` value meaning "causal everywhere", and the value that makes a sample fully
# bidirectional for any sequence length.
CAUSAL = 0
BIDIRECTIONAL = 2**31 - 1


def attention_mask(
    prefix_lengths: torch.Tensor, seq_len: int, document_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean (B, 1, T, T) mask, True where query j may attend to key i.

    Keys i <= j are always visible (causal part), keys i < prefix_lengths[b] are visible to
    every query (bidirectional prefix). With `document_ids` (B, T), a query never sees keys of
    another document of the same packed sequence. The diagonal is always True, so no row is
    empty and softmax is always defined.
    """
    device = prefix_lengths.device
    query = torch.arange(seq_len, device=device)[:, None]  # (T, 1)
    key = torch.arange(seq_len, device=device)[None, :]  # (1, T)
    visible = (key <= query)[None] | (key[None] < prefix_lengths[:, None, None])  # (B, T, T)
    if document_ids is not None:
        visible = visible & (document_ids[:, :, None] == document_ids[:, None, :])
    return visible[:, None]  # (B, 1, T, T)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (T, head_dim / 2), for rotating channel pairs by position."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (first half, second half) channel pairs of x (B, H, T, D) by their position angle:
    (x1 cos - x2 sin, x2 cos + x1 sin), written as x * [cos, cos] + [x2, x1] * [-sin, sin].

    In x's own dtype: under bf16 autocast q and k are bf16, and a float32 round trip would
    move three times the bytes of the rotation (the tables are exact in float32 and rounded
    once to bf16). In float32 the values are those of the two-half formula, bit for bit
    (a - b is a + (-b), and addition commutes)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * torch.cat((cos, cos), dim=-1) + torch.cat((x2, x1), dim=-1) * torch.cat(
        (-sin, sin), dim=-1
    )


class _LowPrecisionRMSNorm(torch.autograd.Function):
    """RMSNorm of a bf16 (or fp16) x: the statistic in float32, every whole-activation op in
    x's dtype. The float32 route (`F.rms_norm` of x.float()) copies x to float32, runs pow,
    mean and two multiplies on float32 tensors and copies back, and its autograd graph keeps
    float32 intermediates: about four times the bytes per element of this one. Autocast is
    off inside: CUDA's would run the norm on a float32 copy of x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            # One read of x, accumulated in float32: the mean of squares keeps its precision.
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
            rstd = torch.rsqrt(norm.square() / x.shape[-1] + eps)  # (..., 1), float32
            xhat = x * rstd.to(x.dtype)
            ctx.save_for_backward(xhat, weight, rstd)
            return xhat * weight.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xhat, weight, rstd = ctx.saved_tensors
        grad_xhat = grad * weight.to(grad.dtype)
        # d/dx of x * rstd(x): rstd * (g - xhat * mean(g * xhat)), the mean in float32.
        dot = (grad_xhat * xhat).sum(dim=-1, keepdim=True, dtype=torch.float32)
        centred = torch.addcmul(grad_xhat, xhat, (-dot / xhat.shape[-1]).to(grad.dtype))
        grad_x = centred * rstd.to(grad.dtype)
        reduce = tuple(range(grad.dim() - 1))
        grad_weight = (grad * xhat).sum(dim=reduce, dtype=torch.float32).to(weight.dtype)
        return grad_x, grad_weight, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16):  # the residual stream under autocast
            return _LowPrecisionRMSNorm.apply(x, self.weight, self.eps)
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        is_causal: bool,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.up = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.down = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = SelfAttention(config)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, mask, is_causal):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, is_causal)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(config.seq_len, config.head_dim, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.config.init_std
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("attn.out.weight", "mlp.down.weight")):
                # GPT-2: each residual branch's output scaled so the residual stream's
                # variance does not grow with depth.
                nn.init.normal_(p, std=std / math.sqrt(2 * self.config.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def features(
        self,
        tokens: torch.Tensor,
        prefix_lengths: torch.Tensor | int = CAUSAL,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The normalised final hidden states (B, T, C) the output head reads.

        `prefix_lengths`: an int for the whole batch (CAUSAL, BIDIRECTIONAL or a prefix length)
        or a (B,) tensor, one mode per sample. The whole-batch causal and bidirectional cases
        take SDPA's mask-free paths; anything per-sample builds one boolean mask.
        """
        B, T = tokens.shape
        if T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds seq_len={self.config.seq_len}")
        mask, is_causal = None, False
        if document_ids is None and isinstance(prefix_lengths, int):
            if prefix_lengths <= 1:  # a prefix of one token is plain causal attention
                is_causal = True
            elif prefix_lengths < T:
                mask = attention_mask(torch.full((B,), prefix_lengths, device=tokens.device), T)
        else:
            if isinstance(prefix_lengths, int):
                prefix_lengths = torch.full((B,), prefix_lengths, device=tokens.device)
            mask = attention_mask(prefix_lengths, T, document_ids)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.embed(tokens)  # (B, T, C)
        if torch.is_autocast_enabled(x.device.type):
            # The residual stream in the autocast dtype (bf16), as Megatron-LM's default:
            # every block's output is bf16 already, and a float32 stream doubles the bytes
            # of every add and norm. The norms still accumulate their statistic in float32.
            x = x.to(torch.get_autocast_dtype(x.device.type))
        for block in self.blocks:
            x = block(x, cos, sin, mask, is_causal)
        return self.final_norm(x)

    def forward(
        self,
        tokens: torch.Tensor,
        prefix_lengths: torch.Tensor | int = CAUSAL,
        document_ids: torch.Tensor | None = None,
        at: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for tokens (B, T) in the attention mode of `prefix_lengths` (see
        `features`); with `at` = (rows, positions), only the logits (N, V) at those N places,
        so that scoring a few tokens per row pays for no other position's output head (a
        large share of the compute with a large vocabulary).

        Training with a large vocabulary can skip the whole (B, T, V) tensor: see
        `objectives.chunked_next_token_nll`, which applies `head` to `features` in chunks.
        """
        x = self.features(tokens, prefix_lengths, document_ids)
        if at is not None:
            x = x[at]  # (N, C): only the places asked for
        return self.head(x)  # (B, T, V), or (N, V)

    def compile_blocks(self, **options) -> None:
        """Compile each block in place with `torch.compile`.

        Every block runs the same code on the same shapes, so one graph per attention mode
        (causal, bidirectional, per-sample mask) serves all layers: compile time does not
        grow with depth, where compiling the whole model traces every layer into each graph.
        Parameter names are unchanged (checkpoints and optimizer groups do not see it).
        `options` go to `torch.compile` (a benchmark passes its own backend)."""
        for block in self.blocks:
            block.compile(**options)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters counted once (a tied head is not counted twice)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.head.weight.numel()
        return n
