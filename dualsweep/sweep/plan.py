"""Planning a sweep: sizes, tokens and compute of every trial, without launching anything.

Pure arithmetic on the configs (no torch, no Ray). Training FLOPs per token follow the
usual accounting (Kaplan et al.; PaLM's MFU formula): 6 FLOPs per matmul parameter per token
(forward 2, backward 4), where the matmul parameters are every parameter except the
embedding lookup (the output head's matmul counts, tied or not), plus attention's QK^T and
AV, forward and backward: 12 * n_layers * seq_len * d_model for a sequence that attends
bidirectionally (MD), half that for a causal one (AR). What runs is counted: flash and cuDNN
causal kernels skip the tiles above the diagonal (the half-empty diagonal tiles are not
counted), so at alpha 1 the attention costs half what it costs at alpha 0, and MFU at
different alphas compares the same work. Rows are causal in the share the mix allocation
trains them (`allocation.first_row_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dualsweep.allocation import first_row_share
from dualsweep.config import ModelConfig, RunConfig, SweepConfig, run_key
from dualsweep.schema import CAUSAL_OBJECTIVES

H100_BF16_PEAK_FLOPS = 989e12  # dense bf16, SXM
DEFAULT_MFU = 0.4


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    non_embedding: int
    """Everything but the input embedding and an untied output head."""
    matmul: int
    """Parameters used in matrix multiplies: non-embedding plus the output head."""


def parameter_counts(model: ModelConfig) -> ParameterCounts:
    d, f, V = model.d_model, model.ffn_hidden, model.vocab_size
    block = 4 * d * d + 3 * d * f + 2 * d  # qkv + out, gate + up + down, two RMSNorm gains
    non_embedding = model.n_layers * block + d  # + final norm
    head = 0 if model.tie_embeddings else V * d
    return ParameterCounts(
        total=non_embedding + V * d + head,
        non_embedding=non_embedding,
        matmul=non_embedding + V * d,
    )


def causal_share(config: RunConfig) -> float:
    """The share of a run's training rows that attend causally (its causal objectives' rows)."""
    first, second = config.objective.objectives
    share = first_row_share(
        config.objective.alpha, config.train.batch_size, config.objective.mix_allocation
    )
    return share * (first in CAUSAL_OBJECTIVES) + (1 - share) * (second in CAUSAL_OBJECTIVES)


def attention_flops_per_token(model: ModelConfig, causal_share: float = 0.0) -> float:
    """QK^T and AV, forward and backward, per token: 12 L T d attending bidirectionally,
    half of it for the `causal_share` of rows attending causally."""
    full = 12 * model.n_layers * model.seq_len * model.d_model
    return full * (1 - causal_share / 2)


def training_flops_per_token(model: ModelConfig, causal_share: float = 0.0) -> float:
    """Training FLOPs per token with `causal_share` of the rows causal (0: all bidirectional,
    the larger count; `causal_share(config)` for a run)."""
    return 6 * parameter_counts(model).matmul + attention_flops_per_token(model, causal_share)


# Sizes of common zero-shot harness tasks, for the evaluation estimate: (documents scored,
# continuations per document, context tokens, continuation tokens). Documents are the
# splits' published sizes; the token lengths are rough averages (GPT-2-like BPE), good to a
# factor of about 2. A task not listed here is not estimated (the plan says so).
HARNESS_TASK_SIZES = {
    "arc_easy": (2376, 4, 30, 5),
    "arc_challenge": (1172, 4, 35, 6),
    "hellaswag": (10042, 4, 60, 25),
    "piqa": (1838, 2, 12, 25),
    "winogrande": (1267, 2, 20, 10),
    "sciq": (1000, 4, 120, 3),
    "lambada_openai": (5153, 1, 80, 2),
}
# Built-in tasks: (choices per item, context tokens, continuation tokens), as made by
# evaluate/tasks.py (word_order and cloze keep rows near 15 tokens, continuation 40 + 10).
BUILTIN_TASK_SIZES = {"word_order": (2, 10, 3), "cloze": (4, 10, 3), "continuation": (4, 40, 10)}


def forward_flops_per_token(model: ModelConfig, causal_share: float = 0.0) -> float:
    """A forward pass: a third of `training_flops_per_token`."""
    return training_flops_per_token(model, causal_share) / 3


def evaluation_flops(config: RunConfig) -> tuple[float, list[str]]:
    """Estimated FLOPs of one trained model's evaluation (every task in every mode), and the
    tasks it could not estimate. AR and prefix modes read each continuation once; MD's
    pseudo-log-likelihood reads it once per `md_mask_span` tokens, one row each."""
    evaluation = config.evaluation
    sizes, unknown = [], []
    for name in evaluation.task_names:
        if name in BUILTIN_TASK_SIZES:
            sizes.append((evaluation.task_items, *BUILTIN_TASK_SIZES[name]))
        else:
            unknown.append(name)
    for name in evaluation.lm_eval_tasks:
        if name in HARNESS_TASK_SIZES:
            documents, *rest = HARNESS_TASK_SIZES[name]
            limit = evaluation.lm_eval_limit
            sizes.append((min(documents, limit) if limit else documents, *rest))
        else:
            unknown.append(name)
    span = evaluation.md_mask_span
    flops = 0.0
    for documents, choices, context, continuation in sizes:
        for mode in evaluation.modes:
            rows = -(-continuation // span) if mode == "md" and span > 0 else 1
            # md attends bidirectionally; ar causally, and prefix mostly (counted as causal)
            per_token = forward_flops_per_token(config.model, 0.0 if mode == "md" else 1.0)
            flops += documents * choices * rows * (context + continuation) * per_token
    return flops, unknown


@dataclass(frozen=True)
class TrialPlan:
    run_key: str
    alpha: float
    repetitions: int
    seed: int
    parameters: int
    tokens: int
    unique_tokens: int
    epochs: float
    flops: float
    accelerator_hours: float


def plan_sweep(
    sweep: SweepConfig, *, peak_flops: float = H100_BF16_PEAK_FLOPS, mfu: float = DEFAULT_MFU
) -> list[TrialPlan]:
    plans = []
    for config in sweep.trials():
        flops = training_flops_per_token(config.model, causal_share(config)) * config.tokens
        plans.append(
            TrialPlan(
                run_key=run_key(config),
                alpha=config.objective.alpha,
                repetitions=config.data.repetitions,
                seed=config.train.seed,
                parameters=parameter_counts(config.model).total,
                tokens=config.tokens,
                unique_tokens=config.unique_tokens,
                epochs=config.tokens / config.unique_tokens,
                flops=flops,
                accelerator_hours=flops / (peak_flops * mfu) / 3600,
            )
        )
    return plans


def _shapes_line(base: RunConfig) -> str:
    untiled = base.model.untiled_dims()
    if not untiled:
        return (
            "shapes: d_model, ffn_hidden and vocab_size are multiples of 64 and head_dim of 8 "
            "(whole tensor-core tiles)"
        )
    listed = ", ".join(f"{name}={value}" for name, value in untiled.items())
    return (
        f"shapes: {listed} off a multiple of 64 (head_dim: of 8): on GPU, the kernels these "
        "enter run partly empty tiles"
    )


def format_plan(
    sweep: SweepConfig, plans: list[TrialPlan], *, peak_flops: float, mfu: float
) -> str:
    base: RunConfig = sweep.base
    counts = parameter_counts(base.model)
    lines = [
        f"sweep {sweep.name}: {len(plans)} trials ({len(sweep.points)} points x {len(sweep.seeds)} seeds)",
        f"model: {counts.total:,} parameters ({counts.non_embedding:,} non-embedding), "
        f"{base.model.n_layers} layers, d_model {base.model.d_model}, seq_len {base.model.seq_len}",
        f"training FLOPs per token: 6 x {counts.matmul:,} (matmul parameters) + attention "
        f"12 x {base.model.n_layers} x {base.model.seq_len} x {base.model.d_model}, halved for "
        f"causal rows: {training_flops_per_token(base.model, 1.0):,.0f} for a causal row (AR), "
        f"{training_flops_per_token(base.model, 0.0):,.0f} for a bidirectional one (MD)",
        _shapes_line(base),
        "",
        f"{'alpha':>10} {'R':>5} {'seed':>4} {'tokens':>16} {'unique tokens':>16} {'epochs':>7} "
        f"{'FLOPs':>10} {'acc-hours':>10}",
    ]
    for p in plans:
        lines.append(
            f"{p.alpha:>10.6g} {p.repetitions:>5} {p.seed:>4} {p.tokens:>16,} {p.unique_tokens:>16,} "
            f"{p.epochs:>7.2f} {p.flops:>10.3e} {p.accelerator_hours:>10.4g}"
        )
    total_flops = sum(p.flops for p in plans)
    total_hours = sum(p.accelerator_hours for p in plans)
    total_tokens = sum(p.tokens for p in plans)
    lines += [""]
    search = sweep.search
    if search:
        # Every trial trains the same token budget, whatever alpha and R the sampler picks.
        more = search.trials_per_repetition * len(search.repetitions)
        each = plans[0]
        lines.append(
            f"search: up to {more} more trials ({search.trials_per_repetition} per R at R = "
            f"{', '.join(map(str, search.repetitions))}), alphas chosen by Optuna's "
            f"{search.sampler.upper()} sampler to {'minimise' if search.lower_is_better else 'maximise'} "
            f"{search.metric}; the fixed trials above are its anchors"
        )
        total_tokens += more * each.tokens
        total_flops += more * each.flops
        total_hours += more * each.accelerator_hours
    lines.append(
        f"total{' with the whole search budget' if search else ''}: {total_tokens:,} training "
        f"tokens, {total_flops:.4e} FLOPs, {total_hours:,.1f} accelerator-hours at {mfu:.0%} MFU "
        f"of {peak_flops / 1e12:g} TFLOP/s"
    )
    flops, unknown = evaluation_flops(base)
    trials = len(plans) + (search.trials_per_repetition * len(search.repetitions) if search else 0)
    if flops or unknown:
        evaluation = base.evaluation
        lines.append(
            f"evaluation: {len(evaluation.task_names) + len(evaluation.lm_eval_tasks)} tasks x "
            f"{len(evaluation.modes)} modes ({', '.join(evaluation.modes)}) per model, about "
            f"{flops:.2e} FLOPs ({flops / (total_flops / trials):.2%} of a model's training), "
            f"{trials * flops / (peak_flops * mfu) / 3600:,.1f} accelerator-hours in all"
            + (f"; not estimated: {', '.join(unknown)}" if unknown else "")
        )
    return "\n".join(lines)
