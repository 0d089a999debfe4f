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

With a cluster's size (`--gpus`, or `--cpus` for a CPU sweep) the plan also schedules the
trials, training and evaluation, longest first onto that many devices (a list schedule),
for the wall-clock and the storage the trial folders peak at; with a scheduler's time
limit, the job submissions that wall-clock takes.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from dualsweep.allocation import first_row_share
from dualsweep.config import ConfigError, ModelConfig, RunConfig, SweepConfig, run_key
from dualsweep.schema import CAUSAL_OBJECTIVES, pair_columns

H100_BF16_PEAK_FLOPS = 989e12  # dense bf16, SXM
DEFAULT_MFU = 0.4
CPU_CORE_FLOPS = 40e9
"""Training FLOP/s of one CPU core in fp32: benchmarks/RESULTS.md's hardware_use row measured
81 GFLOP/s on 2 AMD EPYC cores. Rough: CPUs differ from it by several times either way."""
PARAMETER_BYTES = 4
"""Bytes per parameter and per optimiser moment: fp32 in both precisions (bf16-mixed keeps
fp32 weights and casts in the compute), and state_dict saves them so."""


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


def hidden_matrix_parameters(model: ModelConfig) -> int:
    """The blocks' 2-D weights (q, k, v and out; gate, up and down): what Muon steps
    (`training.optim.split_parameters`); AdamW keeps the rest."""
    d, f = model.d_model, model.ffn_hidden
    return model.n_layers * (4 * d * d + 3 * d * f)


def weights_bytes(model: ModelConfig) -> int:
    """A trial's final model.pt: every parameter in fp32 (a tied head stored once)."""
    return PARAMETER_BYTES * parameter_counts(model).total


def checkpoint_bytes(config: RunConfig) -> int:
    """A trial's checkpoint.pt: the weights and the optimiser state, two moments per parameter
    for AdamW, one momentum buffer per hidden-matrix parameter for Muon (AdamW's two for the
    rest). The curve and the step counters it also holds are small beside them."""
    total = parameter_counts(config.model).total
    muon = hidden_matrix_parameters(config.model) if config.optim.optimizer == "muon" else 0
    return PARAMETER_BYTES * (total + muon + 2 * (total - muon))


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


def held_out_evaluations(config: RunConfig) -> int:
    """Held-out evaluations of a run: at step 0, every `eval_interval` steps and at the end."""
    interval, steps = config.held_out.eval_interval, config.steps
    return 2 if not interval else 1 + steps // interval + (steps % interval > 0)


def held_out_flops(config: RunConfig) -> float:
    """FLOPs of a run's held-out curve: at each evaluation, a forward pass over the validation
    sequences per objective, one per masking draw for a random one (MD's ELBO)."""
    held_out, model = config.held_out, config.model
    passes = sum(
        (held_out.md_eval_draws if columns.estimated else 1)
        * forward_flops_per_token(model, float(columns.name in CAUSAL_OBJECTIVES))
        for columns in pair_columns(config.objective.objectives)
    )
    return held_out_evaluations(config) * held_out.validation_sequences * model.seq_len * passes


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


@dataclass(frozen=True)
class Hardware:
    """What a sweep's trials run on, as the plan counts it."""

    unit: str
    """"GPU" or "CPU core"."""
    per_trial: float
    """Units a trial holds: workers x gpu (a fraction of a GPU counted whole: trials sharing a
    GPU share its FLOPs too), or workers x cpu cores."""
    training_flops_per_s: float
    """FLOP/s of a trial's training: every worker's device (or threads) at once."""
    evaluation_flops_per_s: float
    """FLOP/s of its evaluation, which runs in the trial's one process after training."""

    @property
    def is_cpu(self) -> bool:
        return self.unit != "GPU"


def hardware(
    sweep: SweepConfig, *, peak_flops: float = H100_BF16_PEAK_FLOPS, mfu: float = DEFAULT_MFU
) -> Hardware:
    """GPUs at `mfu` of `peak_flops` each; CPU cores at CPU_CORE_FLOPS each when the sweep
    trains on CPU (train.device cpu, or no GPU reserved: Ray then shows a trial none)."""
    resources, train = sweep.resources, sweep.base.train
    if train.device == "cpu" or resources.gpu == 0:
        threads = train.threads or max(1, int(resources.cpu))  # as the trainable sets them
        process = threads * CPU_CORE_FLOPS
        return Hardware(
            "CPU core", resources.workers * resources.cpu, resources.workers * process, process
        )
    device = peak_flops * mfu  # each worker trains on one GPU
    return Hardware(
        "GPU", resources.workers * max(1.0, resources.gpu), resources.workers * device, device
    )


def training_hours(sweep: SweepConfig, plans: list[TrialPlan], hw: Hardware) -> list[float]:
    """Each trial's training time on `hw` with its held-out curve (evaluated by one process),
    in hours: the fixed trials, then the search's whole budget (each trains the same tokens
    as the first fixed trial)."""
    search = sweep.search
    extra = search.trials_per_repetition * len(search.repetitions) if search else 0
    held_out = held_out_flops(sweep.base) / hw.evaluation_flops_per_s
    flops = [p.flops for p in plans] + [plans[0].flops] * extra
    return [(f / hw.training_flops_per_s + held_out) / 3600 for f in flops]


def evaluation_hours(sweep: SweepConfig, hw: Hardware) -> float:
    """A trial's evaluation time on `hw`, in hours (tasks `evaluation_flops` cannot size: 0)."""
    return evaluation_flops(sweep.base)[0] / hw.evaluation_flops_per_s / 3600


@dataclass(frozen=True)
class Schedule:
    """Trials placed on a cluster: `slots` at once, each from the first slot free."""

    slots: int
    """Trials at once (`trials_at_once`)."""
    spans: tuple[tuple[float, float], ...]
    """(start, end) of each trial in hours, in the order of the durations scheduled."""

    @property
    def wall_clock_hours(self) -> float:
        return max((end for _, end in self.spans), default=0.0)


def schedule_trials(hours: list[float], slots: int) -> Schedule:
    """The list schedule, longest first: each trial starts on the slot that frees first (what
    Tune does with a queue of equal-sized trials; longest first keeps a long one from
    starting last)."""
    free = [0.0] * slots
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(hours)
    for i in sorted(range(len(hours)), key=lambda i: -hours[i]):
        start = heapq.heappop(free)
        spans[i] = (start, start + hours[i])
        heapq.heappush(free, start + hours[i])
    return Schedule(slots=slots, spans=tuple(spans))


def trials_at_once(sweep: SweepConfig, hw: Hardware, units: int) -> int:
    """How many trials `units` GPUs (or cores) hold at once; 0 when not even one."""
    fits = int(units // hw.per_trial)
    return min(fits, sweep.max_concurrent_trials) if sweep.max_concurrent_trials else fits


def peak_storage(
    spans: tuple[tuple[float, float], ...], model_bytes: float, checkpoint_bytes: float
) -> float:
    """Most bytes the trial folders hold at once: every finished trial's model, and two
    checkpoints per running trial (its last one, and the next while it is written beside it
    before the rename; a finishing trial's model and last checkpoint are less). Checked just
    before each trial ends, when the most trials have a checkpoint."""
    peak = len(spans) * model_bytes
    for t in sorted(end for _, end in spans):
        finished = sum(end < t for _, end in spans)
        running = sum(start < t <= end for start, end in spans)
        peak = max(peak, finished * model_bytes + running * 2 * checkpoint_bytes)
    return peak


def submissions(wall_clock_hours: float, time_limit_hours: float) -> int:
    """Jobs of `time_limit_hours` that the wall-clock takes, when every job resumes where the
    last one stopped (a lower bound: what a job's end cuts short since the last checkpoint is
    trained again)."""
    return max(1, math.ceil(wall_clock_hours / time_limit_hours - 1e-9))


def checkpoint_spacing_hours(config: RunConfig, hours: float) -> float:
    """Hours of training between the checkpoints of a trial that trains `hours`
    (`train.checkpoint_interval` steps, or `checkpoint_minutes`, whichever comes first); inf
    when it takes none."""
    train = config.train
    by_steps = hours * train.checkpoint_interval / config.steps
    by_time = train.checkpoint_minutes / 60
    return min(by_steps or math.inf, by_time or math.inf)


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


def _duration(hours: float, *, days: bool = False) -> str:
    """`hours` in the unit that reads best; with `days`, hours also as days."""
    if hours >= 1:
        text = f"{hours:,.0f} hours" if hours >= 100 else f"{hours:.3g} hours"
        return f"{text} = {hours / 24:.3g} days" if days else text
    return f"{hours * 60:.3g} minutes" if hours >= 1 / 60 else f"{hours * 3600:.3g} s"


def _hours(hours: float) -> str:
    """Hours with the digits that matter: no 0.0 for a small sweep."""
    return f"{hours:,.1f}" if hours >= 100 else f"{hours:.3g}"


def corpus_lines(sweep: SweepConfig) -> list[str]:
    """Where the corpus is, whether it exists yet (a warning line if not: the sweep refuses
    to start without it, the plan does not need it), its size, and the unique tokens the
    sweep needs of it."""
    from dualsweep.data.shards import token_dtype
    from dualsweep.data.sources import DataError, source_of

    data = sweep.base.data
    trials = sweep.trials()
    needed = max(t.unique_tokens for t in trials)
    fewest = min(t.data.repetitions for t in trials)
    dtype = token_dtype(sweep.base.model.vocab_size)
    need = (
        f"the sweep trains on up to {needed:,} unique tokens (R = {fewest}): at least "
        f"{_bytes(needed * dtype.itemsize)} of {dtype.name} shards"
    )
    source = source_of(data)
    if not source.suffixes:  # it reads no files of the user's
        return [f"corpus: source {data.source}, prepared into the cache on first use; {need}"]
    try:
        files = source.files(data)
    except DataError as e:
        return [
            f"warning: {e}: prepare the corpus before `dualsweep sweep`, which refuses to "
            f"start without it (see the README, Preparing a large corpus); {need}"
        ]
    size = sum(path.stat().st_size for path in files)
    kind = "token shards" if source.fields.token_ids else "text (tokenised into the cache)"
    return [f"corpus: {data.path} holds {_bytes(size)} of {kind} in {len(files):,} files; {need}"]


def cluster_lines(
    sweep: SweepConfig,
    plans: list[TrialPlan],
    hw: Hardware,
    *,
    units: int | None = None,
    time_limit: float | None = None,
) -> list[str]:
    """The wall-clock on `units` GPUs (or cores), the job submissions under `time_limit` hours,
    and the storage of the trial folders."""
    base = sweep.base
    training = training_hours(sweep, plans, hw)
    evaluation = evaluation_hours(sweep, hw)
    hours = [t + evaluation for t in training]
    device = "core" if hw.is_cpu else "GPU"
    flag = "--cpus" if hw.is_cpu else "--gpus"
    lines, schedule = [], None
    if units is None:
        if time_limit is not None:
            raise ConfigError(
                f"--time: give {flag} N too (the submissions split the wall-clock on N {device}s)"
            )
        lines.append(
            f"wall-clock: give {flag} N (the cluster's {device}s) for the sweep's wall-clock on "
            "them, and --time HOURS (a scheduler's time limit) for its job submissions"
        )
    else:
        slots = trials_at_once(sweep, hw, units)
        if slots < 1:
            raise ConfigError(
                f"{flag}: a trial holds {hw.per_trial:g} {device}s (resources: workers x "
                f"{'cpu' if hw.is_cpu else 'gpu'}), more than {units}"
            )
        schedule = schedule_trials(hours, slots)
        wall = schedule.wall_clock_hours
        device_hours = sum(hours) * hw.per_trial
        shortest, longest = min(training), max(training)
        trains = _duration(longest)
        if longest - shortest >= 0.005 * longest:
            low = f"{shortest:.3g}" if shortest >= 1 else _duration(shortest)  # same unit
            trains = f"{low} to {trains}"
        lines.append(
            f"wall-clock on {units} {device}s: {_duration(wall, days=True)} ({slots} trials at "
            f"once on {hw.per_trial:g} {device}{'s' if hw.per_trial != 1 else ''} each, longest "
            f"first: each trains {trains} with its held-out curve, then evaluates "
            f"{_duration(evaluation)}); the {device}s "
            f"are busy {device_hours / (units * wall):.0%} of it (split perfectly: "
            f"{_duration(device_hours / units, days=True)})"
        )
    if schedule is not None and time_limit is not None:
        wall, longest = schedule.wall_clock_hours, max(hours)
        jobs = submissions(wall, time_limit)
        line = (
            f"jobs under a {time_limit:g}-hour time limit: at least {jobs} submission"
            f"{'s' if jobs > 1 else ''} ({_hours(wall)} / {time_limit:g} hours; each resumes the "
            "sweep where the last one stopped)"
        )
        spacing = checkpoint_spacing_hours(base, max(training))
        if jobs > 1 and spacing < time_limit:
            outlives = (
                f"a trial (up to {_duration(longest)}) outlives a job and continues from its "
                if longest > time_limit
                else "a trial cut short by a job's end continues from its "
            )
            line += (
                f"; {outlives}last checkpoint (about every {_duration(spacing)} of training): each "
                "resubmission trains up to that much of every running trial again"
            )
        lines.append(line)
        if jobs > 1 and spacing >= time_limit:
            reason = (
                "takes no checkpoints (train.checkpoint_interval and checkpoint_minutes 0)"
                if math.isinf(spacing)
                else f"checkpoints only every {_duration(spacing)} of training"
            )
            never = (
                f"; a trial of {_duration(longest)} never finishes" if longest > time_limit else ""
            )
            lines.append(
                f"warning: the sweep {reason}, so a trial cut short by a job's end starts again "
                f"from step 0{never}: set train.checkpoint_interval (steps) or "
                "train.checkpoint_minutes"
            )
    model = weights_bytes(base.model)
    checkpoint = checkpoint_bytes(base)
    takes = not math.isinf(checkpoint_spacing_hours(base, max(training)))
    optimiser = (
        "Muon's momentum for the hidden matrices, AdamW's two moments for the rest"
        if base.optim.optimizer == "muon"
        else "AdamW's two moments"
    )
    line = (
        f"storage (--storage): {len(hours)} models x {_bytes(model)} (model.pt: "
        f"{parameter_counts(base.model).total:,} fp32 parameters) = {_bytes(len(hours) * model)} "
        "when the sweep is done; "
    )
    if takes:
        line += (
            f"a running trial's checkpoint.pt is {_bytes(checkpoint)} (the weights, {optimiser}), "
            "deleted when it finishes"
        )
    else:
        line += "no checkpoints (train.checkpoint_interval and checkpoint_minutes 0)"
    if schedule is not None:
        peak = peak_storage(schedule.spans, model, checkpoint if takes else 0)
        line += f"; peak {_bytes(peak)}" + (
            " (the finished models and two checkpoints per running trial, as one is rewritten)"
            if takes
            else ""
        )
    return [*lines, line]


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
    sweep: SweepConfig,
    plans: list[TrialPlan],
    *,
    peak_flops: float,
    mfu: float,
    units: int | None = None,
    time_limit: float | None = None,
) -> str:
    """The plan as printed; with `units` (GPUs, or cores for a CPU sweep) the wall-clock on
    them, and with `time_limit` (hours) the job submissions."""
    base: RunConfig = sweep.base
    hw = hardware(sweep, peak_flops=peak_flops, mfu=mfu)
    # A CPU sweep's hours are core-hours: at a GPU's peak its trials would read 0.0 hours.
    unit_hours = "core-hours" if hw.is_cpu else "acc-hours"
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
        f"{'FLOPs':>10} {unit_hours:>10}",
    ]
    for p in plans:
        lines.append(
            f"{p.alpha:>10.6g} {p.repetitions:>5} {p.seed:>4} {p.tokens:>16,} {p.unique_tokens:>16,} "
            f"{p.epochs:>7.2f} {p.flops:>10.3e} "
            f"{p.flops / CPU_CORE_FLOPS / 3600 if hw.is_cpu else p.accelerator_hours:>10.4g}"
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
        chooser = (
            f"Optuna's {search.sampler.upper()} sampler"
            if search.algorithm == "optuna"
            else f"the {search.algorithm} searcher"
        )
        lines.append(
            f"search: up to {more} more trials ({search.trials_per_repetition} per R at R = "
            f"{', '.join(map(str, search.repetitions))}), alphas chosen by {chooser} to "
            f"{'minimise' if search.lower_is_better else 'maximise'} "
            f"{search.metric}; the fixed trials above are its anchors"
        )
        total_tokens += more * each.tokens
        total_flops += more * each.flops
        total_hours += more * each.accelerator_hours
    gpu_hours = f"accelerator-hours at {mfu:.0%} MFU of {peak_flops / 1e12:g} TFLOP/s"
    if hw.is_cpu:
        hours = (
            f"{_hours(total_flops / CPU_CORE_FLOPS / 3600)} core-hours at "
            f"{CPU_CORE_FLOPS / 1e9:g} GFLOP/s per core (this sweep trains on CPU: train.device "
            f"{base.train.device}, resources.gpu {sweep.resources.gpu:g}; on a GPU it would take "
            f"{_hours(total_hours)} {gpu_hours})"
        )
    else:
        hours = f"{_hours(total_hours)} {gpu_hours}"
    lines.append(
        f"total{' with the whole search budget' if search else ''}: {total_tokens:,} training "
        f"tokens, {total_flops:.4e} FLOPs, {hours}"
    )
    flops, unknown = evaluation_flops(base)
    trials = len(plans) + (search.trials_per_repetition * len(search.repetitions) if search else 0)
    if flops or unknown:
        evaluation = base.evaluation
        lines.append(
            f"evaluation: {len(evaluation.task_names) + len(evaluation.lm_eval_tasks)} tasks x "
            f"{len(evaluation.modes)} modes ({', '.join(evaluation.modes)}) per model, about "
            f"{flops:.2e} FLOPs ({flops / (total_flops / trials):.2%} of a model's training), "
            f"{_hours(trials * flops / (CPU_CORE_FLOPS if hw.is_cpu else peak_flops * mfu) / 3600)} "
            f"{'core' if hw.is_cpu else 'accelerator'}-hours in all"
            + (f"; not estimated: {', '.join(unknown)}" if unknown else "")
        )
    held_out = held_out_flops(base)
    names = [
        f"{c.name.upper()} {f'x {base.held_out.md_eval_draws} draws' if c.estimated else 'once'}"
        for c in pair_columns(base.objective.objectives)
    ]
    lines.append(
        f"held-out curve: {held_out_evaluations(base)} evaluations x "
        f"{base.held_out.validation_sequences} sequences ({', '.join(names)}) per model, about "
        f"{held_out:.2e} FLOPs ({held_out / (total_flops / trials):.2%} of a model's training)"
    )
    lines += ["", *cluster_lines(sweep, plans, hw, units=units, time_limit=time_limit)]
    lines += corpus_lines(sweep)
    return "\n".join(lines)
