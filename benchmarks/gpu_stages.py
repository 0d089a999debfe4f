"""The stages of the GPU check (benchmarks/gpu_check.py): each a function of the check's
`Context` that returns a JSON-able dict with a one-line `summary`.

Every stage runs the code users train with (the model, `train_step`, `train()` and the
command line, the data-parallel start and gradient sum) with the device swapped: on a GPU
for the check, on the CPU for its rehearsal, which the tests run. Only plain torch,
Lightning and the repository are needed: no Ray, no Optuna, no network.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import shutil
import statistics
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dualsweep.config import RunConfig, load_sweep
from dualsweep.model import BIDIRECTIONAL, CAUSAL, Transformer
from dualsweep.special_tokens import SpecialTokens
from dualsweep.sweep.plan import H100_BF16_PEAK_FLOPS, causal_share, training_flops_per_token

from .common import alternating_steps
from .loops import (
    GradientRecorder,
    PlainLoop,
    autocast,
    bare_loop,
    device_sync,
    matmul_peak,
    reference_loop,
    timed_steps,
)
from .sync_census import SyncCensus
from .training import matched_ffn

# Dense bf16 tensor-core peaks (no sparsity) by a substring of torch's device name, the first
# match winning: the PCIe and NVL H100s are slower than the SXM one ("H100 80GB HBM3").
NOMINAL_BF16_PEAK = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", H100_BF16_PEAK_FLOPS),
    ("H200", H100_BF16_PEAK_FLOPS),  # the same tensor cores, more memory
    ("A100", 312e12),
    ("L40S", 362e12),
)
LOSS_CHUNK_TOKENS = 4096
"""`train.loss_chunk_tokens` of the peak-memory row: 4,096 positions x 51,200 is 0.8 GB of
float32 logits at a time, against 3.4 GB for a whole micro-batch of 8 x 2,048."""
SMOKE_SWEEP = "sweeps/smoke.yaml"


@dataclass
class Context:
    """What every stage gets: the device, a scratch folder, the log, and facts of earlier
    stages (the measured matmul peak, say)."""

    device: torch.device
    work: Path
    """Scratch folder for run folders and rendezvous files (not OUT: OUT comes back whole
    from a lent machine, which takes a few small files only)."""
    log: Callable[[str], None]
    steps: int = 2
    """Timed optimizer steps per measurement."""
    facts: dict = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def sizes(self) -> tuple[str, ...]:
        """Model sizes of the step stages: the paper's on a GPU, the laptop model on a CPU."""
        return ("124m", "470m") if self.on_gpu else ("tiny",)


class Skipped(Exception):
    """A stage that does not apply here (its message says why)."""


# -- configurations and batches ---------------------------------------------------------


def size_config(size: str) -> RunConfig:
    """The paper's recipe at this model size; `tiny` is the laptop model, for the rehearsal."""
    paper = load_sweep("sweeps/paper.yaml").base.replace(progress_bar=False, loggers=())
    if size == "470m":
        return paper
    if size == "124m":  # GPT-2 small's shape with our blocks, the paper's vocabulary and recipe
        return paper.replace(
            n_layers=12, d_model=768, n_heads=12, ffn_hidden=2048, tie_embeddings=True
        )
    if size == "tiny":
        tiny = load_sweep("sweeps/tiny.yaml").base
        return paper.replace(
            **{f: getattr(tiny.model, f) for f in ("vocab_size", "n_layers", "d_model", "n_heads")},
            ffn_hidden=tiny.model.ffn_hidden,
            seq_len=tiny.model.seq_len,
            batch_size=16,
            micro_batch_size=8,
        )
    raise ValueError(f"unknown size {size!r}; choose 124m, 470m or tiny")


def synthetic_special(vocab_size: int) -> SpecialTokens:
    """The top three ids are pad, bos and mask (as in paper.yaml's shards)."""
    return SpecialTokens(pad=vocab_size - 3, bos=vocab_size - 2, mask=vocab_size - 1, eos=0)


def synthetic_batches(config: RunConfig, n: int, device: torch.device, rows: int | None = None):
    """n batches of uniform token ids below the special ids, on `device`."""
    V = config.model.vocab_size
    generator = torch.Generator().manual_seed(0)
    shape = (rows or config.train.batch_size, config.model.seq_len)
    return [torch.randint(1, V - 3, shape, generator=generator).to(device) for _ in range(n)]


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# -- the stages -------------------------------------------------------------------------


def environment(ctx: Context) -> dict:
    """Versions, devices, and the bf16 matmul peak measured here (the MFU stages' ceiling)."""
    import lightning

    from .common import machine

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": machine()["cpu"],
        "cpu_count": os.cpu_count(),
        "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "devices": [],
    }
    for index in range(info["device_count"]):
        props = torch.cuda.get_device_properties(index)
        info["devices"].append(
            {
                "name": props.name,
                "memory_gb": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
            }
        )
    if ctx.on_gpu:
        info["sdpa_enabled"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
    name = torch.cuda.get_device_name(ctx.device) if ctx.on_gpu else "cpu"
    of, nominal = next(((k, v) for k, v in NOMINAL_BF16_PEAK if k in name), (None, None))
    # On a CPU a bf16 matmul is slow and its "peak" means little: a small one keeps the
    # rehearsal to seconds.
    measured = matmul_peak(8192 if ctx.on_gpu else 128, dtype=torch.bfloat16, device=ctx.device)
    info.update(
        device=name,
        nominal_bf16_peak_flops=nominal,
        nominal_peak_of=of,
        measured_bf16_matmul_peak_flops=measured,
    )
    ctx.facts.update(nominal=nominal, measured=measured)
    memory = f", {info['devices'][0]['memory_gb']} GB" if info["devices"] else ""
    info["summary"] = (
        f"{name}{memory}; torch {torch.__version__}, CUDA {info['cuda']}, cuDNN {info['cudnn']}; "
        f"bf16 matmul {measured / 1e12:.1f} TFLOP/s measured"
        + (f" ({measured / nominal:.0%} of nominal)" if nominal else "")
    )
    return info


SDPA_OPS = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "_scaled_dot_product_efficient_attention": "mem_efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_attention_math": "math",
}


def sdpa_kernels(ctx: Context) -> dict:
    """Which attention kernel SDPA runs, forward and backward, for an AR, an MD and a mixed
    micro-batch of one block at the first size's width (from the profiler's op and kernel names)."""
    from torch.profiler import ProfilerActivity, profile

    config = size_config(ctx.sizes[0]).replace(n_layers=1)
    micro = config.train.micro_batch_size or config.train.batch_size
    torch.manual_seed(0)
    model = Transformer(config.model).to(ctx.device)
    (tokens,) = synthetic_batches(config, 1, ctx.device, rows=micro)
    per_row = torch.tensor([CAUSAL, BIDIRECTIONAL] * (micro // 2), device=ctx.device)
    modes = {"ar": CAUSAL, "md": BIDIRECTIONAL, "mixed": per_row}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.on_gpu else [])
    sync = device_sync(ctx.device)
    result = {"shape": f"{micro} x {config.model.seq_len}, d_model {config.model.d_model}"}

    def forward_backward(prefix):
        with autocast(ctx.device):
            loss = model.features(tokens, prefix).float().square().mean()
        loss.backward()
        sync()

    for mode, prefix in modes.items():
        forward_backward(prefix)  # warm-up: kernel selection and autotuning outside the trace
        with profile(activities=activities) as trace:
            forward_backward(prefix)
        names = {event.name for event in trace.events()}
        ops = sorted(n for n in names if n.removeprefix("aten::") in SDPA_OPS)
        kernels = sorted(
            n[:120]
            for n in names
            if ctx.on_gpu
            and any(k in n.lower() for k in ("flash", "fmha", "attention", "attn", "cudnn", "sdpa"))
            and not n.startswith("aten::")
        )
        result[mode] = {
            "backend": sorted({SDPA_OPS[o.removeprefix("aten::")] for o in ops}),
            "ops": ops,
            "kernels": kernels,
        }
    result["summary"] = "; ".join(
        f"{mode}: {', '.join(result[mode]['backend']) or 'no SDPA op seen'}" for mode in modes
    )
    return result


def sync_census(ctx: Context) -> dict:
    """What in one optimizer step would make the host wait, with 1 and with 4 micro-batches:
    the census of dualsweep's own calls (benchmarks/sync_census.py) and, on a GPU, every
    synchronising CUDA call torch reports (`torch.cuda.set_sync_debug_mode`)."""
    base = load_sweep(SMOKE_SWEEP).base.replace(batch_size=16, progress_bar=False, loggers=())
    special = synthetic_special(base.model.vocab_size)
    (batch,) = synthetic_batches(base, 1, ctx.device)
    result, lines = {}, []
    for alpha, allocation in ((0.5, "step"), (0.3, "sequence")):
        counts = {}
        for micro in (16, 4):
            config = base.replace(mix_allocation=allocation, micro_batch_size=micro)
            loop = bare_loop(config, special, alpha, device=ctx.device)
            loop.train_step(batch)  # warm-up: optimizer states, kernel selection
            with SyncCensus() as census:
                loop.train_step(batch)
            entry = census.census.as_dict()
            if ctx.on_gpu:
                entry["cuda_syncs"], entry["cuda_sync_places"] = _cuda_syncs(loop, batch)
            counts[16 // micro] = entry
        key = f"alpha {alpha:g} {allocation}"
        result[key] = {f"{n} micro-batches": c for n, c in counts.items()}
        per_micro_batch = {
            k: counts[4][k] - counts[1][k]
            for k in (
                "constructions",
                "blocking_copies",
                "async_copies",
                "host_reads",
                "cuda_syncs",
            )
            if k in counts[1]
        }
        result[key]["added_by_3_more_micro_batches"] = per_micro_batch
        blocking = sum(counts[4][k] for k in ("constructions", "blocking_copies", "host_reads"))
        lines.append(
            f"{key}: {blocking} blocking, {counts[4]['async_copies']} async per step"
            + (f", {counts[4]['cuda_syncs']} CUDA syncs" if ctx.on_gpu else "")
            + f"; +{sum(per_micro_batch.values())} for 3 more micro-batches"
        )
    result["summary"] = "; ".join(lines)
    return result


def _cuda_syncs(loop, batch) -> tuple[int, dict]:
    """Synchronising CUDA calls of one step, as `set_sync_debug_mode("warn")` reports them."""
    places: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop.train_step(batch)
            torch.cuda.synchronize()  # the check's own wait: not the step's
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            place = f"{Path(w.filename).name}:{w.lineno}"
            places[place] = places.get(place, 0) + 1
    return sum(places.values()), places


def interrupt_after(step: int):
    """A Lightning callback that stops training like a Ctrl-C once step `step` is done."""
    import lightning as L

    class InterruptAfter(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if int(batch["step"]) + 1 == step:
                raise KeyboardInterrupt

    return InterruptAfter()


def lightning_smoke(ctx: Context) -> dict:
    """`dualsweep train` on the smoke model at alpha 1/2 through Lightning on the device (bf16
    on a GPU), with held-out evaluation and checkpoints; then the same run interrupted after
    step 24 and resumed from its step-16 checkpoint with `--resume`: its curve must equal the
    uninterrupted run's."""
    import pandas as pd

    from dualsweep.cli import main as cli
    from dualsweep.schema import CHECKPOINT_FILE, CURVE_FILE, SUMMARY_FILE
    from dualsweep.training import train

    precision = "bf16-mixed" if ctx.on_gpu else "32"
    overrides = {
        "token_budget": 16 * 64 * 48,  # 48 steps of the smoke model's 16 x 64 tokens
        "checkpoint_interval": 16,
        "eval_interval": 16,
        "device": ctx.device.type,
        "precision": precision,
        "progress_bar": False,
        "threads": 0 if ctx.on_gpu else 1,
    }
    argv = ["--debug", "train", "--config", SMOKE_SWEEP, "--alpha", "1/2", "--repetitions", "4"]
    argv += [f"--set={k}={v}" for k, v in overrides.items()]
    whole, parted = ctx.work / "smoke-whole", ctx.work / "smoke-resumed"
    for folder in (whole, parted):  # an earlier check's folders: start clean
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    if (code := cli([*argv, "--out", str(whole), "--force"])) != 0:
        raise RuntimeError(f"dualsweep train exited {code} (see the log above)")
    whole_s = time.perf_counter() - started

    from dualsweep.config import load_run_config

    config = load_run_config(SMOKE_SWEEP, {"alpha": "1/2", "repetitions": "4", **overrides})
    with contextlib.suppress(KeyboardInterrupt):  # the interruption is the point
        train(config, parted, callbacks=[interrupt_after(24)], log=ctx.log)
    interrupted = pd.read_parquet(parted / SUMMARY_FILE).iloc[0]
    if not (parted / CHECKPOINT_FILE).is_file():
        raise RuntimeError(f"no checkpoint left in {parted} after the interruption")
    checkpoint_mb = (parted / CHECKPOINT_FILE).stat().st_size / 2**20
    checkpoint = torch.load(parted / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    if (code := cli([*argv, "--out", str(parted), "--resume"])) != 0:
        raise RuntimeError(f"dualsweep train --resume exited {code} (see the log above)")

    timing = ["tokens_per_s", "elapsed_s"]
    a, b = (pd.read_parquet(d / CURVE_FILE).drop(columns=timing) for d in (whole, parted))
    numbers = a.select_dtypes("number").columns
    same_layout = a.shape == b.shape and a.isna().equals(b.isna())
    difference = float((a[numbers] - b[numbers]).abs().max().max()) if same_layout else None
    summary = pd.read_parquet(whole / SUMMARY_FILE).iloc[0]
    # On a CPU the resumed run is bit-identical; a GPU's attention backward may add in another
    # order (atomics), so there a difference of rounding size is allowed, and reported.
    tolerance = 1e-2 if ctx.on_gpu else 0.0
    equal = difference is not None and difference <= tolerance
    result = {
        "steps": int(summary["steps"]),
        "accelerator": summary["accelerator"],
        "precision": summary["precision_used"],
        "final_held_out_ar_loss": float(summary["final_held_out_ar_loss"]),
        "final_held_out_md_elbo": float(summary["final_held_out_md_elbo"]),
        "tokens_per_s": float(summary["tokens_per_s"]),
        "uninterrupted_run_s": whole_s,
        "interrupted_at_steps": int(interrupted["steps"]),
        "resumed_from_step": int(checkpoint["steps_done"]),
        "checkpoint_mb": checkpoint_mb,
        "resumed_curve_max_abs_difference": difference,
        "resumed_curve_bitwise_equal": difference == 0.0,
        "tolerance": tolerance,
        "resume_equals_uninterrupted": equal,
    }
    result["summary"] = (
        f"{result['steps']} steps in {result['precision']} on {result['accelerator']}, held-out AR "
        f"{result['final_held_out_ar_loss']:.3f}, MD {result['final_held_out_md_elbo']:.3f}; "
        f"resumed from step {result['resumed_from_step']}: max curve difference {difference}"
        + (" (bitwise equal)" if difference == 0.0 else "")
    )
    if not equal:
        raise AssertionError(result["summary"] + f", above the tolerance {tolerance}")
    return result


def data_parallel(ctx: Context) -> dict:
    """One step on 2 data-parallel workers (NCCL on 2 GPUs, gloo on the CPU), each starting
    from different weights on the device of its local rank: after `start_identical` and the
    gradient sum, every worker holds the gradient one process computes on the whole batch."""
    import torch.multiprocessing as mp

    if ctx.on_gpu and torch.cuda.device_count() < 2:
        raise Skipped(f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    folder = ctx.work / "data-parallel"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    backend = "nccl" if ctx.on_gpu else "gloo"
    spawned = mp.start_processes(
        _data_parallel_worker,
        args=(2, backend, str(folder)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 180
    while not spawned.join(timeout=5):
        if time.monotonic() > deadline:  # a hung collective: end it, fail the stage
            for process in spawned.processes:
                process.kill()
            raise TimeoutError(f"the 2 {backend} workers did not finish within 180 s")
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]
    whole = _data_parallel_step(DATA_PARALLEL_ALPHA, None, ctx.device, seed=0)
    rtol, atol = (1e-3, 1e-5) if ctx.on_gpu else (1e-5, 1e-7)
    worst, largest = 0.0, 0.0
    for name, expected in whole["grads"].items():
        if not torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name]):
            raise AssertionError(f"workers hold different gradients of {name}")
        got = ranks[0]["grads"][name]
        worst = max(worst, float((got - expected).abs().max()))
        largest = max(largest, float(expected.abs().max()))
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, msg=name)
    result = {
        "backend": backend,
        "alpha": DATA_PARALLEL_ALPHA,
        "worker_devices": [r["device"] for r in ranks],
        "worker_rows": [list(r["rows"]) for r in ranks],
        "start_weights_differed": ranks[1]["differed_before_broadcast"],
        "max_abs_gradient_difference": worst,
        "max_abs_gradient": largest,
        "tolerance": {"rtol": rtol, "atol": atol},
    }
    result["summary"] = (
        f"2 {backend} workers on {', '.join(result['worker_devices'])}, rows (AR, MD) "
        f"{result['worker_rows']}: gradients equal each other and one process's "
        f"(max difference {worst:.1e}, largest gradient {largest:.1e})"
    )
    return result


DATA_PARALLEL_ALPHA = 0.5


def _data_parallel_step(alpha, workers, device, seed) -> dict:
    """One step of the smoke model on a fixed batch: the gradient and this worker's rows."""
    from dualsweep.objectives import objective_pair
    from dualsweep.training.distributed import SINGLE_WORKER, start_identical
    from dualsweep.training.step import train_step

    config = load_sweep(SMOKE_SWEEP).base.replace(alpha=alpha, batch_size=8, micro_batch_size=2)
    torch.manual_seed(seed)  # each worker its own: start_identical must make them equal
    model = Transformer(config.model)
    reference = next(model.parameters()).detach().clone()
    workers = workers or SINGLE_WORKER
    start_identical(model, device, workers)
    differed = not torch.equal(reference, next(model.parameters()).detach().cpu())
    (tokens,) = synthetic_batches(config, 1, device)
    recorder = GradientRecorder(model)
    with autocast(device):
        stats = train_step(
            model,
            [recorder],
            tokens,
            step=5,
            total_steps=config.steps,
            config=config,
            pair=objective_pair(config.objective.objectives),
            special=synthetic_special(config.model.vocab_size),
            generator=torch.Generator(device=device),
            workers=workers,
        )
    return {
        "grads": {k: v.cpu() for k, v in recorder.grads.items()},
        "rows": stats.rows,
        "device": str(device),
        "differed_before_broadcast": differed,
    }


def _data_parallel_worker(rank: int, world: int, backend: str, folder: str) -> None:
    """A spawned worker: joins the group, finds its device as `train()` does, steps once."""
    import torch.distributed as dist

    from dualsweep.training.distributed import Workers, training_device

    os.environ["LOCAL_RANK"] = str(rank)  # what torchrun and Ray Train set
    dist.init_process_group(
        backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world
    )
    try:
        workers = Workers.current()
        on_gpu = backend == "nccl"
        device = training_device("gpu" if on_gpu else "cpu", workers, torch.cuda.device_count())
        if on_gpu:
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(1)
        step = _data_parallel_step(DATA_PARALLEL_ALPHA, workers, device, seed=rank)
        torch.save(step, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def step_speed(size: str) -> Callable[[Context], dict]:
    """The stage measuring the eager training step at `size`."""

    def stage(ctx: Context) -> dict:
        return _step_speed(ctx, size)

    stage.__doc__ = f"Tokens/s and MFU of the eager {size} step (alpha 1/2 and 1), peak memory."
    return stage


def compiled_speed(size: str) -> Callable[[Context], dict]:
    """The stage measuring the compiled training step at `size` against the eager one."""

    def stage(ctx: Context) -> dict:
        return _compiled_speed(ctx, size)

    stage.__doc__ = f"Tokens/s of the {size} step with compiled blocks over eager; compile time."
    return stage


ALPHAS = {"alpha_half": 0.5, "alpha_one": 1.0, "compiled": 0.5, "eager": 0.5}
"""The alpha each measured loop trains at (its causal rows count their attention at half)."""


def flops_per_token(config: RunConfig, key: str) -> float:
    """Training FLOPs per token of the loop `key` measures, as `dualsweep plan` counts them."""
    return training_flops_per_token(config.model, causal_share(config.replace(alpha=ALPHAS[key])))


def _rates(ctx: Context, config: RunConfig, step_times: dict[str, list[float]]) -> dict:
    """tokens/s, training FLOP/s and their share of the peaks, per measured loop."""
    tokens = config.train.batch_size * config.model.seq_len
    out = {"tokens_per_s": {}, "flops_per_token": {}, "mfu": {}, "of_measured_peak": {}}
    for key, times in step_times.items():
        rate = tokens / statistics.median(times)
        out["tokens_per_s"][key] = rate
        out["flops_per_token"][key] = flops_per_token(config, key)
        flops = rate * out["flops_per_token"][key]
        nominal, measured = ctx.facts.get("nominal"), ctx.facts.get("measured")
        out["mfu"][key] = flops / nominal if nominal else None
        out["of_measured_peak"][key] = flops / measured if measured else None
    return out


def _shape(config: RunConfig, size: str) -> dict:
    return {
        "size": size,
        "tokens_per_step": config.train.batch_size * config.model.seq_len,
        "micro_batch": config.train.micro_batch_size or config.train.batch_size,
        "seq_len": config.model.seq_len,
        "optimizer": config.optim.optimizer,
    }


def _prepared(ctx: Context, size: str):
    """The size's config, special ids, device sync and `ctx.steps` batches, memory freed."""
    config = size_config(size)
    batches = synthetic_batches(config, ctx.steps, ctx.device)
    _free(ctx.device)
    return config, synthetic_special(config.model.vocab_size), device_sync(ctx.device), batches


def _step_speed(ctx: Context, size: str) -> dict:
    config, special, sync, batches = _prepared(ctx, size)
    half = bare_loop(config, special, 0.5, device=ctx.device)
    pure = bare_loop(config, special, 1.0, device=ctx.device)
    result = {**_shape(config, size), "parameters": half.model.num_parameters()}
    timed_steps(half.train_step, batches[:1], sync)  # warm-up: allocations, autotuning
    timed_steps(pure.train_step, batches[:1], sync)
    half_times, pure_times = alternating_steps(half.train_step, pure.train_step, batches, 1, sync)
    result.update(_rates(ctx, config, {"alpha_half": half_times, "alpha_one": pure_times}))
    result["dual_overhead"] = statistics.median(pure_times) / statistics.median(half_times)
    # At equal FLOPs: alpha 1/2 does more attention work per token (its MD half attends
    # bidirectionally), so its FLOP/s, not its tokens/s, says whether mixing costs anything.
    result["dual_overhead_equal_flops"] = (
        result["dual_overhead"]
        * result["flops_per_token"]["alpha_half"]
        / result["flops_per_token"]["alpha_one"]
    )
    if ctx.on_gpu:  # both models and their optimizer states resident: a bound for one
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    del half, pure
    if ctx.on_gpu:  # one model: its step's peak with whole and with chunked logits
        result["step_peak_memory_gb"] = {
            f"chunk_{chunk}": _step_peak_memory_gb(ctx, config, special, batches[0], chunk)
            for chunk in (0, LOSS_CHUNK_TOKENS)
        }
    if size != "470m":  # the reference's T x T scores would not fit beside a 470M model
        torch.manual_seed(0)
        matched = config.replace(ffn_hidden=matched_ffn(config))
        ours = PlainLoop(Transformer(matched.model).to(ctx.device), matched)
        reference = reference_loop(config, ctx.device)
        for step in (ours.train_step, reference.train_step):
            timed_steps(step, batches[:1], sync)
        ours_times, reference_times = alternating_steps(
            ours.train_step, reference.train_step, batches, 1, sync
        )
        result["model_speed"] = statistics.median(reference_times) / statistics.median(ours_times)
    mfu = result["mfu"]["alpha_half"]
    share = (
        f"MFU {mfu:.1%}"
        if mfu is not None
        else (f"{result['of_measured_peak']['alpha_half']:.1%} of the measured matmul peak")
    )
    result["summary"] = (
        f"{result['parameters'] / 1e6:.1f}M parameters: "
        f"{result['tokens_per_s']['alpha_half']:,.0f} tokens/s at alpha 1/2 ({share}), "
        f"dual_overhead {result['dual_overhead']:.3f} ({result['dual_overhead_equal_flops']:.3f} "
        "at equal FLOPs)"
        + (f", peak {result['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in result else "")
    )
    return result


def _step_peak_memory_gb(ctx, config, special, batch, chunk_tokens: int) -> float:
    """Peak GPU memory of one training step (alpha 1/2) of a fresh model, after a warm-up
    step on the same batch has created the optimizer states."""
    _free(ctx.device)
    loop = bare_loop(
        config.replace(loss_chunk_tokens=chunk_tokens), special, 0.5, device=ctx.device
    )
    sync = device_sync(ctx.device)
    timed_steps(loop.train_step, [batch], sync)
    torch.cuda.reset_peak_memory_stats()
    timed_steps(loop.train_step, [batch], sync)
    peak = torch.cuda.max_memory_allocated() / 2**30
    del loop
    _free(ctx.device)
    return peak


def _compiled_speed(ctx: Context, size: str) -> dict:
    config, special, sync, batches = _prepared(ctx, size)
    torch._dynamo.reset()  # compile this size from scratch, not from an earlier size's graphs
    eager = bare_loop(config, special, 0.5, device=ctx.device)
    compiled = bare_loop(config, special, 0.5, compile_model=True, device=ctx.device)
    timed_steps(eager.train_step, batches[:1], sync)
    started = time.perf_counter()
    timed_steps(compiled.train_step, batches[:1], sync)
    compile_s = time.perf_counter() - started
    compiled_times, eager_times = alternating_steps(
        compiled.train_step, eager.train_step, batches, 1, sync
    )
    result = {**_shape(config, size), "compile_and_first_step_s": compile_s}
    result.update(_rates(ctx, config, {"compiled": compiled_times, "eager": eager_times}))
    result["compile"] = statistics.median(eager_times) / statistics.median(compiled_times)
    mfu = result["mfu"]["compiled"]
    result["summary"] = (
        f"compiled {result['tokens_per_s']['compiled']:,.0f} tokens/s at alpha 1/2"
        + (f" (MFU {mfu:.1%})" if mfu is not None else "")
        + f", {result['compile']:.3f}x eager; compile and first step {compile_s:.0f} s"
    )
    return result


def format_error(error: BaseException) -> dict:
    """A failed stage's record: the error's line and the end of its traceback."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return {"error": f"{type(error).__name__}: {error}", "traceback": "".join(lines[-6:])}
