"""The WSD schedule and the optimisers."""

from __future__ import annotations

import pytest
import torch

from dualsweep.config import ModelConfig, OptimConfig
from dualsweep.model import Transformer
from dualsweep.schedules import wsd_multiplier
from dualsweep.training.optim import (
    NewtonSchulzMuon,
    build_optimizers,
    orthogonalise,
    split_parameters,
)


def test_wsd_by_hand():
    # 100 steps, 10 warmup, 20 decay to 10% of the peak.
    lr = [
        wsd_multiplier(s, 100, warmup_fraction=0.1, decay_fraction=0.2, final_fraction=0.1)
        for s in range(100)
    ]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)  # (s + 1) / 10
    assert lr[10:80] == [1.0] * 70
    assert lr[80] == pytest.approx(1.0)  # the decay starts from the peak
    assert lr[90] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert lr[99] == pytest.approx(0.1 + 0.9 * (1 / 20))
    sqrt = wsd_multiplier(90, 100, warmup_fraction=0.1, decay_fraction=0.2, shape="sqrt")
    assert sqrt == pytest.approx(1 - 0.5**0.5)


def test_wsd_without_warmup_or_decay():
    assert [wsd_multiplier(s, 5, warmup_fraction=0, decay_fraction=0) for s in range(5)] == [
        1.0
    ] * 5


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Transformer(
        ModelConfig(vocab_size=40, n_layers=2, d_model=16, n_heads=2, ffn_hidden=24, seq_len=8)
    )


def test_muon_takes_hidden_matrices_and_adamw_the_rest(model):
    hidden, rest = split_parameters(model)
    assert all(p.ndim == 2 for p in hidden) and len(hidden) == 2 * 5  # qkv, out, gate, up, down
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in rest} == {"embed.weight", "final_norm.weight"} | {
        f"blocks.{i}.{n}_norm.weight" for i in range(2) for n in ("attn", "mlp")
    }
    muon, adamw = build_optimizers(model, OptimConfig(optimizer="muon"))
    covered = [p for o in (muon, adamw) for g in o.param_groups for p in g["params"]]
    assert sorted(map(id, covered)) == sorted(id(p) for p in model.parameters())  # each once
    assert muon.param_groups[0]["lr"] == 0.02 and adamw.param_groups[0]["lr"] == 2e-3


def test_adamw_decays_matrices_only(model):
    (adamw,) = build_optimizers(model, OptimConfig(optimizer="adamw", weight_decay=0.1))
    decayed, plain = adamw.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"])


def test_orthogonalise_flattens_singular_values():
    g = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(orthogonalise(g).float())
    assert s.min() > 0.5 and s.max() < 1.5  # the quintic iteration's known band, not exactly 1


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no Muon to compare with")
def test_fallback_muon_matches_torch_muon():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(24, 12))
    b = torch.nn.Parameter(a.detach().clone())
    ours = NewtonSchulzMuon([a], lr=0.02, weight_decay=0.1, momentum=0.95)
    theirs = torch.optim.Muon([b], lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    for step in range(3):
        grad = torch.randn(24, 12, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    # The same update in the same order of bfloat16 operations.
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no Muon to compare with")
def test_a_fused_qkv_matrix_steps_as_three_separate_matrices():
    """The reference algorithm treats q, k and v as matrices of their own: torch's Muon on
    three (C, C) parameters. Ours on the fused (3C, C) weight with blocks=3 must step the same."""
    C = 8
    torch.manual_seed(0)
    fused = torch.nn.Parameter(torch.randn(3 * C, C))
    parts = [torch.nn.Parameter(block.detach().clone()) for block in fused.detach().split(C)]
    ours = NewtonSchulzMuon(
        [{"params": [fused], "blocks": 3}], lr=0.02, weight_decay=0.1, momentum=0.95
    )
    reference = torch.optim.Muon(parts, lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    whole = torch.nn.Parameter(fused.detach().clone())  # and what one pass over the stack does
    coupled = torch.optim.Muon([whole], lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    for step in range(3):
        grad = torch.randn(3 * C, C, generator=torch.Generator().manual_seed(step))
        fused.grad, whole.grad = grad.clone(), grad.clone()
        for part, block in zip(parts, grad.split(C), strict=True):
            part.grad = block.clone()
        for optimizer in (ours, reference, coupled):
            optimizer.step()
    torch.testing.assert_close(
        fused.detach(), torch.cat([p.detach() for p in parts]), atol=1e-6, rtol=1e-6
    )
    assert (whole - fused).abs().max() > 1e-3  # the fused pass is a different update


def test_muon_steps_the_attention_s_qkv_in_three_blocks(model):
    muon, _ = build_optimizers(model, OptimConfig(optimizer="muon"))
    qkv, rest = muon.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert qkv["blocks"] == 3 and rest["blocks"] == 1
    assert sorted(names[id(p)] for p in qkv["params"]) == [
        f"blocks.{i}.attn.qkv.weight" for i in range(2)
    ]
