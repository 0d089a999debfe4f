"""The bf16 paths of the model and the loss (issue 23.2): fewer bytes, the same numbers.

Under autocast the residual stream, RMSNorm, RoPE and the cross-entropy run in bf16 with
float32 statistics, where they used float32 copies of whole activations. Each is checked
against a float32 computation on the same (bf16-representable) inputs, within bf16 rounding;
the float32 paths, which every CPU run and the committed results use, are unchanged bit for
bit (the two-half RoPE formula and `F.rms_norm` are the references).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dualsweep.model import RMSNorm, Transformer, apply_rope, rope_tables
from dualsweep.objectives.losses import IGNORE, token_nll

from .helpers import tiny_run_config

BF16_EPS = 2.0**-8  # bf16 keeps 8 significant bits: relative rounding up to 2^-9, 2 roundings


def _two_half_rope(x, cos, sin):
    """RoPE as the model wrote it before: two halves in float32, concatenated."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def test_rope_in_float32_is_the_two_half_formula_bit_for_bit():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 8)
    cos, sin = rope_tables(16, 8, 10000.0)
    assert torch.equal(apply_rope(x, cos, sin), _two_half_rope(x, cos, sin))
    # It is a rotation: each channel pair keeps its length.
    out = apply_rope(x, cos, sin)
    pairs = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # noqa: E731
    assert torch.allclose(pairs(out), pairs(x), atol=1e-5)


def test_rope_in_bf16_stays_bf16_and_matches_float32():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 8).bfloat16()
    cos, sin = rope_tables(16, 8, 10000.0)
    out = apply_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    reference = _two_half_rope(x.float(), cos, sin)
    assert (out.float() - reference).abs().max() <= 4 * BF16_EPS * reference.abs().max()


def test_rms_norm_in_float32_is_torchs():
    torch.manual_seed(0)
    norm = RMSNorm(8, 1e-6)
    norm.weight.data = torch.rand(8) + 0.5
    x = torch.randn(4, 5, 8)
    assert torch.equal(norm(x), F.rms_norm(x, (8,), norm.weight, 1e-6))


def test_rms_norm_in_bf16_matches_float32_forward_and_backward():
    torch.manual_seed(0)
    weight = torch.rand(64) + 0.5
    x = (3 * torch.randn(4, 32, 64)).bfloat16()  # bf16 values, exact in float32 too
    grad = torch.randn(4, 32, 64).bfloat16()

    low = RMSNorm(64, 1e-6)
    low.weight.data = weight.clone()
    x_low = x.clone().requires_grad_()
    out = low(x_low)
    out.backward(grad)
    assert out.dtype == torch.bfloat16 and x_low.grad.dtype == torch.bfloat16

    x_ref = x.float().requires_grad_()
    w_ref = weight.clone().requires_grad_()
    ref = F.rms_norm(x_ref, (64,), w_ref, 1e-6)
    ref.backward(grad.float())

    def close(a, b, slack):
        return (a.float() - b).abs().max() <= slack * BF16_EPS * b.abs().max()

    assert close(out, ref, 4)
    assert close(x_low.grad, x_ref.grad, 8)
    assert low.weight.grad.dtype == torch.float32 and close(low.weight.grad, w_ref.grad, 8)


def test_cross_entropy_of_bf16_logits_matches_float32_and_ignores_ignored():
    torch.manual_seed(0)
    logits = (4 * torch.randn(64, 1000)).bfloat16()
    targets = torch.randint(0, 1000, (64,))
    targets[::7] = IGNORE
    grad = torch.rand(64)

    low_in = logits.clone().requires_grad_()
    nll = token_nll(low_in, targets)
    (nll * grad).sum().backward()
    assert nll.dtype == torch.float32 and low_in.grad.dtype == torch.bfloat16

    ref_in = logits.float().requires_grad_()
    ref = F.cross_entropy(ref_in, targets, reduction="none", ignore_index=IGNORE)
    (ref * grad).sum().backward()

    # The loss to about 1e-3 nats (the logits are exact: the only roundings are the bf16
    # exponentials, summed in float32); zero loss and zero gradient where ignored.
    assert (nll - ref).abs().max() < 2e-3
    assert torch.all(nll[::7] == 0) and torch.all(low_in.grad[::7] == 0)
    # The gradient, softmax minus one-hot, to bf16 rounding of each entry.
    assert (low_in.grad.float() - ref_in.grad).abs().max() <= 4 * BF16_EPS * ref_in.grad.abs().max()
    # Each row's gradient sums to zero (softmax sums to one), up to rounding.
    assert low_in.grad.float().sum(dim=1).abs().max() < 0.02


def test_float32_cross_entropy_is_torchs():
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 50), torch.randint(0, 50, (16,))
    targets[3] = IGNORE
    expected = F.cross_entropy(logits, targets, reduction="none", ignore_index=IGNORE)
    assert torch.equal(token_nll(logits, targets), expected)


def test_the_model_under_bf16_autocast_matches_float32_logits():
    torch.manual_seed(0)
    config = tiny_run_config().model
    model = Transformer(config)
    tokens = torch.randint(0, config.vocab_size - 3, (2, config.seq_len))
    with torch.no_grad():
        reference = model(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(tokens)
    assert low.dtype == torch.bfloat16
    # bf16 through a few layers: a few percent of the logits' scale, not more.
    error = (low.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05, error
    # Greedy predictions mostly agree.
    agree = (low.float().argmax(-1) == reference.argmax(-1)).float().mean()
    assert agree > 0.9, agree


@pytest.mark.slow  # about 9 s of torch.compile on a CPU
def test_compiled_blocks_and_head_under_bf16_autocast_match_eager():
    """The bf16 paths (custom autograd Functions, autocast off inside) compile: the compiled
    blocks and head give the eager loss and gradients to bf16 rounding (measured: loss within
    1e-4, gradients within 1.3% of their largest entry)."""
    from dualsweep.objectives.losses import chunked_next_token_nll

    torch.manual_seed(0)
    config = tiny_run_config().model
    model = Transformer(config)
    tokens = torch.randint(0, config.vocab_size - 3, (2, config.seq_len))

    def loss(compiled: bool) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.features(tokens)
            return chunked_next_token_nll(
                features, model.head.weight, tokens, 0, compiled=compiled
            ).mean()

    eager = loss(False)
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.compile_blocks()
    compiled = loss(True)
    compiled.backward()
    assert abs(compiled.item() - eager.item()) < 1e-3
    for expected, p in zip(eager_grads, model.parameters(), strict=True):
        assert (p.grad - expected).abs().max() <= 0.05 * expected.abs().max()
    torch._dynamo.reset()
