"""benchmarks/compiled_flops.py: the share of a step's matmul FLOPs inside compiled graphs."""

from __future__ import annotations

import torch
from dualsweep.benchmarks.compiled_flops import GraphFlops, compiled_share

from dualsweep.special_tokens import SpecialTokens

from .helpers import tiny_run_config


def _inputs(config):
    V = config.model.vocab_size
    special = SpecialTokens(pad=V - 3, bos=V - 2, mask=V - 1, eos=0)
    tokens = torch.randint(1, V - 3, (config.train.batch_size, config.model.seq_len))
    return tokens, special


def test_a_graph_is_counted_at_every_call():
    graphs = GraphFlops()
    f = torch.compile(lambda a, b: a @ b, backend=graphs.backend)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    f(a, b)
    f(a, b)
    assert graphs.flops == 2 * (2 * 4 * 8 * 3)  # 2 x m x k x n per matmul, two calls


def test_every_matmul_flop_of_the_compiled_step_is_in_a_graph():
    torch.manual_seed(0)
    config = tiny_run_config(alpha=0.5)
    tokens, special = _inputs(config)
    for chunk in (0, 64):
        found = compiled_share(config.replace(loss_chunk_tokens=chunk), tokens, special)
        assert found["total_flops"] > 0
        assert found["share"] == 1.0, (chunk, found)


def test_a_step_with_eager_blocks_has_a_share_below_one(monkeypatch):
    from dualsweep.model import Transformer

    monkeypatch.setattr(Transformer, "compile_blocks", lambda self, **options: None)
    torch.manual_seed(0)
    config = tiny_run_config(alpha=0.5)
    tokens, special = _inputs(config)
    found = compiled_share(config, tokens, special)
    assert 0.0 < found["share"] < 1.0  # the head's matmuls only
