"""`dualsweep prepare`: a config's data source to token shards that `source: shards` trains on."""

from __future__ import annotations

import argparse
from pathlib import Path

from dualsweep.cli.checks import writable_folder
from dualsweep.config import ConfigError, load_run_config, parse_override


def cmd_prepare(args: argparse.Namespace) -> int:
    from dualsweep.data.corpus import cache_root
    from dualsweep.data.prepare import STAGING, PrepareSettings, is_prepared, prepare

    config = load_run_config(args.config, dict(parse_override(t) for t in args.set or []))
    if config.data.source == "shards" and is_prepared(Path(config.data.path).expanduser()):
        raise ConfigError(
            f"data.path: {config.data.path} is already prepared shards: train on it directly"
        )
    out = Path(args.out)
    writable_folder(out, "--out")
    ours = is_prepared(out) or (out / STAGING).is_dir()
    if out.is_dir() and any(out.iterdir()) and not ours:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(
            f"--out: {out} holds files that are not a preparation ({held}); choose a new or "
            "empty folder (nothing there is overwritten)"
        )
    if is_prepared(out):
        print(f"{out} is already prepared (index.json); nothing to do")
        return 0
    settings = PrepareSettings(
        workers=args.workers,
        memory_mb=args.memory_mb,
        shard_tokens=args.shard_tokens,
        tokenizer=args.tokenizer or "",
        tokenizer_sample_mb=args.tokenizer_sample_mb,
    )
    index = prepare(
        config.data,
        config.model.vocab_size,
        out,
        settings,
        tokenizer_cache=cache_root(config.data),
        log=print,
    )
    print(
        f"{out}: {index['train']['tokens']:,} training and {index['validation']['tokens']:,} "
        f"held-out tokens ({index['dtype']}, vocab {index['vocab_size']}); train on them with "
        f"--set source=shards --set path={out}"
    )
    return 0
