"""The GPU check: the training benchmarks on one GPU at ~124M and at the paper's 470M, with MFU.

python -m benchmarks.gpu [--sizes 124m 470m] [--steps 4] [--repetitions 2] [--no-compile]

For each size, one optimiser step is a whole batch of the paper's recipe (256 x 2,048 tokens,
micro-batches of 8, bf16 autocast, the paper sweep's optimisers), on synthetic tokens: the
data path is measured by `make bench` and is not what a GPU changes. Reported per size:

- MFU: training FLOP/s (6N per token plus attention, as `dualsweep plan` counts them) over
  the GPU's nominal dense bf16 peak, at alpha = 1/2 and at alpha = 1; and the same FLOP/s
  over a bf16 matmul peak measured here in the same run;
- dual_overhead: tokens/s at alpha = 1/2 over alpha = 1, the two stepping alternately;
- compile: tokens/s with torch.compile over eager at alpha = 1/2 (compile time in details);
- model_speed (124m only): our model over the reference GPT of benchmarks/reference_gpt.py at
  the same width, depth, heads, vocabulary and sequence length and about the same parameter
  count, both through the same plain AR step (its attention materialises T x T scores, which at 470M would not
  fit beside the rest);
- step peak memory: one training step of one model (after a warm-up step), with the whole
  (micro-batch, seq_len, vocab) logits and with `train.loss_chunk_tokens` = 4,096.

Writes benchmarks/results/gpu.json; `make bench` then copies its table into RESULTS.md.
`--device cpu --sizes tiny` runs the same code on the CPU, to check the script itself. It
needs torch, Lightning, PyYAML and numpy, not Ray: from a checkout, `PYTHONPATH=.` is enough.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS_DIR, alternating_steps, machine
from benchmarks.loops import (
    PlainLoop,
    bare_loop,
    device_sync,
    matmul_peak,
    reference_loop,
    timed_steps,
)
from benchmarks.training import matched_ffn
from dualsweep.config import RunConfig, load_sweep
from dualsweep.data.special import SpecialTokens
from dualsweep.model import Transformer
from dualsweep.sweep.plan import H100_BF16_PEAK_FLOPS, training_flops_per_token

RESULT_FILE = RESULTS_DIR / "gpu.json"
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


def size_config(size: str) -> RunConfig:
    """The paper's recipe at this model size; `tiny` is the laptop model, for checking on CPU."""
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


def synthetic_batches(config: RunConfig, n: int, device: torch.device):
    """n batches of uniform token ids; the top three ids are pad, bos and mask (as in paper.yaml)."""
    V = config.model.vocab_size
    special = SpecialTokens(pad=V - 3, bos=V - 2, mask=V - 1, eos=0)
    generator = torch.Generator().manual_seed(0)
    shape = (config.train.batch_size, config.model.seq_len)
    batches = [torch.randint(1, V - 3, shape, generator=generator).to(device) for _ in range(n)]
    return batches, special


def bench_size(size: str, device: torch.device, steps: int, repetitions: int, compile_: bool):
    config = size_config(size)
    sync = device_sync(device)
    batches, special = synthetic_batches(config, steps, device)
    tokens_per_step = batches[0].numel()
    flops_per_token = training_flops_per_token(config.model)
    result = {
        "size": size,
        "parameters": None,
        "tokens_per_step": tokens_per_step,
        "micro_batch": config.train.micro_batch_size or config.train.batch_size,
        "seq_len": config.model.seq_len,
        "optimizer": config.optim.optimizer,
        "flops_per_token": flops_per_token,
    }

    def rate(step_times: list[float]) -> float:
        return tokens_per_step / statistics.median(step_times)

    if device.type == "cuda":  # this size's peak, not an earlier size's
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()  # compile this size from scratch, not from the last size's graphs
    half = bare_loop(config, special, 0.5, device=device)
    result["parameters"] = half.model.num_parameters()
    pure = bare_loop(config, special, 1.0, device=device)
    timed_steps(half.train_step, batches[:1], sync)  # warm-up: allocations, autotuning
    timed_steps(pure.train_step, batches[:1], sync)
    half_times, pure_times = alternating_steps(
        half.train_step, pure.train_step, batches, repetitions, sync
    )
    result["dual_overhead"] = speed_ratio(half_times, pure_times)
    result["tokens_per_s"] = {"alpha_half": rate(half_times), "alpha_one": rate(pure_times)}
    if device.type == "cuda":  # both models and their optimiser states resident: a bound for one
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    del pure

    if compile_:
        compiled = bare_loop(config, special, 0.5, compile_model=True, device=device)
        start = time.perf_counter()
        timed_steps(compiled.train_step, batches[:1], sync)
        result["compile_and_first_step_s"] = time.perf_counter() - start
        compiled_times, eager_times = alternating_steps(
            compiled.train_step, half.train_step, batches, 1, sync
        )
        result["compile"] = speed_ratio(compiled_times, eager_times)
        result["tokens_per_s"]["alpha_half_compiled"] = rate(compiled_times)
        del compiled
    result["training_flops"] = {k: v * flops_per_token for k, v in result["tokens_per_s"].items()}
    del half
    if device.type == "cuda":  # one model: its step's peak with whole and with chunked logits
        result["step_peak_memory_gb"] = {
            f"chunk_{chunk}": step_peak_memory_gb(config, special, batches, device, chunk)
            for chunk in (0, LOSS_CHUNK_TOKENS)
        }

    if size != "470m":
        torch.manual_seed(0)
        matched = config.replace(ffn_hidden=matched_ffn(config))
        ours = PlainLoop(Transformer(matched.model).to(device), matched)
        reference = reference_loop(config, device)
        for step in (ours.train_step, reference.train_step):
            timed_steps(step, batches[:1], sync)
        ours_times, reference_times = alternating_steps(
            ours.train_step, reference.train_step, batches, 1, sync
        )
        result["model_speed"] = speed_ratio(ours_times, reference_times)
    return result


LOSS_CHUNK_TOKENS = 4096
"""`train.loss_chunk_tokens` of the peak-memory row: 4,096 positions x 51,200 is 0.8 GB of
float32 logits at a time, against 3.4 GB for a whole micro-batch of 8 x 2,048."""


def step_peak_memory_gb(config, special, batches, device, chunk_tokens: int) -> float:
    """Peak GPU memory of one training step (alpha = 1/2) of a fresh model, after a warm-up
    step has created the optimiser states."""
    gc.collect()
    torch.cuda.empty_cache()
    loop = bare_loop(config.replace(loss_chunk_tokens=chunk_tokens), special, 0.5, device=device)
    sync = device_sync(device)
    timed_steps(loop.train_step, batches[:1], sync)
    torch.cuda.reset_peak_memory_stats()
    timed_steps(loop.train_step, batches[1:2], sync)
    peak = torch.cuda.max_memory_allocated() / 2**30
    del loop
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def speed_ratio(times_a: list[float], times_b: list[float]) -> float:
    """Speed of a over speed of b, from their median step times."""
    return statistics.median(times_b) / statistics.median(times_a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", nargs="+", default=["124m", "470m"])
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per measurement")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=RESULT_FILE)
    args = parser.parse_args(argv)
    for size in args.sizes:
        size_config(size)  # an unknown size fails now, not after the first size's minutes
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    matched, nominal = next(((k, v) for k, v in NOMINAL_BF16_PEAK if k in name), (None, None))
    # On a CPU (the dry run of the script) a bf16 matmul is slow and its "peak" means little:
    # a small one keeps the dry run to seconds.
    size = 8192 if device.type == "cuda" else 128
    measured_peak = matmul_peak(size, dtype=torch.bfloat16, device=device)
    report = {
        "machine": machine(),
        "device": name,
        "nominal_bf16_peak_flops": nominal,
        "nominal_peak_of": matched,
        "measured_bf16_matmul_peak_flops": measured_peak,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv),
        "sizes": [],
    }
    print(f"{name}: bf16 matmul peak measured {measured_peak / 1e12:.0f} TFLOP/s", flush=True)
    for size in args.sizes:
        started = time.perf_counter()
        result = bench_size(size, device, args.steps, args.repetitions, not args.no_compile)
        result["bench_s"] = time.perf_counter() - started
        for key, flops in result["training_flops"].items():
            result.setdefault("mfu", {})[key] = flops / nominal if nominal else None
            result.setdefault("of_measured_peak", {})[key] = flops / measured_peak
        report["sizes"].append(result)
        print(format_size(result), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after each size: nothing lost
    print(f"-> {args.out}")
    return 0


def format_size(r: dict) -> str:
    mfu = ", ".join(
        f"{k} {v:.1%}" if v is not None else f"{k} n/a" for k, v in r.get("mfu", {}).items()
    )
    extra = "".join(
        f", {k} {r[k]:.3f}" for k in ("dual_overhead", "compile", "model_speed") if k in r
    )
    return f"{r['size']}: {r['parameters'] / 1e6:.1f}M parameters, MFU {mfu}{extra} ({r['bench_s']:.0f}s)"


def markdown(report: dict) -> list[str]:
    """The GPU section of RESULTS.md, from a gpu.json."""
    nominal = report["nominal_bf16_peak_flops"]
    measured = report["measured_bf16_matmul_peak_flops"]
    over = (
        f"the nominal dense bf16 peak ({nominal / 1e12:g} TFLOP/s)"
        if nominal
        else "the measured matmul peak (no nominal peak is known for this device)"
    )
    lines = [
        f"GPU check: {report['device']}, measured {report['measured_at']} with "
        f"`{report['command']}` (torch {report['machine']['torch']}). MFU is training FLOP/s over "
        f"{over}; the measured bf16 matmul peak was {measured / 1e12:.0f} TFLOP/s. Target: MFU of "
        "at least 40% at 470M.",
        "",
        "| size | parameters | MFU alpha=1/2 | MFU alpha=1 | MFU compiled | dual_overhead | compile | model_speed | peak memory, 2 models | step peak, whole / chunked logits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(r, key):
        value = r.get("mfu" if nominal else "of_measured_peak", {}).get(key)
        return f"{value:.1%}" if value is not None else "-"

    def num(r, key, fmt="{:.3f}"):
        return fmt.format(r[key]) if key in r else "-"

    def step_peaks(r):
        peaks = r.get("step_peak_memory_gb")
        if not peaks:
            return "-"
        return f"{peaks['chunk_0']:.1f} / {peaks[f'chunk_{LOSS_CHUNK_TOKENS}']:.1f} GB"

    for r in report["sizes"]:
        lines.append(
            f"| {r['size']} | {r['parameters'] / 1e6:.1f}M | {pct(r, 'alpha_half')} | {pct(r, 'alpha_one')} | "
            f"{pct(r, 'alpha_half_compiled')} | {num(r, 'dual_overhead')} | {num(r, 'compile')} | "
            f"{num(r, 'model_speed')} | {num(r, 'peak_memory_gb', '{:.1f} GB')} | {step_peaks(r)} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
