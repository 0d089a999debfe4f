"""Peak memory of one training step, with the whole-vocabulary logits and with the chunked
cross-entropy (`train.loss_chunk_tokens`), at a scaled-down paper shape on the CPU.

The paper's vocabulary (51,200) is kept, since the logits' size is what is measured, and the
model is cut to 2 layers of width 256 on micro-batches of 4 x 1,024 tokens: the whole logits
are then 4 x 1,024 x 51,200 float32, 0.84 GB, against 0.08 GB of weights.

Each side runs in a fresh process: build the model and optimisers, take one warm-up step
(the optimiser states exist after it), reset the kernel's peak-RSS counter
(`/proc/self/clear_refs`), take one step and read the peak (`VmHWM`) over the resident size
before it. Large tensors are mmapped by the allocator and returned at free, so the peak is
the step's own. `python -m benchmarks.memory [--chunk 1024]` prints one side's line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import Ratio, memory_kb

CHUNK_TOKENS = 1024
RESULT_PREFIX = "MEMORY-RESULT "


def scaled_config(chunk_tokens: int):
    """The paper's recipe and vocabulary on a 2-layer, width-256 model, micro-batch 4 x 1,024."""
    from dualsweep.config import load_sweep

    paper = load_sweep(Path(__file__).resolve().parent.parent / "sweeps" / "paper.yaml").base
    return paper.replace(
        n_layers=2,
        d_model=256,
        n_heads=4,
        ffn_hidden=704,
        seq_len=1024,
        batch_size=4,
        micro_batch_size=4,
        device="cpu",
        precision="32",
        loss_chunk_tokens=chunk_tokens,
        progress_bar=False,
        loggers=(),
    )


def one_side(chunk_tokens: int) -> dict:
    """This process: the peak memory and time of one training step (after a warm-up step)."""
    import torch

    from .gpu_stages import synthetic_batches, synthetic_special
    from .loops import bare_loop

    config = scaled_config(chunk_tokens)
    warm, measured = synthetic_batches(config, 2, torch.device("cpu"))
    special = synthetic_special(config.model.vocab_size)
    loop = bare_loop(config, special, 0.5)
    loop.train_step(warm)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = memory_kb("VmRSS")
    started = time.perf_counter()
    loop.train_step(measured)
    seconds = time.perf_counter() - started
    peak = memory_kb("VmHWM")
    V, T = config.model.vocab_size, config.model.seq_len
    return {
        "chunk_tokens": chunk_tokens,
        "step_peak_mb": (peak - before) / 1024,
        "resident_before_mb": before / 1024,
        "step_s": seconds,
        "whole_logits_mb": config.train.micro_batch_size * T * V * 4 / 2**20,
    }


def _in_child(chunk_tokens: int) -> dict:
    command = [sys.executable, "-m", f"{__package__}.memory", "--chunk", str(chunk_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory benchmark failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def step_memory(processes: int = 2) -> Ratio:
    """Peak step memory, chunked over whole logits, each side in `processes` fresh processes
    (alternating); the ratio of the medians, the interval over the processes' pairs."""
    whole, chunked = [], []
    for _ in range(processes):
        whole.append(_in_child(0))
        chunked.append(_in_child(CHUNK_TOKENS))
    ratios = [c["step_peak_mb"] / w["step_peak_mb"] for w, c in zip(whole, chunked, strict=True)]
    whole_mb = statistics.median(r["step_peak_mb"] for r in whole)
    chunked_mb = statistics.median(r["step_peak_mb"] for r in chunked)
    config = scaled_config(CHUNK_TOKENS)
    m = config.model
    return Ratio(
        name="step_memory",
        what=(
            f"peak memory of one training step, logits in chunks of {CHUNK_TOKENS} positions over "
            f"whole (vocab {m.vocab_size}, micro-batch {config.train.micro_batch_size} x {m.seq_len}, "
            f"d_model {m.d_model}, {m.n_layers} layers; CPU, peak RSS)"
        ),
        numerator="chunked",
        denominator="whole logits",
        ratio=chunked_mb / whole_mb,
        spread=(min(ratios), max(ratios)),
        target="<= 0.5",
        details={
            "whole_step_peak_mb": whole_mb,
            "chunked_step_peak_mb": chunked_mb,
            "whole_logits_mb": whole[0]["whole_logits_mb"],
            "resident_before_mb": statistics.median(r["resident_before_mb"] for r in whole),
            "step_time_chunked_over_whole": statistics.median(r["step_s"] for r in chunked)
            / statistics.median(r["step_s"] for r in whole),
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--chunk", type=int, default=CHUNK_TOKENS, help="loss_chunk_tokens (0: whole logits)"
    )
    args = parser.parse_args(argv)
    print(RESULT_PREFIX + json.dumps(one_side(args.chunk)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
