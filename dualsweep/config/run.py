"""The run configuration: what one training run of one (alpha, repetitions) point needs.

Five frozen sections (model, data, objective, optim, train) inside `RunConfig`. Every field
has a one-line docstring and every field name is unique across sections, so the flattened
config (`flat_fields`) gives the Parquet column names users query (`alpha`, `repetitions`,
`d_model`, ...) with the same names as in YAML and code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dualsweep.config.fields import ConfigError, to_plain

# Field metadata: fields marked `identity=False` change how a run is shown, logged or
# evaluated, never the trained model, so they are left out of the run key (a finished run is
# not re-trained because a progress bar was switched off or a task was added).
NOT_IDENTITY = {"identity": False}


# Byte-level BPE keeps all 256 bytes plus the four specials (pad, bos, eos, mask).
MIN_BPE_VOCAB = 256 + 4


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {why} (got {value!r})")


def _check_seed(name: str, value: int) -> None:
    _check(0 <= value < 2**32, name, value, "must be in [0, 2^32)")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    vocab_size: int = 1024
    """Vocabulary size: embedding rows, and the size the BPE tokenizer is trained to."""
    n_layers: int = 4
    """Number of transformer blocks."""
    d_model: int = 128
    """Hidden width."""
    n_heads: int = 4
    """Attention heads; d_model / n_heads must be an even head dimension (RoPE rotates pairs)."""
    ffn_hidden: int = 512
    """Hidden width of the SwiGLU feed-forward layer."""
    seq_len: int = 128
    """Context length: tokens per training sequence."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_embeddings: bool = True
    """Share the input embedding matrix with the output head."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation (residual projections are scaled down by depth)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layers", "d_model", "n_heads", "ffn_hidden"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be positive")
        _check(self.seq_len >= 2, "seq_len", self.seq_len, "must be at least 2 (one target)")
        _check(self.vocab_size >= 8, "vocab_size", self.vocab_size, "must be at least 8")
        _check(
            self.d_model % self.n_heads == 0 and (self.d_model // self.n_heads) % 2 == 0,
            "n_heads",
            self.n_heads,
            f"must divide d_model={self.d_model} into an even head dimension",
        )
        for name in ("rope_theta", "norm_eps", "init_std"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "must be positive")

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


DataSource = Literal["builtin", "text_dir", "jsonl", "shards", "hf"]


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    source: DataSource = "builtin"
    """Corpus: builtin (stdlib docstrings + pydoc topics), text_dir, jsonl, shards or hf."""
    path: str = ""
    """Folder of .txt files (text_dir), a .jsonl file or folder (jsonl), or a folder of .npy/.bin token shards (shards)."""
    text_field: str = "text"
    """Name of the text field in JSONL records and HF datasets."""
    hf_dataset: str = ""
    """HF `datasets` name, for source hf (needs the `hf` extra and a network on first use)."""
    hf_config: str = ""
    """HF dataset configuration name, for source hf."""
    hf_split: str = "train"
    """HF dataset split to read, for source hf."""
    max_documents: int = 0
    """Read at most this many documents from the source (0 = all)."""
    shard_dtype: Literal["uint16", "uint32"] = "uint16"
    """Integer type of raw .bin token shards."""
    shard_eos_id: int = -1
    """Document separator id inside token shards (required for source shards)."""
    validation_fraction: float = 0.05
    """Share of documents held out for validation (chosen by a hash of each document)."""
    validation_sequences: int = 64
    """Held-out sequences evaluated at each evaluation (the same ones for every run)."""
    repetitions: int = 1
    """R: the unique training subset is token_budget / R tokens, seen R times."""
    order_seed: int = 0
    """Seed of the one document order whose prefixes are the unique subsets (keep fixed across a sweep)."""
    document_masking: bool = False
    """Stop attention at document boundaries inside packed sequences."""
    cache_dir: str = field(default="", metadata=NOT_IDENTITY)
    """Where prepared corpora and tokenizers are cached ('' = $DUALSWEEP_CACHE or ~/.cache/dualsweep)."""

    def __post_init__(self) -> None:
        _check(
            isinstance(self.repetitions, int) and self.repetitions >= 1,
            "repetitions",
            self.repetitions,
            "must be a positive integer",
        )
        _check(
            0 < self.validation_fraction < 1,
            "validation_fraction",
            self.validation_fraction,
            "must be strictly between 0 and 1",
        )
        _check(
            self.validation_sequences >= 1,
            "validation_sequences",
            self.validation_sequences,
            "must be positive",
        )
        _check(self.max_documents >= 0, "max_documents", self.max_documents, "must be >= 0")
        _check_seed("order_seed", self.order_seed)
        if self.source in ("text_dir", "jsonl", "shards"):
            _check(bool(self.path), "path", self.path, f"is required for source {self.source!r}")
        if self.source == "hf":
            _check(
                bool(self.hf_dataset), "hf_dataset", self.hf_dataset, "is required for source 'hf'"
            )
        if self.source == "shards":
            _check(
                self.shard_eos_id >= 0,
                "shard_eos_id",
                self.shard_eos_id,
                "is required for source 'shards' (the document separator id)",
            )


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig:
    alpha: float = 1.0
    """Weight of the autoregressive loss: alpha * L_AR + (1 - alpha) * L_MD (fractions like 63/64 allowed)."""
    mix_allocation: Literal["sequence", "step"] = "step"
    """How alpha splits a batch: step (every batch of a 0 < alpha < 1 mix holds both objectives, loss alpha * mean AR + (1 - alpha) * mean MD) or sequence (whole sequences assigned so the cumulative AR share tracks alpha, each weighing 1/B)."""
    mask_rate_sampling: Literal["uniform", "stratified"] = "uniform"
    """How masked-diffusion rates t are drawn: i.i.d. U(0,1), or stratified across a batch."""
    min_mask_rate: float = 1e-3
    """Lower clip of t, keeping the 1/t weight finite."""
    md_eval_draws: int = 4
    """K: masking draws averaged in the held-out MD ELBO."""
    held_out_seed: int = 0
    """Seed of the held-out masking draws (the same masks for every run and evaluation)."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "must be in [0, 1]")
        _check(
            0 < self.min_mask_rate < 1,
            "min_mask_rate",
            self.min_mask_rate,
            "must be strictly between 0 and 1",
        )
        _check(self.md_eval_draws >= 1, "md_eval_draws", self.md_eval_draws, "must be positive")
        _check_seed("held_out_seed", self.held_out_seed)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    optimizer: Literal["adamw", "muon"] = "adamw"
    """adamw for everything, or muon for 2-D hidden weights with AdamW for the rest (as the paper)."""
    lr: float = 2e-3
    """Peak AdamW learning rate."""
    muon_lr: float = 0.02
    """Peak Muon learning rate (optimizer muon only)."""
    muon_momentum: float = 0.95
    """Muon momentum (Nesterov)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    weight_decay: float = 0.1
    """Decoupled weight decay of the blocks' hidden matrices (embeddings, output head and norms are not decayed)."""
    warmup_fraction: float = 0.05
    """Share of steps spent warming the learning rate up linearly from 0."""
    decay_fraction: float = 0.2
    """Share of steps at the end spent decaying the learning rate (warmup-stable-decay)."""
    decay_shape: Literal["linear", "sqrt"] = "linear"
    """Shape of the final decay: linear, or 1 - sqrt (as in WSD papers)."""
    final_lr_fraction: float = 0.0
    """Learning rate at the end of the decay, as a fraction of the peak."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 = no clipping)."""

    def __post_init__(self) -> None:
        for name in ("lr", "muon_lr"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "must be positive")
        _check(
            0 <= self.muon_momentum < 1, "muon_momentum", self.muon_momentum, "must be in [0, 1)"
        )
        _check(all(0 <= b < 1 for b in self.betas), "betas", self.betas, "must be in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(
            0 <= self.warmup_fraction <= 1,
            "warmup_fraction",
            self.warmup_fraction,
            "must be in [0, 1]",
        )
        _check(
            0 <= self.decay_fraction <= 1,
            "decay_fraction",
            self.decay_fraction,
            "must be in [0, 1]",
        )
        _check(
            self.warmup_fraction + self.decay_fraction <= 1,
            "decay_fraction",
            self.decay_fraction,
            f"plus warmup_fraction={self.warmup_fraction} must not exceed 1",
        )
        _check(
            0 <= self.final_lr_fraction <= 1,
            "final_lr_fraction",
            self.final_lr_fraction,
            "must be in [0, 1]",
        )
        _check(self.grad_clip >= 0, "grad_clip", self.grad_clip, "must be >= 0")


Logger = Literal["csv", "tensorboard", "wandb"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    token_budget: int = 1_048_576
    """Training tokens seen by the model (steps = token_budget // (batch_size * seq_len))."""
    batch_size: int = 16
    """Sequences per optimizer step."""
    micro_batch_size: int = field(default=0, metadata=NOT_IDENTITY)
    """Sequences per forward pass, dividing batch_size (gradient accumulation); 0 = the whole batch."""
    seed: int = 0
    """Seed of initialisation, epoch shuffles and masking draws."""
    log_interval: int = 10
    """Steps between logged training rows."""
    eval_interval: int = 100
    """Steps between held-out evaluations (also at the start and the end; 0 = only those)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: cuda if available under auto."""
    precision: Literal["auto", "32", "bf16-mixed"] = "auto"
    """Numeric precision: bf16-mixed on GPU and 32 on CPU under auto."""
    threads: int = 0
    """Torch CPU threads (0 = torch's default)."""
    compile: bool = False
    """torch.compile the model."""
    loggers: tuple[Logger, ...] = field(default=("csv",), metadata=NOT_IDENTITY)
    """Experiment loggers: any of csv, tensorboard, wandb."""
    progress_bar: bool = field(default=True, metadata=NOT_IDENTITY)
    """Show a progress bar while training."""
    checkpoint_interval: int = field(default=0, metadata=NOT_IDENTITY)
    """Steps between resumable checkpoints, a multiple of log_interval (0 = none)."""

    def __post_init__(self) -> None:
        for name in ("token_budget", "batch_size", "log_interval"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be positive")
        _check(self.eval_interval >= 0, "eval_interval", self.eval_interval, "must be >= 0")
        _check(self.threads >= 0, "threads", self.threads, "must be >= 0")
        _check(
            self.micro_batch_size >= 0
            and (self.micro_batch_size == 0 or self.batch_size % self.micro_batch_size == 0),
            "micro_batch_size",
            self.micro_batch_size,
            f"must be 0 or divide batch_size={self.batch_size}",
        )
        _check_seed("seed", self.seed)
        _check(
            self.checkpoint_interval >= 0 and self.checkpoint_interval % self.log_interval == 0,
            "checkpoint_interval",
            self.checkpoint_interval,
            f"must be 0 or a multiple of log_interval={self.log_interval} (checkpoints are taken at log steps)",
        )
        _check(
            len(set(self.loggers)) == len(self.loggers),
            "loggers",
            self.loggers,
            "lists a logger twice",
        )


Mode = Literal["ar", "md", "prefix"]
BUILTIN_TASKS = ("continuation", "word_order", "cloze")
"""Multiple-choice tasks built from the held-out documents (see `dualsweep.evaluate.tasks`)."""


def strategy_name(mode: str, span: int) -> str:
    """How choice tokens are read in `mode`: next-token reading, or the MD masking strategy
    for `md_mask_span` = `span` (the `strategy` column of evals rows)."""
    if mode != "md":
        return "next_token"
    return "pll" if span == 1 else ("all_masked" if span == 0 else f"span_{span}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    tasks: tuple[str, ...] = field(default=("continuation", "word_order"), metadata=NOT_IDENTITY)
    """Multiple-choice tasks run on the final model: built-in names (BUILTIN_TASKS: continuation, word_order, cloze) or .jsonl paths."""
    modes: tuple[Mode, ...] = field(default=("ar", "md", "prefix"), metadata=NOT_IDENTITY)
    """Scoring modes: ar (log-likelihood), md (pseudo-log-likelihood), prefix (prefix-LM)."""
    md_mask_span: int = field(default=1, metadata=NOT_IDENTITY)
    """MD scoring: choice tokens masked together (1 = one at a time, the classic PLL; 0 = all at once)."""
    task_items: int = field(default=200, metadata=NOT_IDENTITY)
    """Items of each built-in task."""
    task_seed: int = field(default=0, metadata=NOT_IDENTITY)
    """Seed of the built-in tasks' items (the same items for every run)."""
    bootstrap_samples: int = field(default=1000, metadata=NOT_IDENTITY)
    """Bootstrap resamples of items behind each score's standard error."""

    def __post_init__(self) -> None:
        _check(len(set(self.tasks)) == len(self.tasks), "tasks", self.tasks, "lists a task twice")
        _check(len(set(self.modes)) == len(self.modes), "modes", self.modes, "lists a mode twice")
        _check_seed("task_seed", self.task_seed)
        for name, minimum in (("md_mask_span", 0), ("task_items", 1), ("bootstrap_samples", 2)):
            _check(
                getattr(self, name) >= minimum, name, getattr(self, name), f"must be >= {minimum}"
            )
        for task in self.tasks:
            _check(
                task in BUILTIN_TASKS or task.endswith(".jsonl"),
                "tasks",
                task,
                f"each task must be one of {', '.join(BUILTIN_TASKS)} or a .jsonl file",
            )


SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "evaluation": EvalConfig,
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
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Zero-shot multiple-choice evaluation of the final model."""

    def __post_init__(self) -> None:
        if self.data.source != "shards" and self.model.vocab_size < MIN_BPE_VOCAB:
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
        from dualsweep.config.loading import run_config_from_dict

        raw = to_plain(self)
        for name, value in flat.items():
            raw[section_of(name)][name] = to_plain(value)
        return run_config_from_dict(raw)


def section_of(name: str) -> str:
    """The section holding field `name` (names are unique across sections)."""
    for section, cls in SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return section
    raise ConfigError(f"{name}: no such config field")


def flat_fields(config: RunConfig) -> dict[str, Any]:
    """Every resolved field by its plain name: the columns of a run's summary row."""
    return {
        f.name: to_plain(getattr(getattr(config, section), f.name))
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    }


def run_key(config: RunConfig) -> str:
    """Stable identity of a run: a hash of every field that can change the trained model."""
    identity = {
        f"{section}.{f.name}": to_plain(getattr(getattr(config, section), f.name))
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.metadata.get("identity", True)
    }
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
