"""Benchmark machinery (the benchmarks themselves run with `make bench`, not in tests)."""

from __future__ import annotations

import time

import torch
from dualsweep.benchmarks.common import (
    Ratio,
    across_processes,
    alternating_steps,
    interleaved,
    ratio_of,
)
from dualsweep.benchmarks.reference_gpt import ReferenceGPT


def test_interleaving_alternates_which_runs_first():
    calls = []
    a = lambda: calls.append("a") or 2.0  # noqa: E731
    b = lambda: calls.append("b") or 1.0  # noqa: E731
    results_a, results_b = interleaved(a, b, 4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert results_a == [2.0] * 4 and results_b == [1.0] * 4  # results stay with their function


def test_ratio_of_medians_and_spread():
    ratio, spread = ratio_of([2.0, 4.0, 3.0], [1.0, 1.0, 2.0])
    assert ratio == 3.0 / 1.0  # median 3 over median 1
    assert spread == (1.5, 4.0)


def test_reference_gpt_is_causal():
    torch.manual_seed(0)
    model = ReferenceGPT(vocab=50, d=32, layers=2, heads=4, seq_len=16).eval()
    x = torch.randint(0, 50, (1, 16))
    y = x.clone()
    y[0, 10] = (y[0, 10] + 1) % 50
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6) and not torch.allclose(
        a[0, 10:], b[0, 10:]
    )


def test_alternating_steps_take_turns_and_keep_each_side_s_times():
    calls = []
    alternating_steps(calls.append, lambda batch: calls.append(-batch), [1, 2], 2)
    assert calls == [1, -1, 2, -2, -1, 1, -2, 2]  # a first, then b first
    slow = lambda batch: time.sleep(0.02)  # noqa: E731
    medians_a, medians_b = alternating_steps(slow, lambda batch: None, [0, 0, 0], 2)
    assert all(a >= 0.02 for a in medians_a) and all(b < 0.02 for b in medians_b)


def test_across_processes_reports_the_median_process_whole():
    def process(ratio, rate):
        return Ratio("x", "what", "a", "b", ratio, (ratio, ratio), ">= 1.0", {"rate": rate})

    combined = across_processes([process(1.1, 11.0), process(0.9, 9.0), process(1.0, 10.0)])
    assert combined.ratio == 1.0 and combined.details["rate"] == 10.0  # one process's numbers
    assert combined.spread == (0.9, 1.1) and combined.details["process_ratios"] == [1.1, 0.9, 1.0]
    assert combined.met is True and process(0.99, 0).met is False
    even = across_processes([process(1.2, 0), process(0.8, 1)])
    assert even.ratio == 0.8 and even.details["rate"] == 1  # the lower middle, not a blend


def test_the_step_memory_side_runs(monkeypatch):
    """One side of `make bench`'s step_memory row on the tiny model (its scale is a GPU's):
    the code path the benchmark takes, imports included."""
    from dualsweep.benchmarks import memory

    from .helpers import tiny_run_config

    monkeypatch.setattr(
        memory,
        "scaled_config",
        lambda chunk: tiny_run_config(micro_batch_size=4, loss_chunk_tokens=chunk),
    )
    side = memory.one_side(16)
    assert side["chunk_tokens"] == 16 and side["step_s"] > 0 and side["resident_before_mb"] > 0
