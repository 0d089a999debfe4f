"""The training loops and timers the benchmarks measure with, on CPU or GPU.

What belongs here: the benchmark config and its batches, the bare loop around the one
training step (`dualsweep.training.step.train_step`), the plain reference loop, timing a
loop's steps, and the matmul peak. The ratios built from them are in `benchmarks.training`
(on this machine) and `benchmarks.gpu_stages` (the GPU check); a loop here never re-implements the
training step, which would measure something else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from dualsweep.config import RunConfig, load_sweep
from dualsweep.model import Transformer
from dualsweep.objectives import objective_pair
from dualsweep.training.optim import build_optimizers
from dualsweep.training.step import train_step

BENCH_SWEEP = "sweeps/tiny.yaml"  # the laptop-scale model the tiny sweep trains


def bench_config() -> RunConfig:
    return load_sweep(BENCH_SWEEP).base.replace(progress_bar=False, loggers=())


def batches(config: RunConfig, n: int) -> tuple[list[torch.Tensor], object]:
    from dualsweep.data.datamodule import DualSweepData

    data = DualSweepData(config, log=lambda m: None)
    data.setup()
    loader = iter(data.train_dataloader())
    return [next(loader)["tokens"] for _ in range(n)], data


def timed_steps(
    step: Callable[[torch.Tensor], None],
    tokens_list: list[torch.Tensor],
    sync: Callable[[], None] = lambda: None,
) -> list[float]:
    """Run `step` on each batch; return each step's seconds (`sync` waits for an accelerator)."""
    times = []
    for tokens in tokens_list:
        sync()
        start = time.perf_counter()
        step(tokens)
        sync()
        times.append(time.perf_counter() - start)
    return times


def steady_tokens_per_s(step_times: list[float], tokens_per_step: int) -> float:
    """Throughput at the median step time: a step that a shared machine now and then slows
    down for reasons outside the loop (another process, a page fault) is not charged to it."""
    return tokens_per_step / float(np.median(step_times))


def autocast(device: torch.device):
    """bf16 autocast on CUDA (what `precision: auto` trains with there), nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


class BareLoop:
    """The training step of DualObjectiveModule (`dualsweep.training.step.train_step`, the
    same function) without Lightning, at the config's alpha replaced by `alpha`. The model and
    the batches go to the model's device; on CUDA the step runs under bf16 autocast, as
    Lightning's bf16-mixed precision runs the module's step."""

    def __init__(self, config: RunConfig, model: torch.nn.Module, special, alpha: float):
        self.config, self.model, self.special = config.replace(alpha=alpha), model, special
        self.device = next(model.parameters()).device
        self.optimizers = build_optimizers(model, config.optim)
        self.generator = torch.Generator(device=self.device)
        self.pair = objective_pair(config.objective.objectives)
        self.step = 0
        self.total_steps = config.steps
        self.step_times: list[float] = []  # of the last run

    def train_step(self, tokens: torch.Tensor) -> None:
        tokens = tokens.to(self.device, non_blocking=True)
        with autocast(self.device):
            train_step(
                self.model,
                self.optimizers,
                tokens,
                step=self.step % self.total_steps,
                total_steps=self.total_steps,
                config=self.config,
                pair=self.pair,
                special=self.special,
                generator=self.generator,
            )
        self.step += 1

    def run(self, tokens_list: list[torch.Tensor]) -> float:
        """Train on these batches; return tokens/s at the median step time."""
        self.step_times = timed_steps(self.train_step, tokens_list)
        return steady_tokens_per_s(self.step_times, tokens_list[0].numel())


class GradientRecorder:
    """An "optimizer" that keeps the gradient it is asked to step with and changes nothing:
    what a step computed, for comparing steps (one process against data-parallel workers)."""

    def __init__(self, model: torch.nn.Module):
        self.named = list(model.named_parameters())
        self.param_groups = [{"params": [p for _, p in self.named], "lr": 0.0, "initial_lr": 1.0}]
        self.grads: dict[str, torch.Tensor] = {}

    def step(self) -> None:
        self.grads = {name: p.grad.detach().clone() for name, p in self.named}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, p in self.named:
            p.grad = None


class PlainLoop:
    """The plainest training step for any causal LM: next-token cross-entropy, AdamW.

    model_speed runs both models through this same step, so that what it compares is the
    models; what our training recipe adds on top (the objective's draws, clipping, our
    optimisers) is reported beside it."""

    def __init__(self, model: torch.nn.Module, config: RunConfig):
        self.model = model
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
        self.micro = config.train.micro_batch_size

    def train_step(self, tokens: torch.Tensor) -> None:
        tokens = tokens.to(self.device, non_blocking=True)
        for part in tokens.split(self.micro or len(tokens)):
            with autocast(self.device):
                logits = self.model(part)
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]).float(), part[:, 1:].reshape(-1)
                )
            (loss * (len(part) / len(tokens))).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, tokens_list: list[torch.Tensor]) -> float:
        return steady_tokens_per_s(
            timed_steps(self.train_step, tokens_list), tokens_list[0].numel()
        )


def reference_loop(config: RunConfig, device: str | torch.device = "cpu") -> PlainLoop:
    """The minimal reference GPT of benchmarks/reference_gpt.py at the config's shape."""
    from .reference_gpt import ReferenceGPT

    m = config.model
    torch.manual_seed(0)
    model = ReferenceGPT(m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.seq_len)
    return PlainLoop(model.to(device), config)


def bare_loop(config, special, alpha, compile_model=False, device="cpu") -> BareLoop:
    """A BareLoop at `alpha` on a fresh model (seed 0) on `device`, compiled if asked (as
    `train.compile` compiles training: each block, and the head with the cross-entropy)."""
    torch.manual_seed(0)
    model = Transformer(config.model).to(device)
    if compile_model:
        model.compile_blocks()
        config = config.replace(compile=True)
    return BareLoop(config, model, special, alpha)


def device_sync(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work (nothing to wait for on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def matmul_peak(
    size: int = 1024,
    repeats: int = 20,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> float:
    """FLOP/s of square matmuls (best of 5 timings), with the current thread count on a CPU:
    the machine's practical peak for that dtype."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = device_sync(device)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best
