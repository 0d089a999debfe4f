"""`dualsweep prepare`: a config's data source to token shards that `source: shards` trains on."""

from __future__ import annotations

import argparse
from dataclasses import fields
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
        _check_same_preparation(out, config)
        if args.verify:
            from dualsweep.data.corpus import open_corpus

            corpus = open_corpus(out, config.model.vocab_size, verify=True)
            shards = sum(len(corpus.meta[s]["shards"]) for s in ("train", "validation"))
            print(f"{out}: {shards} shards of the sizes and checksums index.json gives")
        else:
            print(f"{out} is already prepared (index.json) from this source; nothing to do")
        return 0
    if args.verify:
        raise ConfigError(f"--verify: {out} holds no finished preparation to check")
    settings = PrepareSettings(**{f.name: getattr(args, f.name) for f in fields(PrepareSettings)})
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


def _check_same_preparation(out: Path, config) -> None:
    """A finished preparation in --out must be of this config's source and vocabulary: another
    one is refused, not reported as done."""
    import json

    from dualsweep.data.prepare import INDEX_FILE
    from dualsweep.data.sources import fingerprint

    index = json.loads((out / INDEX_FILE).read_text())
    theirs = (index.get("source"), index.get("vocab_size"), index.get("source_fingerprint"))
    ours = (config.data.source, config.model.vocab_size, fingerprint(config.data))
    if theirs != ours:
        raise ConfigError(
            f"--out: {out} holds a preparation of another source or vocabulary (source "
            f"{theirs[0]}, vocab {theirs[1]}; this config: {ours[0]}, vocab {ours[1]}); choose "
            "another folder (nothing there is overwritten)"
        )
