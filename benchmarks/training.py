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

What belongs here: the ratio functions, each measured in one process on the same machine;
the loops and timers they run are in `benchmarks.loops`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dualsweep.config import RunConfig
from dualsweep.model import Transformer
from dualsweep.sweep.plan import causal_share, training_flops_per_token

from .common import Ratio, alternating_steps, interleaved, ratio_of
from .loops import PlainLoop, bare_loop, matmul_peak, reference_loop


def _rates(step_times: tuple[list[float], list[float]], tokens) -> tuple[list[float], list[float]]:
    """Tokens/s from per-repetition median step times."""
    per_step = tokens[0].numel()
    return [per_step / t for t in step_times[0]], [per_step / t for t in step_times[1]]


def dual_overhead(config, tokens, special, repetitions: int) -> Ratio:
    """Training FLOP/s at alpha = 1/2 over alpha = 1: the cost of mixing at equal FLOPs (the
    MD rows attend bidirectionally, twice the causal rows' attention work, which is work done,
    not overhead); tokens/s alone in the details."""
    half, pure = bare_loop(config, special, 0.5), bare_loop(config, special, 1.0)
    half.run(tokens[:3]), pure.run(tokens[:3])  # warm-up
    a, b = _rates(alternating_steps(half.train_step, pure.train_step, tokens, repetitions), tokens)
    per_token = [
        training_flops_per_token(config.model, causal_share(config.replace(alpha=alpha)))
        for alpha in (0.5, 1.0)
    ]
    r, spread = ratio_of([x * per_token[0] for x in a], [x * per_token[1] for x in b])
    return Ratio(
        "dual_overhead",
        "training FLOP/s (causal attention at half), alpha = 1/2 over alpha = 1",
        "alpha=1/2 FLOP/s",
        "alpha=1 FLOP/s",
        r,
        spread,
        ">= 0.97",
        {
            "alpha_half_tokens_per_s": float(np.median(a)),
            "alpha_one_tokens_per_s": float(np.median(b)),
            "tokens_per_s_ratio": ratio_of(a, b)[0],
            "alpha_half_flops_per_token": per_token[0],
            "alpha_one_flops_per_token": per_token[1],
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
        loop = bare_loop(config, special, 0.5)
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
    reference, recipe = reference_loop(config), bare_loop(config, special, 1.0)
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


def hardware_use(config, tokens, special, repetitions: int) -> Ratio:
    loop = bare_loop(config, special, 1.0)
    loop.run(tokens[:3])
    flops_per_token = training_flops_per_token(
        config.model, causal_share(config.replace(alpha=1.0))
    )
    a, b = interleaved(lambda: loop.run(tokens) * flops_per_token, matmul_peak, repetitions)
    r, spread = ratio_of(a, b)
    return Ratio(
        "hardware_use",
        "achieved training FLOP/s (6N + causal attention, at alpha 1) over measured fp32 matmul peak",
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
    loader_steps = min(200, config.steps)  # the loader holds exactly the run's steps

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

    loop = bare_loop(config, special, 0.5)
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
    compiled, eager = (
        bare_loop(config, special, 0.5, compile_model=True),
        bare_loop(config, special, 0.5),
    )
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
