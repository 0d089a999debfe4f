"""Throughput and memory of `dualsweep prepare` against HF `tokenizers` alone.

A corpus of synthetic text files (`CORPUS_MB`, random sentences over a few hundred words,
in 64 files) is made once; a 1,024-entry tokenizer is trained on it once and given to every
preparation (`--tokenizer`), so that the rows time the streaming pipeline, not BPE training.

- ceiling (the issue's name for it): the same text, already in memory, encoded by
  `Tokenizer.encode_batch` in this one process (its own threads), nothing read or written,
  each document whole (prepare cuts long ones into pieces with the same ids, which encode
  faster: the rows can exceed 1);
- prepare with 1 and with 2 encoding processes (`--workers`), each a fresh
  `dualsweep prepare` process, reading the files and writing shards, both passes.

Rows: tokens/s of each preparation over the ceiling's; the three run in turn, `REPETITIONS`
times, medians reported. Peak memory (resident set of the main process and of the largest
worker) is in the details, against the bound given (`--memory-mb`, `MEMORY_MB`).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Ratio, memory_kb

CORPUS_MB = 24
MEMORY_MB = 8
VOCAB = 1024
REPO = Path(__file__).resolve().parent.parent


def make_corpus(root: Path, megabytes: int = CORPUS_MB, files: int = 64) -> list[str]:
    rng = np.random.default_rng(0)
    words = [
        f"{stem}{i}" for stem in ("alpha", "beta", "gamma", "delta", "omega") for i in range(80)
    ]
    root.mkdir(parents=True)
    texts = []
    per_file = (megabytes << 20) // files // 7  # ~7 characters a word with its space
    for i in range(files):
        text = " ".join(rng.choice(words, size=per_file)) + "."
        (root / f"part-{i:03d}.txt").write_text(text)
        texts.append(text)
    return texts


def _prepare(corpus: Path, tokenizer: Path, out: Path, workers: int) -> dict:
    """One fresh `dualsweep prepare`: its seconds, tokens, and the peak resident set of its
    main process and of its largest worker (VmHWM, polled every 50 ms while it runs)."""
    command = [
        sys.executable, "-m", "dualsweep", "prepare", "--config", str(REPO / "sweeps" / "smoke.yaml"),
        "--set", "source=text_dir", "--set", f"path={corpus}", "--set", f"vocab_size={VOCAB}",
        "--out", str(out), "--workers", str(workers), "--memory-mb", str(MEMORY_MB),
        "--tokenizer", str(tokenizer),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    main_peak = worker_peak = 0
    while process.poll() is None:
        main_peak = max(main_peak, memory_kb("VmHWM", process.pid))
        worker_peak = max([worker_peak, *(memory_kb("VmHWM", c) for c in _children(process.pid))])
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"prepare failed: {process.stderr.read()[-2000:]}")
    index = json.loads((out / "index.json").read_text())
    return {
        "seconds": seconds,
        "tokens": index["train"]["tokens"] + index["validation"]["tokens"],
        "main_peak_mb": main_peak / 1024,
        "worker_peak_mb": worker_peak / 1024,
    }


def _children(pid: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            children.append(int(status.parent.name))
    return children


REPETITIONS = 3


def prepare_throughput() -> list[Ratio]:
    """Both rows from one measurement: the ceiling, 1 process and 2 processes in turn,
    `REPETITIONS` times (drift hits all three alike); medians, and the spread of the
    per-repetition ratios."""
    from tokenizers import Tokenizer

    from dualsweep.data.tokenizer import train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="dualsweep-bench-prepare-"))
    try:
        texts = make_corpus(work / "corpus")
        tokenizer = train_tokenizer(texts[:8], VOCAB)
        tokenizer.save(str(work / "tokenizer.json"))
        ceilings, runs = [], {1: [], 2: []}
        for repetition in range(REPETITIONS):
            encoder = Tokenizer.from_file(
                str(work / "tokenizer.json")
            )  # a cold cache, as prepare's
            start = time.perf_counter()
            tokens = sum(len(e.ids) for e in encoder.encode_batch(texts))
            ceilings.append(tokens / (time.perf_counter() - start))
            for workers in (1, 2):
                out = work / f"out{workers}-{repetition}"
                run = _prepare(work / "corpus", work / "tokenizer.json", out, workers)
                run["tokens_per_s"] = run["tokens"] / run["seconds"]
                runs[workers].append(run)
                shutil.rmtree(out)
        ceiling = statistics.median(ceilings)

        def median(workers: int, key: str) -> float:
            return statistics.median(r[key] for r in runs[workers])

        details = {
            "corpus_mb": CORPUS_MB,
            "tokens": tokens,
            "repetitions": REPETITIONS,
            "ceiling_tokens_per_s": ceiling,
            "memory_mb_bound": MEMORY_MB,
            **{f"prepare_{w}_tokens_per_s": median(w, "tokens_per_s") for w in runs},
            **{f"prepare_{w}_main_peak_rss_mb": median(w, "main_peak_mb") for w in runs},
            "prepare_2_worker_peak_rss_mb": median(2, "worker_peak_mb"),
        }
        what = (
            f"tokens/s of `dualsweep prepare` ({CORPUS_MB} MB of text in 64 files, both passes) "
            "over HF tokenizers' encode_batch of the text in memory in one process"
        )
        rows = []
        for w in (1, 2):
            ratios = [r["tokens_per_s"] / c for r, c in zip(runs[w], ceilings, strict=True)]
            rows.append(
                Ratio(
                    name=f"prepare_{w}_process",
                    what=what.replace("`dualsweep prepare`", f"`dualsweep prepare --workers {w}`"),
                    numerator=f"prepare, {w} process(es)",
                    denominator="encode_batch in memory",
                    ratio=median(w, "tokens_per_s") / ceiling,
                    spread=(min(ratios), max(ratios)),
                    target="report",
                    details=details,
                )
            )
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
