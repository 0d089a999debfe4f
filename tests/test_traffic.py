"""The traffic counter of `make bench` (benchmarks/traffic.py): exact on ops counted by hand."""

from __future__ import annotations

import torch
from dualsweep.benchmarks.traffic import TrafficCounter, bytes_per_token_per_layer, step_traffic

from .helpers import tiny_run_config


def test_bytes_read_and_written_by_hand():
    a, b = torch.ones(100), torch.ones(100)
    m = torch.ones(10, 20)
    with TrafficCounter() as counter:
        a + b  # reads 2 x 400 bytes, writes 400
        a.view(10, 10).t()  # views move nothing
        a.to(torch.bfloat16)  # reads 400, writes 200
        m @ m.T  # a matmul: counted apart (reads 2 x 800, writes 400)
    traffic = counter.traffic
    assert traffic.by_op == {"add": 1200, "_to_copy": 600}
    assert traffic.other_bytes == 1800 and traffic.matmul_bytes == 2000


def test_a_step_is_counted_on_fake_tensors_per_token_and_layer():
    config = tiny_run_config(micro_batch_size=4)
    traffic = step_traffic(config)
    assert traffic.matmul_bytes > 0 and traffic.other_bytes > 0
    # Twice the layers: the blocks' share of the traffic doubles, the rest (embedding, head,
    # loss) stays; per token per layer, the count falls towards the blocks' own.
    deeper = tiny_run_config(micro_batch_size=4, n_layers=4)
    more = step_traffic(deeper)
    blocks = (more.other_bytes - traffic.other_bytes) / 2  # two more layers
    assert traffic.other_bytes > 2 * blocks  # the rest is not nothing
    assert bytes_per_token_per_layer(deeper, more) < bytes_per_token_per_layer(config, traffic)
