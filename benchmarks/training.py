"""Training-speed benchmarks, each a ratio measured in one process on the same machine.

- dual_overhead: tokens/s at alpha = 1/2 over tokens/s at alpha = 1 (same model and batch);
- framework_overhead: time per step through the LightningModule over the same step in a
  bare PyTorch loop;
- model_speed: our model's tokens/s over a minimal reference GPT's (benchmarks/reference_gpt.py);
- hardware_use: achieved training FLOP/s (6N per token plus attention) over the matmul peak
  measured here;
- data_path: tokens/s the data module delivers over tokens/s training consumes;
- compile: tokens/s with torch.compile over eager (after a warm-up that includes compiling).

Training throughputs and step times are taken at each repetition's median step time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.common import Ratio, alternating_steps, interleaved, ratio_of
from dualsweep.config import RunConfig, load_sweep
from dualsweep.model import Transformer
from dualsweep.objectives import objective_pair
from dualsweep.sweep.plan import training_flops_per_token
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
    from benchmarks.reference_gpt import ReferenceGPT

    m = config.model
    torch.manual_seed(0)
    model = ReferenceGPT(m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.seq_len)
    return PlainLoop(model.to(device), config)


def _rates(step_times: tuple[list[float], list[float]], tokens) -> tuple[list[float], list[float]]:
    """Tokens/s from per-repetition median step times."""
    per_step = tokens[0].numel()
    return [per_step / t for t in step_times[0]], [per_step / t for t in step_times[1]]


def _loop(config, special, alpha, compile_model=False, device="cpu") -> BareLoop:
    torch.manual_seed(0)
    model = Transformer(config.model).to(device)
    if compile_model:
        model.compile()
    return BareLoop(config, model, special, alpha)


def dual_overhead(config, tokens, special, repetitions: int) -> Ratio:
    half, pure = _loop(config, special, 0.5), _loop(config, special, 1.0)
    half.run(tokens[:3]), pure.run(tokens[:3])  # warm-up
    a, b = _rates(alternating_steps(half.train_step, pure.train_step, tokens, repetitions), tokens)
    r, spread = ratio_of(a, b)
    return Ratio(
        "dual_overhead",
        "training tokens/s, alpha = 1/2 over alpha = 1",
        "alpha=1/2 tok/s",
        "alpha=1 tok/s",
        r,
        spread,
        ">= 0.97",
        {
            "alpha_half_tokens_per_s": float(np.median(a)),
            "alpha_one_tokens_per_s": float(np.median(b)),
        },
    )


def framework_overhead(config, tokens, special, data, repetitions: int) -> Ratio:
    """Seconds per step through Lightning over seconds per step in the bare loop.

    Each repetition's figure is its median step time: a step on a shared machine now and then
    takes much longer for reasons outside both loops (another process, a page fault), and a
    mean would charge that to whichever loop it landed in. Lightning's step is timed from
    one batch start to the next, so it includes fetching the batch and every hook."""
    import lightning as L

    from dualsweep.training.module import DualObjectiveModule

    n = len(tokens)
    config = config.replace(
        token_budget=(n + 2) * config.train.batch_size * config.model.seq_len,
        log_interval=n + 2,
        eval_interval=0,
        checkpoint_interval=0,
        alpha=0.5,
    )

    class StepClock(L.Callback):
        def __init__(self):
            self.starts: list[float] = []
            self.ends: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            # From step 1: step 0 includes the optimisers' first-step allocations.
            if 1 <= batch_idx <= n + 1:
                self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if 1 <= batch_idx <= n:
                self.ends.append(time.perf_counter())

    between_steps = []  # Lightning's own loop: from one step's end to the next one's start

    def lightning_run() -> float:
        from dualsweep.data.repetition import RepetitionPlan

        torch.manual_seed(0)
        plan = RepetitionPlan.for_run(
            config, len(data.corpus.training_sequences(config.model.seq_len))
        )
        held_out = torch.from_numpy(
            data.corpus.validation_sequences(config.model.seq_len, 4).astype(np.int64)
        )
        module = DualObjectiveModule(config, special, plan, held_out)
        clock = StepClock()
        from dualsweep.data.datamodule import DualSweepData
        from dualsweep.training.run import _quiet_lightning

        bench_data = DualSweepData(config, log=lambda m: None)
        with _quiet_lightning():
            trainer = L.Trainer(
                accelerator="cpu",
                devices=1,
                max_epochs=1,
                logger=False,
                callbacks=[clock],
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                limit_val_batches=0,
            )
            trainer.fit(module, datamodule=bench_data)
        between_steps.append(float(np.median(np.subtract(clock.starts[1:], clock.ends))))
        return float(np.median(np.diff(clock.starts)))

    def bare_run() -> float:
        loop = _loop(config, special, 0.5)
        loop.run(tokens[:1])
        loop.run(tokens)
        return float(np.median(loop.step_times))

    a, b = interleaved(lightning_run, bare_run, repetitions)
    r, spread = ratio_of(a, b)
    return Ratio(
        "framework_overhead",
        "seconds per step, LightningModule over bare PyTorch loop",
        "Lightning s/step",
        "bare s/step",
        r,
        spread,
        "<= 1.03",
        {
            "lightning_s_per_step": float(np.median(a)),
            "bare_s_per_step": float(np.median(b)),
            "lightning_between_steps_s": float(np.median(between_steps)),
        },
    )


def matched_ffn(config: RunConfig) -> int:
    """The SwiGLU width with the reference GELU MLP's parameter count (8d/3, rounded up to 8)."""
    return -(-8 * config.model.d_model // 3 // 8) * 8


def model_speed(config, tokens, special, repetitions: int) -> Ratio:
    """Our model against the reference GPT through the same plain step, at the reference's
    parameter count: a SwiGLU of hidden 8d/3 (rounded up to a multiple of 8) has the 8d^2 MLP
    weights of the GPT-2 MLP (4d, GELU); the rest is matched. Beside it, our whole training
    step (alpha = 1) against the same reference step: the recipe's cost on top of the model."""
    ffn = matched_ffn(config)
    config = config.replace(ffn_hidden=ffn)
    torch.manual_seed(0)
    ours = PlainLoop(Transformer(config.model), config)
    reference, recipe = reference_loop(config), _loop(config, special, 1.0)
    ours.run(tokens[:3]), reference.run(tokens[:3]), recipe.run(tokens[:3])
    a, b = _rates(
        alternating_steps(ours.train_step, reference.train_step, tokens, repetitions), tokens
    )
    r, spread = ratio_of(a, b)
    c, d = _rates(
        alternating_steps(recipe.train_step, reference.train_step, tokens, repetitions), tokens
    )
    return Ratio(
        "model_speed",
        f"training tokens/s, our model (SwiGLU {ffn}) over a minimal reference GPT "
        f"(GELU MLP {4 * config.model.d_model}), both through the same plain AR step",
        "ours tok/s",
        "reference tok/s",
        r,
        spread,
        ">= 1.0",
        {
            "ours_tokens_per_s": float(np.median(a)),
            "reference_tokens_per_s": float(np.median(b)),
            "ours_parameters": sum(p.numel() for p in ours.model.parameters()),
            "reference_parameters": sum(p.numel() for p in reference.model.parameters()),
            "our_training_step_over_reference": ratio_of(c, d)[0],
        },
    )


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


def hardware_use(config, tokens, special, repetitions: int) -> Ratio:
    loop = _loop(config, special, 1.0)
    loop.run(tokens[:3])
    flops_per_token = training_flops_per_token(config.model)
    a, b = interleaved(lambda: loop.run(tokens) * flops_per_token, matmul_peak, repetitions)
    r, spread = ratio_of(a, b)
    return Ratio(
        "hardware_use",
        "achieved training FLOP/s (6N + attention) over measured fp32 matmul peak",
        "training FLOP/s",
        "matmul FLOP/s",
        r,
        spread,
        "report",
        {
            "training_flops": float(np.median(a)),
            "matmul_peak_flops": float(np.median(b)),
            "flops_per_token": flops_per_token,
        },
    )


def data_path(config, tokens, special, data, repetitions: int) -> Ratio:
    loader_steps = 200

    def deliver() -> float:
        loader = iter(data.train_dataloader())
        start = time.perf_counter()
        for _ in range(loader_steps):
            next(loader)
        return (
            loader_steps
            * config.train.batch_size
            * config.model.seq_len
            / (time.perf_counter() - start)
        )

    loop = _loop(config, special, 0.5)
    loop.run(tokens[:3])
    a, b = interleaved(deliver, lambda: loop.run(tokens), repetitions)
    r, spread = ratio_of(a, b)
    return Ratio(
        "data_path",
        "tokens/s the data module delivers over tokens/s training consumes (alpha = 1/2)",
        "loader tok/s",
        "training tok/s",
        r,
        spread,
        ">= 20",
        {"loader_tokens_per_s": float(np.median(a)), "training_tokens_per_s": float(np.median(b))},
    )


def compile_speedup(config, tokens, special, repetitions: int) -> Ratio:
    compiled, eager = _loop(config, special, 0.5, compile_model=True), _loop(config, special, 0.5)
    start = time.perf_counter()
    compiled.run(tokens[:3])  # compiles (each attention path once)
    compile_s = time.perf_counter() - start
    eager.run(tokens[:3])
    a, b = _rates(
        alternating_steps(compiled.train_step, eager.train_step, tokens, repetitions), tokens
    )
    r, spread = ratio_of(a, b)
    return Ratio(
        "compile",
        "training tokens/s, torch.compile over eager (alpha = 1/2, compile time excluded)",
        "compiled tok/s",
        "eager tok/s",
        r,
        spread,
        "report",
        {"compile_and_first_steps_s": compile_s},
    )
