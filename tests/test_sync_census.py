"""No blocking host-device traffic inside a micro-batch: the census of a training step.

On a GPU, a tensor built from host data on the device, a copy from pageable memory or a
value read back makes the host wait for every kernel queued before it. The census
(benchmarks/sync_census.py) counts such calls in dualsweep's own code on the CPU; a step
must make none of the blocking kind, and more micro-batches must add nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dualsweep.benchmarks import sync_census
from dualsweep.benchmarks.loops import bare_loop
from dualsweep.benchmarks.sync_census import SyncCensus

from dualsweep.special_tokens import SpecialTokens

from .helpers import tiny_run_config

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, mask=3)


def census_of_step(alpha: float, allocation: str, micro: int, **flat) -> dict:
    config = tiny_run_config(mix_allocation=allocation, micro_batch_size=micro, **flat)
    loop = bare_loop(config, SPECIAL, alpha)
    tokens = torch.randint(
        4, config.model.vocab_size, (config.train.batch_size, config.model.seq_len),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    loop.train_step(tokens)  # warm-up (lazy optimizer states)
    with SyncCensus() as census:
        loop.train_step(tokens)
    return census.census.as_dict()


@pytest.mark.parametrize(
    "alpha, allocation, flat",
    [
        (0.5, "step", {}),
        (0.3, "sequence", {}),  # rows not contiguous in objective order: the gather path
        (0.0, "step", {"document_masking": True, "mask_rate_sampling": "stratified"}),
        (1.0, "step", {"loss_chunk_tokens": 48, "optimizer": "muon"}),
    ],
)
def test_a_step_blocks_nowhere_and_more_micro_batches_add_nothing(alpha, allocation, flat):
    one = census_of_step(alpha, allocation, micro=8, **flat)
    four = census_of_step(alpha, allocation, micro=2, **flat)
    for census in (one, four):
        assert census["constructions"] == census["blocking_copies"] == census["host_reads"] == 0, (
            census["places"]
        )
        # The step's one copy: its objective flags and row weights, packed, non-blocking.
        assert census["async_copies"] == 1, census["places"]
        assert list(census["places"]) == [
            next(
                p
                for p in census["places"]
                if p.startswith("async_copies dualsweep/objectives/mix.py")
            )
        ]
    assert one == four


def test_the_census_counts_each_kind_of_wait(monkeypatch):
    # The census counts calls made from dualsweep's files; here from the tests' instead.
    monkeypatch.setattr(sync_census, "OUR_CODE", str(Path(__file__).resolve().parent))
    x = torch.arange(6.0)
    with SyncCensus() as census:
        torch.tensor([1, 2], device="cpu")  # built from host data on the device
        torch.tensor([1, 2])  # on the host: no copy
        torch.ones(3, device="cpu")  # filled on the device: no copy
        x.to("cpu")  # a copy naming the device, blocking
        x.to("cpu", non_blocking=True)  # the same, asked not to block
        x.to(torch.float64)  # a cast: no copy
        x.sum().item()
        bool(x[0] > 0)
        x[x > 2]  # a boolean mask: its size is read on the host
        x[1:3]  # a view: nothing
    counts = census.census
    assert (counts.constructions, counts.blocking_copies, counts.async_copies) == (1, 1, 1)
    assert counts.host_reads == 3 and counts.blocking == 5
    assert all(place.split()[1].startswith("tests/test_sync_census.py:") for place in counts.places)


def test_the_census_ignores_torch_s_own_calls():
    # An optimizer's bookkeeping (AdamW reads its CPU step counters) is torch's business:
    # only calls made from dualsweep's (here: no) files are counted.
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    with SyncCensus() as census:
        optimizer.step()
        torch.tensor([1.0], device="cpu").item()
    assert census.census.blocking == 0 and not census.census.places
