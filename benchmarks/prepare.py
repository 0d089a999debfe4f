"""Throughput and memory of `dualsweep prepare` against HF `tokenizers` alone.

A corpus of synthetic text files (`CORPUS_MB`, random sentences over a few hundred words,
in 64 files) is made once; a 1,024-entry tokenizer is trained on it once and given to every
preparation (`--tokenizer`), so that the rows time the streaming pipeline, not BPE training.

- ceiling: the same text, already in memory, encoded by `Tokenizer.encode_batch` in this
  one process (its own threads on every core), nothing read or written;
- prepare with 1 and with 2 encoding processes (`--workers`), each a fresh
  `dualsweep prepare` process, reading the files and writing shards, whole (both passes).

Rows: tokens/s of each over the ceiling's, and 2 processes over 1. Peak memory (resident
set, the main process and the largest worker) is in the details, against the bound given
(`--memory-mb`, `MEMORY_MB`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Ratio

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
        main_peak = max(main_peak, _peak_kb(process.pid))
        worker_peak = max([worker_peak, *(_peak_kb(c) for c in _children(process.pid))])
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


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _peak_kb(pid: int) -> int:
    value = _status(pid).get("VmHWM")
    return int(value.split()[0]) if value else 0


def _children(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _status(int(p.name)).get("PPid", "").strip() == str(pid)
    ]


def prepare_throughput() -> list[Ratio]:
    from tokenizers import Tokenizer

    from dualsweep.data.tokenizer import train_tokenizer

    work = Path(tempfile.mkdtemp(prefix="dualsweep-bench-prepare-"))
    try:
        texts = make_corpus(work / "corpus")
        tokenizer = train_tokenizer(texts[:8], VOCAB)
        tokenizer.save(str(work / "tokenizer.json"))
        encoder = Tokenizer.from_file(str(work / "tokenizer.json"))
        start = time.perf_counter()
        ceiling_tokens = sum(len(e.ids) for e in encoder.encode_batch(texts))
        ceiling = ceiling_tokens / (time.perf_counter() - start)
        runs = {}
        for workers in (1, 2):
            runs[workers] = _prepare(
                work / "corpus", work / "tokenizer.json", work / f"out{workers}", workers
            )
            runs[workers]["tokens_per_s"] = runs[workers]["tokens"] / runs[workers]["seconds"]
        details = {
            "corpus_mb": CORPUS_MB,
            "tokens": runs[1]["tokens"],
            "ceiling_tokens_per_s": ceiling,
            "memory_mb_bound": MEMORY_MB,
            **{f"prepare_{w}_tokens_per_s": r["tokens_per_s"] for w, r in runs.items()},
            **{f"prepare_{w}_main_peak_rss_mb": r["main_peak_mb"] for w, r in runs.items()},
            "prepare_2_worker_peak_rss_mb": runs[2]["worker_peak_mb"],
        }
        what = f"tokens/s of `dualsweep prepare` ({CORPUS_MB} MB of text in 64 files, whole) over HF tokenizers encoding it in memory in one process"
        return [
            Ratio(
                name=f"prepare_{w}_process",
                what=what.replace("`dualsweep prepare`", f"`dualsweep prepare --workers {w}`"),
                numerator=f"prepare, {w} process(es)",
                denominator="encode_batch in memory",
                ratio=runs[w]["tokens_per_s"] / ceiling,
                spread=(runs[w]["tokens_per_s"] / ceiling,) * 2,
                target="report",
                details=details,
            )
            for w in (1, 2)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
