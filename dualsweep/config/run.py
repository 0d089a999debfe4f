"""The run configuration: what one training run of one (alpha, repetitions) point needs.

Seven frozen sections (model, data, objective, optim, train, held_out, evaluation) inside
`RunConfig`. Every field has a one-line docstring and every field name is unique across
sections, so the flattened config (`flat_fields`) gives the Parquet column names users query
(`alpha`, `repetitions`, `d_model`, ...) with the same names as in YAML and code.

A field's own range sits in its metadata (`POSITIVE`, `SEED`, `bound(0, 1)`, ...: see
`dualsweep.config.fields`) and is checked by `Checked.__post_init__`; checks across fields
follow in each section's `__post_init__`.

Longer than 300 lines on purpose: this file is the reference of every field a run has (its
type, default, range and docstring, which the README points to), and split by section it
would send a reader through seven files to answer "what can I set?".
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dualsweep.config.fields import (
    BELOW_ONE,
    COUNT,
    NON_NEGATIVE,
    OPEN_UNIT_INTERVAL,
    POSITIVE,
    POSITIVE_INTEGER,
    SEED,
    UNIT_INTERVAL,
    Checked,
    ConfigError,
    Rules,
    bound,
    build,
    check,
    to_plain,
    unique,
)
from dualsweep.schema import DATA_SOURCES, SCORING_MODES, TASK_NAMES

# Field metadata: fields marked `identity=False` change how a run is shown, logged or
# evaluated, never the trained model, so they are left out of the run key (a finished run is
# not re-trained because a progress bar was switched off or a task was added).
NOT_IDENTITY = {"identity": False}
# Fields added after results were committed: in the run key only when set to something other
# than their default, so that every run trained before they existed keeps its key.
IDENTITY_UNLESS_DEFAULT = {"identity": "unless default"}


def key_name(dotted: str) -> Rules:
    """Metadata: `run_key` hashes this field as `dotted` (`section.name`) instead of under its
    own section. For fields moved to another section: finished runs, their folders and the
    committed results are found by run key, so a move must not change any key. `dotted` is
    also the field's old place, which the loader still accepts (see `MOVED_FIELDS`)."""
    return Rules(key=dotted)


# Byte-level BPE keeps all 256 bytes plus the four specials (pad, bos, eos, mask).
MIN_BPE_VOCAB = 256 + 4


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Checked):
    vocab_size: int = field(default=1024, metadata=COUNT | bound(8, why="must be at least 8"))
    """Vocabulary size: embedding rows, and the size the BPE tokenizer is trained to."""
    n_layers: int = field(default=4, metadata=COUNT)
    """Number of transformer blocks."""
    d_model: int = field(default=128, metadata=COUNT)
    """Hidden width."""
    n_heads: int = field(default=4, metadata=COUNT)
    """Attention heads; d_model / n_heads must be an even head dimension (RoPE rotates pairs)."""
    ffn_hidden: int = field(default=512, metadata=COUNT)
    """Hidden width of the SwiGLU feed-forward layer."""
    seq_len: int = field(default=128, metadata=bound(2, why="must be at least 2 (one target)"))
    """Context length: tokens per training sequence."""
    rope_theta: float = field(default=10000.0, metadata=POSITIVE)
    """RoPE base frequency."""
    tie_embeddings: bool = True
    """Share the input embedding matrix with the output head."""
    norm_eps: float = field(default=1e-6, metadata=POSITIVE)
    """RMSNorm epsilon."""
    init_std: float = field(default=0.02, metadata=POSITIVE)
    """Standard deviation of the normal initialisation (residual projections are scaled down by depth)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.d_model % self.n_heads == 0 and self.head_dim % 2 == 0,
            "n_heads",
            self.n_heads,
            f"must divide d_model={self.d_model} into an even head dimension",
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def untiled_dims(self, multiple: int = 64) -> dict[str, int]:
        """Widths that GPU kernels handle badly: d_model, ffn_hidden or vocab_size off a
        multiple of `multiple` (tensor cores work in tiles, and a width just off a multiple
        pads the last tile of every matmul it enters), and a head_dim off a multiple of 8
        (the fused attention kernels' granularity)."""
        dims = {
            "d_model": self.d_model,
            "ffn_hidden": self.ffn_hidden,
            "vocab_size": self.vocab_size,
        }
        untiled = {name: value for name, value in dims.items() if value % multiple}
        if self.head_dim % 8:
            untiled["head_dim"] = self.head_dim
        return untiled


@dataclass(frozen=True, kw_only=True)
class DataConfig(Checked):
    source: str = "builtin"
    """Corpus, a registered data source (schema.DATA_SOURCES): builtin (stdlib docstrings + pydoc topics), text_dir, jsonl, shards, hf, or one added with dualsweep.data.sources.register_source."""
    path: str = ""
    """Folder of .txt files (text_dir), a .jsonl(.gz/.zst) file or folder (jsonl), or for shards a folder `dualsweep prepare` wrote or of raw .npy/.bin token shards."""
    text_field: str = "text"
    """Name of the text field in JSONL records and HF datasets."""
    hf_dataset: str = ""
    """HF `datasets` name, for source hf (needs the `hf` extra and a network on first use)."""
    hf_config: str = ""
    """HF dataset configuration name, for source hf."""
    hf_split: str = "train"
    """HF dataset split to read, for source hf."""
    max_documents: int = field(default=0, metadata=NON_NEGATIVE)
    """Read at most this many documents from the source (0 = all)."""
    shard_dtype: Literal["uint16", "uint32"] = "uint16"
    """Integer type of raw .bin token shards (prepared shards say theirs)."""
    shard_eos_id: int = field(
        default=-1, metadata=bound(-1, integer=True, why="must be a token id, or -1 when unset")
    )
    """Document separator id inside raw token shards (required for them; prepared shards say theirs)."""
    validation_fraction: float = field(default=0.05, metadata=OPEN_UNIT_INTERVAL)
    """Share of documents held out for validation (chosen by a hash of each document)."""
    repetitions: int = field(default=1, metadata=POSITIVE_INTEGER)
    """R: the unique training subset is token_budget / R tokens, seen R times."""
    order_seed: int = field(default=0, metadata=SEED)
    """Seed of the one document order whose prefixes are the unique subsets (keep fixed across a sweep)."""
    document_masking: bool = False
    """Stop attention at document boundaries inside packed sequences."""
    cache_dir: str = field(default="", metadata=NOT_IDENTITY)
    """Where prepared corpora and tokenizers are cached ('' = $DUALSWEEP_CACHE or ~/.cache/dualsweep)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        registered = ", ".join(DATA_SOURCES)
        check(
            self.source in DATA_SOURCES,
            "source",
            self.source,
            f"unknown data source (registered: {registered})",
        )
        for name in DATA_SOURCES[self.source].required:
            value = getattr(self, name)
            check(bool(value), name, value, f"is required for source {self.source!r}")


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig(Checked):
    alpha: float = field(default=1.0, metadata=UNIT_INTERVAL)
    """Weight of the first objective of `objectives`, the autoregressive loss by default: alpha * L_AR + (1 - alpha) * L_MD (fractions like 63/64 allowed)."""
    objectives: tuple[str, str] = field(
        default=("ar", "md"), metadata=unique("an objective") | IDENTITY_UNLESS_DEFAULT
    )
    """The two registered objectives mixed, alpha weighing the first (ar: autoregressive, md: masked diffusion; see dualsweep.objectives)."""
    mix_allocation: Literal["sequence", "step"] = "step"
    """How alpha splits a batch: step (every batch of a 0 < alpha < 1 mix holds both objectives, loss alpha * mean AR + (1 - alpha) * mean MD) or sequence (whole sequences assigned so the cumulative AR share tracks alpha, each weighing 1/B)."""
    mask_rate_sampling: Literal["uniform", "stratified"] = "uniform"
    """How masked-diffusion rates t are drawn: i.i.d. U(0,1), or stratified across a batch."""
    min_mask_rate: float = field(default=1e-3, metadata=OPEN_UNIT_INTERVAL)
    """Lower clip of t, keeping the 1/t weight finite."""
    common_masks: bool = field(default=False, metadata=IDENTITY_UNLESS_DEFAULT)
    """Draw every row's noise level and masked positions whether or not it trains a masking
    objective, so that runs at one seed and different alphas mask alike every row both train
    on it (common random numbers: paired comparisons across alpha cancel the masking noise;
    initial weights and batches are shared at one seed anyway). Off: only those rows draw,
    and their draws depend on how many there are."""


@dataclass(frozen=True, kw_only=True)
class OptimConfig(Checked):
    optimizer: Literal["adamw", "muon"] = "adamw"
    """adamw for everything, or muon for 2-D hidden weights with AdamW for the rest (as the paper)."""
    lr: float = field(default=2e-3, metadata=POSITIVE)
    """Peak AdamW learning rate."""
    muon_lr: float = field(default=0.02, metadata=POSITIVE)
    """Peak Muon learning rate (optimizer muon only)."""
    muon_momentum: float = field(default=0.95, metadata=BELOW_ONE)
    """Muon momentum (Nesterov)."""
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata=BELOW_ONE)
    """AdamW betas."""
    weight_decay: float = field(default=0.1, metadata=NON_NEGATIVE)
    """Decoupled weight decay of the blocks' hidden matrices (embeddings, output head and norms are not decayed)."""
    warmup_fraction: float = field(default=0.05, metadata=UNIT_INTERVAL)
    """Share of steps spent warming the learning rate up linearly from 0."""
    decay_fraction: float = field(default=0.2, metadata=UNIT_INTERVAL)
    """Share of steps at the end spent decaying the learning rate (warmup-stable-decay)."""
    decay_shape: Literal["linear", "sqrt"] = "linear"
    """Shape of the final decay: linear, or 1 - sqrt (as in WSD papers)."""
    final_lr_fraction: float = field(default=0.0, metadata=UNIT_INTERVAL)
    """Learning rate at the end of the decay, as a fraction of the peak."""
    grad_clip: float = field(default=1.0, metadata=NON_NEGATIVE)
    """Clip the global gradient norm to this value (0 = no clipping)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.warmup_fraction + self.decay_fraction <= 1,
            "decay_fraction",
            self.decay_fraction,
            f"plus warmup_fraction={self.warmup_fraction} must not exceed 1",
        )


Logger = Literal["csv", "tensorboard", "wandb"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Checked):
    token_budget: int = field(default=1_048_576, metadata=COUNT)
    """Training tokens seen by the model (steps = token_budget // (batch_size * seq_len))."""
    batch_size: int = field(default=16, metadata=COUNT)
    """Sequences per optimizer step."""
    micro_batch_size: int = field(default=0, metadata=NOT_IDENTITY)
    """Sequences per forward pass, dividing batch_size (gradient accumulation); 0 = the whole
    batch. With data-parallel workers: per worker, at most its share of the batch."""
    loader_workers: int = field(default=0, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """Processes assembling batches ahead of the training step (0 = in the training process): the same batches, prefetched; worth it when the corpus is read from slow storage."""
    loss_chunk_tokens: int = field(default=0, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """Positions per chunk of the output head and cross-entropy in training (0 = all at once):
    the (micro-batch, seq_len, vocab) logits are never held whole, at the cost of one more
    head matmul per position (memory, not numbers: the losses agree to float rounding)."""
    seed: int = field(default=0, metadata=SEED)
    """Seed of initialisation, epoch shuffles and masking draws."""
    log_interval: int = field(default=10, metadata=COUNT)
    """Steps between logged training rows."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: cuda if available under auto."""
    precision: Literal["auto", "32", "bf16-mixed"] = "auto"
    """Numeric precision: bf16-mixed on GPU and 32 on CPU under auto."""
    threads: int = field(default=0, metadata=NON_NEGATIVE)
    """Torch CPU threads (0 = torch's default)."""
    compile: bool = False
    """torch.compile each transformer block (one graph per attention mode serves every layer)."""
    loggers: tuple[Logger, ...] = field(
        default=("csv",), metadata=unique("a logger") | NOT_IDENTITY
    )
    """Experiment loggers: any of csv, tensorboard, wandb."""
    progress_bar: bool = field(default=True, metadata=NOT_IDENTITY)
    """Show a progress bar while training."""
    checkpoint_interval: int = field(default=0, metadata=NOT_IDENTITY)
    """Steps between resumable checkpoints, a multiple of log_interval (0 = by time only)."""
    wandb_project: str = field(default="dualsweep", metadata=NOT_IDENTITY)
    """The W&B project of the `wandb` logger's runs."""
    wandb_group: str = field(default="", metadata=NOT_IDENTITY)
    """The W&B group of the run ("" = none; a sweep's trials: the sweep's name)."""
    checkpoint_minutes: float = field(default=10.0, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """Minutes of training after which the next log step also checkpoints (0 = by steps
    only): an interruption loses at most this much work whatever a step costs."""
    plugins: tuple[str, ...] = field(default=(), metadata=unique("a module") | NOT_IDENTITY)
    """Python modules imported before the config is checked, in every process that reads it
    (a sweep's trials too): where objectives, data sources and tasks of your own register."""

    def __post_init__(self) -> None:
        super().__post_init__()
        micro = self.micro_batch_size
        check(
            micro >= 0 and (micro == 0 or self.batch_size % micro == 0),
            "micro_batch_size",
            micro,
            f"must be 0 or divide batch_size={self.batch_size}",
        )
        check(
            self.checkpoint_interval >= 0 and self.checkpoint_interval % self.log_interval == 0,
            "checkpoint_interval",
            self.checkpoint_interval,
            f"must be 0 or a multiple of log_interval={self.log_interval} (checkpoints are taken at log steps)",
        )


# The held-out settings used to sit in data, objective and train: each keeps its old dotted
# name in the run key (`key_name`), so that runs trained before the move keep their keys.
@dataclass(frozen=True, kw_only=True)
class HeldOutConfig(Checked):
    eval_interval: int = field(default=100, metadata=NON_NEGATIVE | key_name("train.eval_interval"))
    """Steps between held-out evaluations (also at the start and the end; 0 = only those)."""
    validation_sequences: int = field(
        default=64, metadata=COUNT | key_name("data.validation_sequences")
    )
    """Held-out sequences evaluated at each evaluation (the same ones for every run)."""
    md_eval_draws: int = field(default=4, metadata=COUNT | key_name("objective.md_eval_draws"))
    """K: masking draws averaged in a random objective's held-out value (MD's ELBO), with its standard error."""
    held_out_seed: int = field(default=0, metadata=SEED | key_name("objective.held_out_seed"))
    """Seed of the held-out masking draws (the same masks for every run and evaluation)."""


def strategy_name(mode: str, span: int) -> str:
    """How choice tokens are read in `mode`: next-token reading, or the MD masking strategy
    for `md_mask_span` = `span` (the `strategy` column of evals rows)."""
    if mode != "md":
        return "next_token"
    return "pll" if span == 1 else ("all_masked" if span == 0 else f"span_{span}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig(Checked):
    tasks: tuple[str, ...] = field(
        default=("continuation", "word_order"), metadata=unique("a task") | NOT_IDENTITY
    )
    """Multiple-choice tasks run on the final model: names of tasks built from held-out documents (`schema.TASK_NAMES`: continuation, word_order, cloze, and any registered) or .jsonl paths."""
    modes: tuple[str, ...] = field(
        default=("ar", "md", "prefix"), metadata=unique("a mode") | NOT_IDENTITY
    )
    """Scoring modes: ar (log-likelihood), md (pseudo-log-likelihood), prefix (prefix-LM), and any a registered objective adds (`schema.SCORING_MODES`)."""
    md_mask_span: int = field(default=1, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """MD scoring: choice tokens masked together (1 = one at a time, the classic PLL; 0 = all at once)."""
    task_items: int = field(default=200, metadata=bound(1) | NOT_IDENTITY)
    """Items of each built-in task."""
    task_seed: int = field(default=0, metadata=SEED | NOT_IDENTITY)
    """Seed of the built-in tasks' items (the same items for every run)."""
    bootstrap_samples: int = field(default=1000, metadata=bound(2) | NOT_IDENTITY)
    """Bootstrap resamples of items behind each score's standard error."""
    lm_eval_tasks: tuple[str, ...] = field(
        default=(), metadata=unique("a harness task") | NOT_IDENTITY
    )
    """lm-evaluation-harness task or group names, scored in every mode of `modes` (needs the lmeval extra)."""
    lm_eval_include_path: str | None = field(default=None, metadata=NOT_IDENTITY)
    """A folder of local harness task YAMLs (offline use); a relative data_files path in one resolves against its YAML's folder."""
    lm_eval_limit: int = field(default=0, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """Items of each harness task (0 = all)."""
    lm_eval_num_fewshot: int = field(default=0, metadata=NON_NEGATIVE | NOT_IDENTITY)
    """Few-shot examples in each harness prompt (0 = zero-shot, as in the paper)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, mode in enumerate(self.modes):
            check(
                mode in SCORING_MODES,
                f"modes[{i}]",
                mode,
                f"must be one of {', '.join(repr(m) for m in SCORING_MODES)}",
            )
        for task in self.tasks:
            check(
                task in TASK_NAMES or task.endswith(".jsonl"),
                "tasks",
                task,
                f"each task must be one of {', '.join(TASK_NAMES)} or a .jsonl file",
            )
        for task in self.lm_eval_tasks:
            check(
                task not in self.task_names,
                "lm_eval_tasks",
                task,
                "also named in evaluation.tasks: results would not tell the two apart",
            )

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks as results name them: a file task by its stem."""
        return tuple(t.rsplit("/", 1)[-1].removesuffix(".jsonl") for t in self.tasks)

    def item_limit(self, requested_task: str) -> int:
        """How many items a task of this name is scored on (0: all of them): `task_items`
        for a built-in task, `lm_eval_limit` for a harness task, all for a JSONL file."""
        if requested_task in TASK_NAMES:
            return self.task_items
        return self.lm_eval_limit if requested_task in self.lm_eval_tasks else 0

    def num_fewshot(self, requested_task: str) -> int:
        return self.lm_eval_num_fewshot if requested_task in self.lm_eval_tasks else 0


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "held_out": HeldOutConfig,
    "evaluation": EvalConfig,
}

# (old section, field name) -> section now, for fields moved between sections: a mapping
# written before the move (a run folder's config.yaml, a sweep file) still loads.
MOVED_FIELDS = {
    (old_section, f.name): section
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if "key" in f.metadata
    for old_section in [f.metadata["key"].partition(".")[0]]
    if old_section != section
}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Transformer shape."""
    data: DataConfig = field(default_factory=DataConfig)
    """Corpus, split and repetition."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """The AR / MD mix and masking."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Budget, batch, seed and run mechanics."""
    held_out: HeldOutConfig = field(default_factory=HeldOutConfig)
    """Held-out loss curve: how often, on how many sequences, with which MD masking draws."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Zero-shot multiple-choice evaluation of the final model."""

    def __post_init__(self) -> None:
        if not DATA_SOURCES[self.data.source].token_ids and self.model.vocab_size < MIN_BPE_VOCAB:
            raise ConfigError(
                f"model.vocab_size: a byte-level BPE over text needs at least {MIN_BPE_VOCAB} "
                f"entries (256 bytes + 4 specials) (got {self.model.vocab_size})"
            )
        if (
            self.objective.mix_allocation == "step"
            and 0 < self.objective.alpha < 1
            and self.train.batch_size < 2
        ):
            raise ConfigError(
                f"train.batch_size: mix_allocation 'step' puts both objectives in every batch of "
                f"a mix (alpha={self.objective.alpha:g}), which needs at least 2 sequences "
                f"(got {self.train.batch_size}); raise batch_size or use mix_allocation 'sequence'"
            )
        batch_tokens = self.train.batch_size * self.model.seq_len
        if self.train.token_budget < batch_tokens:
            raise ConfigError(
                f"train.token_budget: {self.train.token_budget} tokens is less than one batch "
                f"(batch_size {self.train.batch_size} x seq_len {self.model.seq_len} = {batch_tokens})"
            )
        if self.unique_tokens < batch_tokens:
            raise ConfigError(
                f"data.repetitions: R={self.data.repetitions} leaves token_budget / R = "
                f"{self.train.token_budget // self.data.repetitions} unique tokens, fewer than one "
                f"batch ({batch_tokens} tokens = batch_size {self.train.batch_size} x seq_len "
                f"{self.model.seq_len}); raise train.token_budget or lower data.repetitions"
            )

    # Derived sizes: pure arithmetic on the config, shared by training, planning and tests.
    @property
    def steps(self) -> int:
        """Optimizer steps: the budget in whole batches."""
        return self.train.token_budget // (self.train.batch_size * self.model.seq_len)

    @property
    def tokens(self) -> int:
        """Tokens actually trained on (the budget rounded down to whole batches)."""
        return self.steps * self.train.batch_size * self.model.seq_len

    @property
    def unique_sequences(self) -> int:
        """Sequences in the unique subset: budget / R rounded down to whole sequences."""
        return self.train.token_budget // self.data.repetitions // self.model.seq_len

    @property
    def unique_tokens(self) -> int:
        return self.unique_sequences * self.model.seq_len

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with fields changed by their (unique) names, e.g. `replace(alpha=0.5)`."""
        raw = to_plain(self)  # the current layout: nothing to upgrade (config/loading.py)
        for name, value in flat.items():
            raw[section_of(name)][name] = to_plain(value)
        return build(RunConfig, raw)


def section_of(name: str) -> str:
    """The section holding field `name` (names are unique across sections)."""
    names = {}
    for section, cls in SECTIONS.items():
        names.update({f.name: section for f in dataclasses.fields(cls)})
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"; did you mean {close[0]!r} ({names[close[0]]}.{close[0]})?" if close else ""
    raise ConfigError(f"{name}: no such config field{hint}")


def flat_fields(config: RunConfig) -> dict[str, Any]:
    """Every resolved field by its plain name: the columns of a run's summary row."""
    return {
        f.name: to_plain(getattr(getattr(config, section), f.name))
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    }


def run_label(config: RunConfig) -> str:
    """A run's name for people and tools: `alpha0.984375_R4_seed0_<run_key>` (trial folders,
    TensorBoard and W&B runs)."""
    alpha = f"{config.objective.alpha:.6g}"
    return f"alpha{alpha}_R{config.data.repetitions}_seed{config.train.seed}_{run_key(config)}"


def run_hparams(config: RunConfig) -> dict[str, float | int | str]:
    """The settings a run is compared by, flat, for loggers' hyperparameter views."""
    return {
        "alpha": config.objective.alpha,
        "repetitions": config.data.repetitions,
        "seed": config.train.seed,
        "run_key": run_key(config),
        "objectives": "+".join(config.objective.objectives),
        "d_model": config.model.d_model,
        "n_layers": config.model.n_layers,
        "token_budget": config.train.token_budget,
        "optimizer": config.optim.optimizer,
        "lr": config.optim.lr,
        "source": config.data.source,
    }


def run_key(config: RunConfig) -> str:
    """Stable identity of a run: a hash of every field that can change the trained model,
    each under `section.name` (or the name in its `key_name` metadata, for a moved field)."""
    identity = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            value = getattr(getattr(config, section), f.name)
            kind = f.metadata.get("identity", True)
            unless_default = kind == IDENTITY_UNLESS_DEFAULT["identity"]
            if kind is True or (unless_default and to_plain(value) != to_plain(f.default)):
                identity[f.metadata.get("key", f"{section}.{f.name}")] = to_plain(value)
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
