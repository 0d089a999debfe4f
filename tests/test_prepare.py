"""`dualsweep prepare`: raw text to token shards, streamed, in parallel, resumable; the shards
read in place by training; bad input refused with the file named."""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dualsweep.config import ConfigError, DataConfig, build_section
from dualsweep.data import shards as shards_module
from dualsweep.data.corpus import is_validation, prepare_corpus
from dualsweep.data.prepare import STAGING, PrepareSettings, prepare
from dualsweep.data.shards import ShardWriter, TokenStream
from dualsweep.data.sources import DataError

from .helpers import REPO, WORDS, tiny_run_config

VOCAB = 320


def write_corpus(root: Path, files: int = 120, per_file_words: int = 2000, seed: int = 1) -> Path:
    """`files` text files of random sentences over a growing word list (distinct documents)."""
    rng = np.random.default_rng(seed)
    words = WORDS + [f"{w}{i}" for w in WORDS for i in range(8)]
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        text = " ".join(rng.choice(words, size=per_file_words))
        (root / f"part-{i:03d}.txt").write_text(f"file {i}. {text}.")
    return root


def data_config(path: Path, **fields) -> DataConfig:
    return DataConfig(source="text_dir", path=str(path), **fields)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but verified.json's (it records modification times)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != shards_module.VERIFIED_FILE
    }


SMALL = {"memory_mb": 1, "shard_tokens": 40_000}  # chunks of 131,072 tokens, many shards


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"workers": 0}, r"^prepare\.workers: must be a positive integer \(got 0\)$"),
        ({"memory_mb": 0.5}, r"^prepare\.memory_mb: expected an integer \(got 0\.5\)$"),
        (
            {"shard_tokens": -1},
            r"^prepare\.shard_tokens: must be a non-negative integer \(got -1\)$",
        ),
        ({"tokenizer_sample_mb": "lots"}, r"^prepare\.tokenizer_sample_mb: expected an integer"),
        ({"worker": 2}, r"^prepare\.worker: unknown field; did you mean 'workers'\?"),
    ],
)
def test_prepare_settings_are_checked_like_a_config_section(raw, message):
    with pytest.raises(ConfigError, match=message):
        build_section(PrepareSettings, raw, "prepare")


def test_prepare_settings_built_in_python_follow_the_same_rules():
    with pytest.raises(ConfigError, match=r"^memory_mb: must be a positive integer \(got 0\)$"):
        PrepareSettings(memory_mb=0)
    settings = build_section(PrepareSettings, {"shard_tokens": "0", "workers": 4.0}, "prepare")
    assert (settings.shard_tokens, settings.workers, settings.memory_mb) == (0, 4, 1024)


def test_the_prepare_flags_are_the_settings_fields(capsys, monkeypatch):
    import dataclasses

    from dualsweep.cli.parser import build_parser
    from dualsweep.config import field_docs

    parser = build_parser()
    names = [f.name for f in dataclasses.fields(PrepareSettings)]
    args = parser.parse_args(["prepare", "--config", "c.yaml", "--out", "o"])
    assert PrepareSettings(**{n: getattr(args, n) for n in names}) == PrepareSettings()
    given = ["--workers", "3", "--shard-tokens", "0", "--tokenizer-sample-mb", "2"]
    args = parser.parse_args(["prepare", "--config", "c.yaml", "--out", "o", *given])
    settings = PrepareSettings(**{n: getattr(args, n) for n in names})
    assert settings == PrepareSettings(workers=3, shard_tokens=0, tokenizer_sample_mb=2)
    monkeypatch.setenv("COLUMNS", "1000")  # help on one line per flag: no hyphen broken
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in names:  # each field a flag, its docstring the help
        assert f"--{name.replace('_', '-')} " in shown, name
        assert field_docs(PrepareSettings)[name][1:].rstrip(".") in shown, name
    with pytest.raises(SystemExit):  # refused by the field's own rule, at parse time
        parser.parse_args(["prepare", "--config", "c.yaml", "--out", "o", "--workers", "0"])
    assert "argument --workers: must be a positive integer (got 0)" in capsys.readouterr().err


def test_a_killed_preparation_resumes_to_the_uninterrupted_shards(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")  # ~1.7 MB of text: about ten staging chunks
    whole = tmp_path / "whole"  # uninterrupted, encoded in this one process
    index = prepare(
        data_config(corpus), VOCAB, whole, PrepareSettings(workers=1, **SMALL), log=lambda m: None
    )
    assert index["train"]["documents"] + index["validation"]["documents"] == 120
    assert len(index["train"]["shards"]) > 5 and not (whole / STAGING).exists()

    # The same through the command line on 2 encoding processes, killed (SIGKILL) once pass 1
    # has staged a chunk, then run again: the same bytes as the uninterrupted one-process run.
    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "dualsweep", "prepare", "--config", str(REPO / "sweeps" / "smoke.yaml"),
        "--set", "source=text_dir", "--set", f"path={corpus}", "--set", f"vocab_size={VOCAB}",
        "--out", str(out), "--workers", "2", "--memory-mb", "1", "--shard-tokens", "40000",
    ]  # fmt: skip
    state = out / STAGING / "state.json"
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (state.is_file() and json.loads(state.read_text())["chunks"]):
        assert run.poll() is None, run.stderr.read()
        assert time.monotonic() < deadline, "no chunk was staged"
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    staged = len(json.loads(state.read_text())["chunks"])
    assert not (out / "index.json").exists() and staged >= 1

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming after {staged} staged chunks" in done.stdout
    assert folder_bytes(out) == folder_bytes(whole)


def test_a_preparation_stopped_while_writing_shards_resumes_to_the_same_shards(
    tmp_path, monkeypatch
):
    corpus = write_corpus(tmp_path / "corpus", files=40)
    config = data_config(corpus, validation_fraction=0.25)
    settings = PrepareSettings(**SMALL)
    whole = tmp_path / "whole"
    prepare(config, VOCAB, whole, settings, log=lambda m: None)

    # Fail the fourth shard's rename, as a kill there would leave it: half-written.
    real_replace, renamed = os.replace, []

    def failing_replace(source, target):
        if Path(target).name.startswith("train-"):
            renamed.append(target)
            if len(renamed) == 4:
                raise KeyboardInterrupt("stopped while writing shards")
        return real_replace(source, target)

    out = tmp_path / "stopped"
    monkeypatch.setattr(shards_module.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        prepare(config, VOCAB, out, settings, log=lambda m: None)
    monkeypatch.undo()
    assert (out / "train-00002.bin").is_file() and not (out / "train-00003.bin").exists()
    assert not list(out.glob(".*.tmp"))  # the shard being written was removed
    prepare(config, VOCAB, out, settings, log=lambda m: None)
    assert folder_bytes(out) == folder_bytes(whole)


def test_training_reads_prepared_shards_in_place(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=60)
    out = tmp_path / "shards"
    config = data_config(corpus, validation_fraction=0.2)
    index = prepare(config, VOCAB, out, PrepareSettings(**SMALL), log=lambda m: None)
    config = tiny_run_config(source="shards", path=str(out), repetitions=2)
    prepared = prepare_corpus(config.data, VOCAB, log=lambda m: None)
    assert prepared.directory == out  # read in place: no copy into the cache
    stream = prepared.train_tokens
    assert isinstance(stream, TokenStream) and len(stream.parts) == len(index["train"]["shards"])
    assert prepared.meta["tokenizer"] == str(out / "tokenizer.json")
    # Sequences that straddle shards are the flat stream's.
    flat = np.concatenate(
        [np.fromfile(out / s["file"], dtype=np.uint16) for s in index["train"]["shards"]]
    )
    sequences = prepared.training_sequences(32)
    rows = np.array([0, 1249, 1250, len(sequences) - 1])  # 40,000 / 32 = 1,250 per shard
    assert np.array_equal(sequences[rows], flat[: len(sequences) * 32].reshape(-1, 32)[rows])
    assert prepared.corpus_hash == index["corpus_hash"]
    # (test_sweep.py's data-parallel trial trains on such shards, through a sweep.)
    with pytest.raises(
        DataError, match=r"model\.vocab_size: 512, but the shards at .* vocabulary of 320"
    ):
        prepare_corpus(config.replace(vocab_size=512).data, 512)


@pytest.fixture
def prepared_shards(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=40)
    out = tmp_path / "shards"
    config = data_config(corpus, validation_fraction=0.2)
    index = prepare(config, VOCAB, out, PrepareSettings(**SMALL), log=lambda m: None)
    assert len(index["train"]["shards"]) > 2
    return tiny_run_config(source="shards", path=str(out), repetitions=2), out, index


@pytest.mark.parametrize("damage", ["truncate", "flip", "zero"])
def test_a_damaged_shard_is_refused_naming_it(prepared_shards, damage):
    """index.json holds each shard's size and checksum: a truncated shard is refused at every
    open, changed content (flipped or zeroed bytes, same size) the first time the changed file
    is used; the error names the shard."""
    config, out, index = prepared_shards
    prepare_corpus(config.data, VOCAB, log=lambda m: None)  # intact: opens
    shard = out / index["train"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 10]
    elif damage == "flip":
        data[1000] ^= 0xFF
    else:
        data[2000:2100] = bytes(100)
    shard.write_bytes(bytes(data))
    message = (
        "is truncated or was replaced" if damage == "truncate" else "does not match its checksum"
    )
    with pytest.raises(DataError, match=rf"{shard.name}: .*{message}"):
        prepare_corpus(config.data, VOCAB, log=lambda m: None)


def test_a_garbage_index_is_refused_naming_it(prepared_shards):
    config, out, _ = prepared_shards
    (out / "index.json").write_text("{not json")
    with pytest.raises(DataError, match=r"index\.json: unreadable"):
        prepare_corpus(config.data, VOCAB, log=lambda m: None)


def test_checksums_are_read_once_per_version_of_a_shard(prepared_shards, monkeypatch):
    config, out, index = prepared_shards
    read = []
    real = shards_module.file_checksum
    monkeypatch.setattr(shards_module, "file_checksum", lambda p: read.append(p.name) or real(p))
    prepare_corpus(config.data, VOCAB, log=lambda m: None)
    assert read == []  # prepare recorded them as verified when it wrote them
    shard = out / index["train"]["shards"][0]["file"]
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 1))  # "changed"
    prepare_corpus(config.data, VOCAB, log=lambda m: None)
    prepare_corpus(config.data, VOCAB, log=lambda m: None)
    assert read == [shard.name]  # read again once, then trusted


def test_prepare_refuses_a_folder_of_another_source_and_verifies_one_of_its_own(
    prepared_shards, capsys
):
    from dualsweep.cli import main

    config, out, index = prepared_shards
    source = out.parent / "corpus"
    args = ["prepare", "--config", str(REPO / "sweeps" / "smoke.yaml"), "--set", "source=text_dir"]
    args += ["--set", f"path={source}", "--set", "validation_fraction=0.2", "--out", str(out)]
    assert main([*args, "--set", "vocab_size=512"]) == 2  # another vocabulary
    assert "holds a preparation of another source or vocabulary" in capsys.readouterr().err
    assert main([*args, "--set", f"vocab_size={VOCAB}", "--verify"]) == 0
    assert "shards of the sizes and checksums index.json gives" in capsys.readouterr().out


def test_the_split_and_order_follow_the_corpus_rules(tmp_path):
    """Held-out documents by the hash of their text, in source order; training documents in
    the permutation of data.order_seed; compressed JSON lines read like plain ones."""
    texts = [f"document {i}: " + " ".join(WORDS[i % 7 :] * 3) for i in range(60)]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    packed = tmp_path / "packed" / "part.jsonl.gz"
    packed.parent.mkdir()
    with gzip.open(packed, "wt") as f:
        f.write(plain.read_text())
    indexes = []
    for path in (plain, packed.parent):
        config = DataConfig(source="jsonl", path=str(path), validation_fraction=0.2, order_seed=3)
        indexes.append(prepare(config, VOCAB, tmp_path / f"out-{len(indexes)}", log=lambda m: None))
    assert indexes[0]["corpus_hash"] == indexes[1]["corpus_hash"]
    out = tmp_path / "out-0"
    from dualsweep.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(out / "tokenizer.json")
    held_out = [t for t in texts if is_validation(t.encode(), 0.2)]
    training = [t for t in texts if not is_validation(t.encode(), 0.2)]
    order = np.random.default_rng(3).permutation(len(training))

    def stream(documents):
        return np.concatenate([tokenizer.encode(d).ids + [2] for d in documents]).astype(np.uint16)

    assert np.array_equal(np.fromfile(out / "validation-00000.bin", np.uint16), stream(held_out))
    assert np.array_equal(
        np.fromfile(out / "train-00000.bin", np.uint16), stream([training[i] for i in order])
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: (d / "a.jsonl").write_text('{"body": "x"}\n'),
            r"a\.jsonl:1: no string field data\.text_field='text'",
        ),
        (
            lambda d: (d / "a.jsonl").write_bytes(b'{"text": "\xff"}\n'),
            r"a\.jsonl:1: not UTF-8 text",
        ),
        (lambda d: (d / "a.jsonl.gz").write_bytes(b"not gzip"), r"a\.jsonl\.gz:1: unreadable"),
        (lambda d: (d / "a.jsonl").write_text("\n\n"), r"holds no training text"),
    ],
)
def test_bad_input_names_the_file_and_line(tmp_path, make, message):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    with pytest.raises(DataError, match=message):
        prepare(
            DataConfig(source="jsonl", path=str(folder)),
            VOCAB,
            tmp_path / "out",
            log=lambda m: None,
        )


def test_a_full_disk_removes_the_partial_shard_and_says_so(tmp_path, monkeypatch):
    writer = ShardWriter(tmp_path, "train", np.dtype(np.uint16), shard_tokens=100)
    writer.append(np.arange(150))  # one finished shard, one open

    class FullFile:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    writer._file = FullFile()
    with pytest.raises(
        DataError, match=r"train-00001\.bin: the disk is full \(the partial file was removed\)"
    ):
        writer.append(np.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == ["train-00000.bin"]


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=6, per_file_words=500)
    config = data_config(corpus, validation_fraction=0.5)
    first = prepare(config, 400, tmp_path / "big", log=lambda m: None)
    assert first["vocab_size"] == 400
    with pytest.raises(
        DataError,
        match=r"tokenizer\.json: the tokenizer has \d+ entries, more than model\.vocab_size=320",
    ):
        prepare(
            config,
            VOCAB,
            tmp_path / "small",
            PrepareSettings(tokenizer=str(tmp_path / "big" / "tokenizer.json")),
            log=lambda m: None,
        )


# Characters where the GPT-2 split regex behaves differently: spaces of several kinds, runs
# of whitespace, letters, combining marks, numbers of several scripts, contractions,
# punctuation, scripts without spaces, an emoji, an added special token, a file separator.
TRICKY = [
    " ", " ", " ", "  ", "\n", "\n\n", "\t", " \n", "\u00a0", "\u3000", "\x1c", "a", "Z",
    "word", "words", "é", "e\u0301", "'s", "'re", "'", "don't", "7", "42", "½", "٣", "_",
    ".", "...", "-", "字", "日本語", "。", "🙂", "<|eos|>", "<|mask|>",
]  # fmt: skip


def trained_tokenizer(tmp_path: Path):
    from dualsweep.data.tokenizer import train_tokenizer

    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(TRICKY, size=300)) for _ in range(40)]
    prose = write_corpus(tmp_path / "prose", files=20, per_file_words=300)
    return train_tokenizer(texts + [p.read_text() for p in prose.iterdir()], 400)


def test_a_text_cut_into_pieces_encodes_to_the_ids_of_the_whole_text(tmp_path):
    from dualsweep.data.tokenizer import cutter

    tokenizer = trained_tokenizer(tmp_path)
    cut = cutter(tokenizer)
    rng = np.random.default_rng(1)
    cuts = naive_differs = 0
    for _ in range(300):
        text = "".join(rng.choice(TRICKY, size=int(rng.integers(1, 200))))
        size = int(rng.integers(1, 30))
        pieces = cut(text, size)
        assert "".join(pieces) == text
        whole = tokenizer.encode(text).ids
        assert [i for p in pieces for i in tokenizer.encode(p).ids] == whole, pieces
        cuts += len(pieces) - 1
        # The control: the same number of cuts anywhere changes the ids of most texts.
        anywhere = [text[i : i + size] for i in range(0, len(text), size)]
        naive_differs += [i for p in anywhere for i in tokenizer.encode(p).ids] != whole
    assert cuts > 2000 and naive_differs > 200
    prose = (tmp_path / "prose" / "part-000.txt").read_text()  # spaces: every piece fits
    assert all(len(p) <= 50 for p in cut(prose, 50)) and len(cut(prose, 50)) > len(prose) / 50
    assert cut("字" * 100, 10) == ["字" * 100]  # no safe cut: whole


def test_only_a_tokenizer_whose_pieces_encode_like_the_whole_is_cut(tmp_path):
    from tokenizers import AddedToken, normalizers, pre_tokenizers, processors

    from dualsweep.data.tokenizer import cutter

    assert cutter(trained_tokenizer(tmp_path)) is not None
    changes = [
        lambda t: setattr(t, "normalizer", normalizers.NFKC()),
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Metaspace()),
        lambda t: setattr(t, "post_processor", processors.TemplateProcessing(
            single="<|bos|> $A", special_tokens=[("<|bos|>", 1)])),
        lambda t: t.add_tokens([AddedToken("<x>", rstrip=True)]),
    ]  # fmt: skip
    for change in changes:
        tokenizer = trained_tokenizer(tmp_path)
        change(tokenizer)
        assert cutter(tokenizer) is None


def test_documents_longer_than_a_batch_prepare_to_their_whole_ids(tmp_path):
    """At a 1 MB bound a batch is ~2,000 characters and a document of ~17,000 goes in pieces
    of ~250: the shards hold each document's ids encoded whole, then eos."""
    corpus = write_corpus(tmp_path / "corpus", files=8, per_file_words=3000)
    config = data_config(corpus, validation_fraction=0.3)
    prepare(config, VOCAB, tmp_path / "out", PrepareSettings(memory_mb=1), log=lambda m: None)
    from dualsweep.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "out" / "tokenizer.json")
    documents = [p.read_text() for p in sorted(corpus.iterdir())]
    assert min(len(d) for d in documents) > 8 * 2000
    held_out = [d for d in documents if is_validation(d.encode(), 0.3)]
    training = [d for d in documents if not is_validation(d.encode(), 0.3)]
    order = np.random.default_rng(config.order_seed).permutation(len(training))
    assert held_out and len(training) > 1

    def shard(split: str) -> np.ndarray:
        return np.fromfile(tmp_path / "out" / f"{split}-00000.bin", np.uint16)

    def whole(texts: list[str]) -> np.ndarray:
        return np.concatenate([tokenizer.encode(d).ids + [2] for d in texts])

    assert np.array_equal(shard("train"), whole([training[i] for i in order]))
    assert np.array_equal(shard("validation"), whole(held_out))


def peak_rss_mb(command: list[str]) -> float:
    """Peak resident set of the process running `command`, from the kernel's record of it
    (getrusage of a wrapper whose only child it is): exact, where polling can miss a peak."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout) / 1024  # KB on Linux


def prepare_command(corpus: Path, out: Path, memory_mb: int, tokenizer: Path) -> list[str]:
    return [
        sys.executable, "-m", "dualsweep", "prepare", "--config", str(REPO / "sweeps" / "smoke.yaml"),
        "--set", "source=text_dir", "--set", f"path={corpus}", "--set", f"vocab_size={VOCAB}",
        "--set", "validation_fraction=0.25", "--out", str(out),
        "--memory-mb", str(memory_mb), "--tokenizer", str(tokenizer),
    ]  # fmt: skip


@pytest.mark.slow
def test_memory_is_bounded_and_does_not_grow_with_the_corpus(tmp_path):
    """Peak memory of the streaming passes, measured (each run given the same tokenizer: its
    training, ~100 MB for a 1 MB sample, is outside the bound): a corpus 4x larger (and 12x
    the bound) prepares in the same peak (what grows with it is on disk); raising --memory-mb
    from 2 to 64 adds at most 64 MB (the encoder's ~200 bytes a character are counted in the
    bound: before, 64 added 290 MB); an 8 MB document prepares within the bound plus itself
    held whole (text and ids, ~12 bytes a character; encoded whole, before, it took 1.7 GB)."""
    corpora = {
        f: write_corpus(tmp_path / f"c{f}", files=f, per_file_words=70_000) for f in (16, 64)
    }
    settings = PrepareSettings(tokenizer_sample_mb=1)
    prepare(data_config(corpora[16]), VOCAB, tmp_path / "tok", settings, log=lambda m: None)
    tokenizer = tmp_path / "tok" / "tokenizer.json"

    def peak(corpus: Path, memory_mb: int) -> float:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        return peak_rss_mb(prepare_command(corpus, out, memory_mb, tokenizer))

    peaks = {f: peak(corpora[f], 2) for f in (16, 64)}
    size = sum(p.stat().st_size for p in corpora[64].iterdir()) / 2**20
    peaks["64 MB"] = peak(corpora[64], 64)
    text = " ".join(p.read_text() for p in sorted(corpora[64].iterdir()))
    (corpora[16] / "long.txt").write_text(text[: 8 << 20])
    peaks["long"] = peak(corpora[16], 2)
    print(
        f"\npeak RSS: {peaks[16]:.0f} MB for a {size / 4:.0f} MB corpus, {peaks[64]:.0f} MB for "
        f"{size:.0f} MB; {peaks['64 MB']:.0f} MB at --memory-mb 64; {peaks['long']:.0f} MB "
        "with an 8 MB document"
    )
    assert size > 12 * 2
    assert peaks[64] < peaks[16] + 8
    assert peaks["64 MB"] < peaks[64] + 64
    assert peaks["long"] < peaks[16] + 2 + 12 * 8


@pytest.mark.slow
def test_the_builtin_corpus_is_the_committed_studys():
    """The built-in corpus, prepared through this streaming path, is the one the committed
    tiny study trained on: its corpus hash and every run's unique-subset hash agree."""
    import pandas as pd

    from dualsweep.config import load_sweep
    from dualsweep.data.datamodule import DualSweepData

    runs = pd.read_parquet(REPO / "results" / "tiny" / "runs.parquet").set_index(
        ["alpha", "repetitions"]
    )
    for config in load_sweep(REPO / "sweeps" / "tiny.yaml").trials():
        row = runs.loc[(config.objective.alpha, config.data.repetitions)]
        data = DualSweepData(config, log=lambda m: None)
        data.setup()
        assert data.corpus.corpus_hash == row["corpus_hash"]
        assert data.unique_subset_hash() == row["unique_subset_hash"]
