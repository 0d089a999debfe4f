"""A finished run folder, loaded: its config, final weights and tokenizer, and on demand its
special token ids and prepared corpus (`evaluate_run`, the lm-evaluation-harness adapter,
export and generation all start here)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dualsweep.config import ConfigError, RunConfig, load_run_config
from dualsweep.schema import CONFIG_FILE, CORPUS_FILE, MODEL_FILE, TOKENIZER_FILE
from dualsweep.special_tokens import SpecialTokens


class LoadedRun:
    """A finished run folder, loaded: its config, final model and tokenizer, with its special
    token ids and its corpus read when first used."""

    def __init__(self, run_dir: Path, config: RunConfig, model, tokenizer, log=print):
        self.run_dir, self.config, self.model, self.tokenizer = run_dir, config, model, tokenizer
        self.log = log

    @functools.cached_property
    def special(self) -> SpecialTokens:
        """The special ids: the folder's corpus.json; for a folder written before it, its
        tokenizer's specials (<|pad|>, <|bos|>, <|eos|>, <|mask|>), and failing both, its corpus."""
        from dualsweep.data.tokenizer import SPECIAL_TOKENS

        record = corpus_record(self.run_dir)
        if record is not None:
            return SpecialTokens(**record["special"])
        if self.tokenizer is not None:
            ids = [self.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
            if None not in ids:
                return SpecialTokens(pad=ids[0], bos=ids[1], eos=ids[2], mask=ids[3])
        return self.corpus.special

    @functools.cached_property
    def corpus(self):
        """The run's prepared corpus, opened (or prepared) on first use: only the built-in
        tasks and the held-out losses read it; the model, its tokenizer, export, generation
        and harness tasks do not."""
        return _run_corpus(self)


def load_run(
    run_dir: str | Path, device: str = "cpu", log: Callable[[str], None] = print
) -> LoadedRun:
    """A finished run's config, final model (eval mode, on `device`), tokenizer and special
    token ids, from the folder alone (no corpus: see `LoadedRun.corpus`)."""
    import torch

    from dualsweep.data.tokenizer import load_tokenizer
    from dualsweep.model import Transformer

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{run_dir}: no model.pt (is this a finished run folder?)")
    config = load_run_config(run_dir / CONFIG_FILE)
    model = Transformer(config.model)
    try:
        weights = torch.load(run_dir / MODEL_FILE, map_location=device, weights_only=True)
        model.load_state_dict(weights)
    except Exception as e:  # noqa: BLE001 - truncated, empty, foreign or mismatched weights
        raise ConfigError(
            f"{run_dir / MODEL_FILE}: unreadable model weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'}); train the run again"
        ) from None
    model.to(device).eval()
    tokenizer_path = run_dir / TOKENIZER_FILE
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path.is_file() else None
    return LoadedRun(run_dir, config, model, tokenizer, log=log)


def corpus_record(run_dir: Path) -> dict | None:
    """The folder's corpus.json (None for a folder written before it existed)."""
    path = run_dir / CORPUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _run_corpus(run: LoadedRun):
    from dualsweep.data.corpus import prepare_corpus
    from dualsweep.data.sources import DataError

    data = run.config.data
    where = f"data.source {data.source}" + (f", data.path {data.path}" if data.path else "")
    try:
        corpus = prepare_corpus(data, run.config.model.vocab_size, log=run.log)
    except (DataError, ConfigError) as e:
        raise ConfigError(
            f"{run.run_dir}: the built-in tasks and held-out losses read the run's corpus "
            f"({where}), which cannot be opened here: {e} (the model, export, generation and "
            "harness tasks do not need it)"
        ) from None
    record = corpus_record(run.run_dir)
    if record is not None and record["corpus_hash"] != corpus.corpus_hash:
        raise ConfigError(
            f"{run.run_dir}: the corpus at {where} is not the one the run was trained on "
            f"(hash {corpus.corpus_hash}, the run's {record['corpus_hash']}): its held-out "
            "set would differ"
        )
    return corpus


def held_out_documents(run: LoadedRun) -> list[str]:
    """The corpus's held-out documents as text (never training documents)."""
    stream = np.asarray(run.corpus.validation_tokens)
    eos = run.special.eos
    ends = np.flatnonzero(stream == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [
        run.tokenizer.decode(stream[s:e].tolist())
        for s, e in zip(starts, ends, strict=True)
        if e > s
    ]
