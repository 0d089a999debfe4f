"""Data: sources, the document-level split, the tokenizer cache, nested repetition subsets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from dualsweep.config import DataConfig, run_config_from_dict
from dualsweep.data import DataError, RepetitionPlan, prepare_corpus
from dualsweep.data.builtin import builtin_documents
from dualsweep.data.corpus import is_validation
from dualsweep.data.datamodule import DualSweepData, StepBatches
from dualsweep.data.tokenizer import load_tokenizer

from .helpers import write_text_corpus

VOCAB = 300


def documents_of(stream: np.ndarray, eos: int) -> list[tuple[int, ...]]:
    """Split a flat token stream (an array, or a corpus's TokenStream) into documents at eos
    (each keeps its eos)."""
    stream = np.asarray(stream)
    ends = np.flatnonzero(stream == eos) + 1
    return [tuple(d) for d in np.split(stream, ends) if len(d)]


def text_config(path, tmp_path, **fields) -> DataConfig:
    return DataConfig(
        source="text_dir", path=str(path), cache_dir=str(tmp_path / "cache"), **fields
    )


@pytest.mark.slow  # 10 s; the slow test_prepare.py check of the committed study's hashes implies it too
def test_builtin_corpus_is_deterministic_and_offline():
    # Deterministic across processes, whatever their hash seed (set and dict order): another
    # process with another PYTHONHASHSEED, running meanwhile, extracts the same documents.
    digest = "import hashlib; from dualsweep.data.builtin import builtin_documents as b; "
    digest += "print(hashlib.sha256('\\0'.join(b()).encode()).hexdigest())"
    other = subprocess.Popen(
        [sys.executable, "-c", digest],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        stdout=subprocess.PIPE,
        text=True,
    )
    documents = builtin_documents()
    assert (
        other.communicate(timeout=300)[0].strip()
        == hashlib.sha256("\0".join(documents).encode()).hexdigest()
    )
    assert len(documents) > 1000 and len(set(documents)) == len(documents)
    assert all(len(d) >= 20 for d in documents)


def test_split_follows_document_content(text_corpus, tmp_path):
    corpus = prepare_corpus(text_config(text_corpus, tmp_path), VOCAB, log=lambda m: None)
    tokenizer = load_tokenizer(corpus.meta["tokenizer"])
    texts = [p.read_text() for p in sorted(text_corpus.glob("*.txt"))]
    held_out = [t for t in texts if is_validation(t.encode(), 0.05)]
    decoded = [
        tokenizer.decode(list(d[:-1]))
        for d in documents_of(corpus.validation_tokens, corpus.special.eos)
    ]
    assert decoded == held_out and 0 < len(held_out) < len(texts)
    train_docs = {
        tokenizer.decode(list(d[:-1]))
        for d in documents_of(corpus.train_tokens, corpus.special.eos)
    }
    assert train_docs == set(texts) - set(held_out)


def test_preparation_is_stable_and_cached(text_corpus, tmp_path):
    logs = []
    a = prepare_corpus(text_config(text_corpus, tmp_path / "a"), VOCAB, log=logs.append)
    b = prepare_corpus(text_config(text_corpus, tmp_path / "b"), VOCAB, log=logs.append)
    assert np.array_equal(a.train_tokens, b.train_tokens)
    assert np.array_equal(a.validation_tokens, b.validation_tokens)
    assert a.corpus_hash == b.corpus_hash
    n_logs = len(logs)
    again = prepare_corpus(text_config(text_corpus, tmp_path / "a"), VOCAB, log=logs.append)
    assert len(logs) == n_logs and again.directory == a.directory  # served from the cache


def test_order_seed_reorders_training_documents_only(text_corpus, tmp_path):
    a = prepare_corpus(text_config(text_corpus, tmp_path), VOCAB, log=lambda m: None)
    b = prepare_corpus(text_config(text_corpus, tmp_path, order_seed=1), VOCAB, log=lambda m: None)
    eos = a.special.eos
    assert np.array_equal(a.validation_tokens, b.validation_tokens)
    docs_a, docs_b = documents_of(a.train_tokens, eos), documents_of(b.train_tokens, eos)
    assert Counter(docs_a) == Counter(docs_b) and docs_a != docs_b


def test_adding_documents_does_not_move_the_split(tmp_path):
    small = write_text_corpus(tmp_path / "small", n_documents=200)
    large = write_text_corpus(tmp_path / "large", n_documents=400)  # the same first 200 documents
    held = lambda root: {p.name for p in root.glob("*.txt") if is_validation(p.read_bytes(), 0.1)}  # noqa: E731
    assert held(small) == {name for name in held(large) if int(name[3:7]) < 200}


def run_config(path, tmp_path, repetitions, budget=32 * 16 * 64, **train):
    return run_config_from_dict(
        {
            "model": {
                "vocab_size": VOCAB,
                "seq_len": 16,
                "d_model": 16,
                "n_heads": 2,
                "ffn_hidden": 32,
            },
            "data": {
                "source": "text_dir",
                "path": str(path),
                "cache_dir": str(tmp_path / "cache"),
                "repetitions": repetitions,
            },
            "train": {"token_budget": budget, "batch_size": 16, **train},
        }
    )


def test_repetition_subsets_are_nested_and_seen_r_times(text_corpus, tmp_path):
    subsets = {}
    for r in (1, 2, 4, 8, 16, 32, 64):
        config = run_config(text_corpus, tmp_path, r)
        data = DualSweepData(config, log=lambda m: None)
        data.setup()
        subset = data.unique_subset
        # budget / R tokens, to within one sequence; epochs = R.
        assert abs(subset.size - config.train.token_budget / r) < config.model.seq_len
        assert data.plan.epochs == r
        seen = Counter(
            int(i) for step in range(data.plan.steps) for i in data.plan.sequence_ids(step)
        )
        assert seen == dict.fromkeys(range(len(subset)), r)
        subsets[r] = subset
    for r, smaller in subsets.items():
        if r > 1:
            assert np.array_equal(subsets[r // 2][: len(smaller)], smaller)


def test_held_out_documents_are_in_no_training_subset(text_corpus, tmp_path):
    config = run_config(text_corpus, tmp_path, 1)
    data = DualSweepData(config, log=lambda m: None)
    data.setup()
    eos = data.corpus.special.eos
    held_out = set(documents_of(data.corpus.validation_tokens, eos))
    # The R = 1 subset is the largest; every other subset is a prefix of it.
    training = set(documents_of(data.unique_subset.ravel(), eos))
    assert held_out and not held_out & training
    held_out_rows = {tuple(row) for row in data.held_out_tokens().tolist()}
    assert not held_out_rows & {tuple(row) for row in data.unique_subset.tolist()}


def test_epochs_are_reshuffled_with_the_seed():
    plan = RepetitionPlan(unique_sequences=64, batch_size=16, steps=16, seed=3)
    assert not np.array_equal(plan.epoch_order(0), plan.epoch_order(1))
    again = RepetitionPlan(unique_sequences=64, batch_size=16, steps=16, seed=3)
    assert np.array_equal(plan.epoch_order(2), again.epoch_order(2))
    other = RepetitionPlan(unique_sequences=64, batch_size=16, steps=16, seed=4)
    assert not np.array_equal(plan.epoch_order(0), other.epoch_order(0))
    # Batches straddling an epoch boundary take the end of one order and the start of the next.
    straddling = RepetitionPlan(unique_sequences=24, batch_size=16, steps=3, seed=0)
    ids = straddling.sequence_ids(1)
    assert np.array_equal(ids[:8], straddling.epoch_order(0)[16:])
    assert np.array_equal(ids[8:], straddling.epoch_order(1)[:8])


def test_batches_are_a_function_of_the_step(text_corpus, tmp_path):
    data = DualSweepData(run_config(text_corpus, tmp_path, 4), log=lambda m: None)
    data.setup()
    full = StepBatches(data.unique_subset, data.plan)
    resumed = StepBatches(data.unique_subset, data.plan, start_step=5)
    assert len(full) == 128 and len(resumed) == 123  # 32768 tokens / (16 x 16) per step
    assert full[7]["step"] == resumed[2]["step"] == 7
    assert full[7]["tokens"].equal(resumed[2]["tokens"])


def test_corpus_too_small_for_the_subset(text_corpus, tmp_path):
    config = run_config(text_corpus, tmp_path, 1, budget=2_000_000)
    with pytest.raises(
        DataError, match=r"^data\.repetitions: R=1 with train\.token_budget=2000000 needs"
    ):
        DualSweepData(config, log=lambda m: None).setup()


def test_jsonl_source(tmp_path):
    path = tmp_path / "docs.jsonl"
    texts = [f"record {i} " + "lorem ipsum dolor sit amet " * (i % 5 + 1) for i in range(200)]
    path.write_text("\n".join(json.dumps({"body": t}) for t in texts) + "\n")
    config = DataConfig(
        source="jsonl", path=str(path), text_field="body", cache_dir=str(tmp_path / "c")
    )
    corpus = prepare_corpus(config, VOCAB, log=lambda m: None)
    assert corpus.meta["train"]["documents"] + corpus.meta["validation"]["documents"] == 200

    path.write_text(
        json.dumps({"body": "fine"}) + "\n" + json.dumps({"text": "wrong field"}) + "\n"
    )
    with pytest.raises(DataError, match=r"docs\.jsonl:2: no string field data\.text_field='body'"):
        prepare_corpus(config, VOCAB, log=lambda m: None)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match=r"docs\.jsonl:1: not valid JSON"):
        prepare_corpus(config, VOCAB, log=lambda m: None)


def test_token_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    rng = np.random.default_rng(0)
    eos = 5
    documents = [np.append(rng.integers(6, 90, rng.integers(10, 40)), eos) for _ in range(300)]
    np.save(shards / "part0.npy", np.concatenate(documents[:150]).astype(np.uint16))
    np.concatenate(documents[150:]).astype(np.uint16).tofile(shards / "part1.bin")
    config = DataConfig(
        source="shards", path=str(shards), shard_eos_id=eos, cache_dir=str(tmp_path / "c")
    )
    corpus = prepare_corpus(config, 100, log=lambda m: None)
    assert corpus.special.eos == eos and corpus.special.mask == 99  # the last ids are reserved
    prepared = documents_of(corpus.train_tokens, eos) + documents_of(corpus.validation_tokens, eos)
    assert Counter(prepared) == Counter(tuple(d) for d in documents)
    with pytest.raises(DataError, match=r"^model\.vocab_size: shards hold token ids up to 89"):
        prepare_corpus(config, 90, log=lambda m: None)


def test_hf_source_without_datasets_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    config = DataConfig(source="hf", hf_dataset="wikitext", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"pip install 'dualsweep\[hf\]'"):
        prepare_corpus(config, VOCAB, log=lambda m: None)
