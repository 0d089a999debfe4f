"""Data-parallel training steps: two gloo worker processes against one process.

The reference is the same `train_step` in one process on the whole batch; the claim is that
two workers, each computing the loss of its share of the rows and summing gradients, step
with the same gradient (to float tolerance: only the order of the sums differs), and that
with alpha = k/N the shares are the paper's per-device split (each worker one objective).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from dualsweep.benchmarks.loops import GradientRecorder

from dualsweep.model import Transformer
from dualsweep.objectives import AR, MD, objective_allocation, objective_order
from dualsweep.special_tokens import SpecialTokens
from dualsweep.training.distributed import Workers
from dualsweep.training.step import train_step

from .helpers import tiny_run_config

pytestmark = pytest.mark.distributed  # data-parallel workers (simulated, or gloo processes)

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, mask=3)
STEP = 5  # any step: its draws depend on (seed, step) only


def one_step(alpha: float, allocation: str, workers: Workers) -> dict:
    """One step of the tiny model on a fixed batch; the gradient and this worker's rows."""
    config = tiny_run_config(alpha=alpha, mix_allocation=allocation, micro_batch_size=2)
    torch.manual_seed(0)
    model = Transformer(config.model)
    tokens = torch.randint(
        4, config.model.vocab_size, (config.train.batch_size, config.model.seq_len),
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    recorder = GradientRecorder(model)
    stats = train_step(
        model,
        [recorder],
        tokens,
        step=STEP,
        total_steps=config.steps,
        config=config,
        pair=(AR, MD),
        special=SPECIAL,
        generator=torch.Generator(),
        workers=workers,
    )
    return {"grads": recorder.grads, "rows": stats.rows, "loss": float(stats.loss)}


CASES = [
    (0.5, "step", [(2, 2), (2, 2)]),  # balanced: each worker half of each objective's rows
    (0.5, "sequence", [(2, 2), (2, 2)]),  # the step holds exactly 4 AR rows too
    (0.3, "step", [(1, 3), (1, 3)]),  # round(0.3 * 8) = 2 AR rows: one each
]


class SumAfterBackward:
    """The synchronous gradient sum after the last backward (`sum_gradients`), in the place
    of the overlapped one: the reference its result must equal."""

    def __init__(self, parameters, workers):
        self.parameters, self.workers = list(parameters), workers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def arm(self):
        pass

    def finish(self):
        from dualsweep.training.distributed import sum_gradients

        sum_gradients(self.parameters, self.workers)


def _worker(rank: int, world: int, init_file: str, out: str):
    import dualsweep.training.step as step

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        steps = [one_step(alpha, rule, Workers(rank, world)) for alpha, rule, _ in CASES]
        overlapped = step.OverlappedGradientSum
        step.OverlappedGradientSum = SumAfterBackward
        try:
            after = [one_step(alpha, rule, Workers(rank, world)) for alpha, rule, _ in CASES]
        finally:
            step.OverlappedGradientSum = overlapped
        torch.save({"steps": steps, "after": after}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_worker_steps(tmp_path_factory) -> tuple[list[list[dict]], list[list[dict]]]:
    """Every case's step on 2 gloo worker processes (one spawn for all), with the overlapped
    gradient sum and with the sum after the backward: two lists [rank][case]."""
    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, str(out / "rendezvous"), str(out)), nprocs=2, join=True)
    saved = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return [r["steps"] for r in saved], [r["after"] for r in saved]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{a}-{r}" for a, r, _ in CASES])
def test_two_workers_step_with_the_one_process_gradient(two_worker_steps, case):
    alpha, allocation, split = CASES[case]
    ranks = [two_worker_steps[0][r][case] for r in range(2)]
    whole = one_step(alpha, allocation, Workers())

    assert [tuple(r["rows"]) for r in ranks] == split
    assert sum(r["rows"][0] for r in ranks) == whole["rows"][0]
    # The workers' loss shares add up to the whole batch's loss.
    assert sum(r["loss"] for r in ranks) == pytest.approx(whole["loss"], rel=1e-6)
    for name, expected in whole["grads"].items():
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]), name
        torch.testing.assert_close(ranks[0]["grads"][name], expected, rtol=1e-5, atol=1e-7)


def test_objective_order_cuts_every_share_but_one_into_one_objective():
    """The order the shares and micro-batches are cut in: first objective's rows first, each
    group in batch order, so at most one contiguous part holds both objectives."""
    is_first, _ = objective_allocation(0.3, 7, 16, "sequence")
    order = objective_order(is_first)
    assert sorted(order) == list(range(16))
    flags = is_first[order]
    assert flags[: flags.sum()].all() and not flags[flags.sum() :].any()
    assert np.all(np.diff(order[: flags.sum()]) > 0) and np.all(np.diff(order[flags.sum() :]) > 0)
    parts = [flags[i : i + 4] for i in range(0, 16, 4)]
    assert sum(0 < p.sum() < len(p) for p in parts) <= 1


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{a}-{r}" for a, r, _ in CASES])
def test_the_overlapped_sum_equals_the_sum_after_the_backward(two_worker_steps, case):
    """Each worker's 4 rows run as 2 micro-batches: the sum that starts during the second
    backward gives, bit for bit, the gradients of the sum after it."""
    overlapped, after = two_worker_steps
    for rank in range(2):
        for name, grad in after[rank][case]["grads"].items():
            assert torch.equal(overlapped[rank][case]["grads"][name], grad), name


def test_buckets_start_summing_during_the_last_backward(tmp_path, monkeypatch):
    """In a one-process group (the sum is the identity): every bucket's all-reduce has
    started when the last backward pass returns, in bucket order, none during the first."""
    import torch.distributed as dist

    import dualsweep.training.distributed as distributed
    from dualsweep.training.distributed import OverlappedGradientSum

    monkeypatch.setattr(distributed, "BUCKET_ELEMENTS", 3000)  # several buckets
    started = []
    real = dist.all_reduce
    monkeypatch.setattr(
        dist, "all_reduce", lambda t, **kw: started.append(t.numel()) or real(t, **kw)
    )
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        model = Transformer(tiny_run_config().model)
        x = torch.randint(4, 300, (2, 16))
        with OverlappedGradientSum(model.parameters(), Workers(0, 2)) as summing:
            model(x).float().mean().backward()
            assert started == []  # not armed: the first micro-batch
            summing.arm()
            model(x).float().mean().backward()
            assert len(started) == len(summing.buckets) > 2  # all started during the backward
            expected = {n: p.grad.clone() for n, p in model.named_parameters()}
            summing.finish()
        assert started == [sum(p.numel() for p in b) for b in summing.buckets]  # in order
        for name, p in model.named_parameters():
            assert torch.equal(p.grad, expected[name]), name
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("alpha", [1 / 256, 1 / 16, 0.3, 0.5, 15 / 16])
@pytest.mark.parametrize("size", [2, 4, 8])
def test_workers_get_equal_rows_and_about_equal_attention_work(alpha, size):
    """Causal rows cost half the attention of bidirectional ones: dealt out row by row in
    objective order, each worker gets B/N rows and its share of each objective (within one
    row), so at alpha 1/2 every worker does the same attention work; contiguous shares would
    give half the workers causal rows only (0.75 of the mean work)."""
    B = 256
    is_first, _ = objective_allocation(alpha, 3, B, "step")
    order = objective_order(is_first)
    n_first = int(is_first.sum())
    work = []
    for rank in range(size):
        rows = order[Workers(rank, size).share(B)]
        first = is_first[rows]
        assert len(rows) == B // size and abs(first.sum() - n_first / size) < 1
        assert not np.any(first[1:] & ~first[:-1])  # still in objective order
        work.append(first.sum() * 0.5 + (~first).sum() * 1.0)
    assert sorted(np.concatenate([order[Workers(r, size).share(B)] for r in range(size)])) == list(
        range(B)
    )  # every row once
    if alpha == 0.5:
        assert max(work) / min(work) <= 1.05
    assert max(work) - min(work) <= 0.5  # at most one causal row against one bidirectional


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="does not split evenly over 3 workers"):
        Workers(rank=0, size=3).share(8)


def test_each_worker_trains_on_the_gpu_of_its_local_rank():
    """Ray Train and torchrun show a machine's workers all of its GPUs: worker 5 of 8, the
    second of its machine, must take GPU 1 (Lightning's `devices=1` would give every worker
    GPU 0). Checked with the device count given, as on a machine without GPUs."""
    from dualsweep.config import ConfigError
    from dualsweep.training.distributed import trainer_devices, training_device

    second = Workers(rank=5, size=8, device_index=1)
    assert training_device("gpu", second, device_count=4) == torch.device("cuda", 1)
    assert trainer_devices(torch.device("cuda", 1)) == [1]
    assert training_device("cpu", second, device_count=0) == torch.device("cpu")
    assert trainer_devices(torch.device("cpu")) == 1
    assert training_device("gpu", Workers(), device_count=1) == torch.device("cuda", 0)
    with pytest.raises(
        ConfigError, match=r"worker 5 of 8 should train on GPU 1, but this process sees 1"
    ):
        training_device("gpu", second, device_count=1)


def test_parameters_are_broadcast_from_the_training_device(monkeypatch):
    """An NCCL group has no CPU backend: the module goes to its device first, and every
    broadcast tensor is on that device. (The meta device stands in for a GPU here.)"""
    from dualsweep.training.distributed import start_identical

    broadcast = []
    monkeypatch.setattr(
        dist, "broadcast", lambda tensor, src: broadcast.append((tensor.device, src))
    )
    model = Transformer(tiny_run_config().model)
    start_identical(model, torch.device("meta"), Workers(rank=1, size=2))
    n_tensors = len(list(model.parameters())) + len(list(model.buffers()))
    assert broadcast == [(torch.device("meta"), 0)] * n_tensors
    assert {p.device for p in model.parameters()} == {torch.device("meta")}

    broadcast.clear()  # a single worker moves, and broadcasts nothing
    start_identical(Transformer(tiny_run_config().model), torch.device("meta"), Workers())
    assert broadcast == []


def _start_worker(rank: int, world: int, init_file: str, out: str):
    os.environ["LOCAL_RANK"] = str(rank)  # as torchrun and Ray Train set it
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from dualsweep.training.distributed import start_identical

        workers = Workers.current()
        torch.manual_seed(rank)  # different weights on every worker
        model = Transformer(tiny_run_config().model)
        start_identical(model, torch.device("cpu"), workers)
        torch.save({"workers": workers, "state": model.state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_workers_find_their_local_rank_and_start_from_rank_0_s_weights(tmp_path):
    mp.spawn(_start_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["workers"] for r in ranks] == [Workers(0, 2, 0), Workers(1, 2, 1)]
    torch.manual_seed(0)
    expected = Transformer(tiny_run_config().model).state_dict()
    for rank in ranks:
        for name, value in expected.items():
            assert torch.equal(rank["state"][name], value), name
