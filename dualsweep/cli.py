"""The `dualsweep` command line. Heavy packages are imported inside the commands that need them.

Exit codes: 0 success, 1 a run failed, 2 a bad config or data (nothing was written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualsweep.config import ConfigError, load_run_config, parse_override

EXIT_FAILED = 1
EXIT_USAGE = 2


def _overrides(args: argparse.Namespace) -> dict:
    overrides = dict(parse_override(text) for text in args.set or [])
    for name in ("alpha", "repetitions", "seed"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    config = load_run_config(args.config, _overrides(args))
    out = Path(args.out)
    from dualsweep.training.run import SUMMARY_FILE

    if (out / SUMMARY_FILE).exists() and not args.force:
        raise ConfigError(
            f"--out: {out} already holds a finished run ({SUMMARY_FILE}); use --force to overwrite"
        )
    from dualsweep.data import DataError
    from dualsweep.training import train

    try:
        summary = train(config, out, resume=args.resume)
    except DataError as e:
        raise ConfigError(str(e)) from None
    print(
        f"{summary.status}: alpha={config.objective.alpha:g} R={config.data.repetitions} "
        f"held-out AR loss {summary.final_held_out_ar_loss:.4f} (best {summary.best_held_out_ar_loss:.4f}), "
        f"MD ELBO {summary.final_held_out_md_elbo:.4f} (best {summary.best_held_out_md_elbo:.4f}) nats/token; "
        f"{summary.tokens:,} tokens ({summary.epochs:.2f} epochs of {summary.unique_tokens:,} unique) "
        f"in {summary.wall_time_s:.1f}s, {summary.tokens_per_s:,.0f} tokens/s -> {out}"
    )
    if summary.status != "finished":
        print(f"error: {summary.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualsweep",
        description="Data-constrained scaling studies of dual-objective (AR + masked-diffusion) language models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train one model at one (alpha, repetitions) point",
        description="Train one model; writes OUT/config.yaml, OUT/curve.parquet and OUT/summary.parquet.",
    )
    train.add_argument(
        "--config", required=True, help="a run config or a sweep file (its base is used)"
    )
    train.add_argument("--alpha", help="AR weight in [0, 1]; fractions like 63/64 allowed")
    train.add_argument("--repetitions", "-R", help="data repetitions R (a positive integer)")
    train.add_argument("--seed", help="training seed")
    train.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set d_model=64 or --set optim.lr=1e-3 (repeatable)",
    )
    train.add_argument("--out", required=True, help="run folder to create")
    train.add_argument("--force", action="store_true", help="train again over a run in --out")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out from its checkpoint (train.checkpoint_interval)",
    )
    train.set_defaults(handler=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as e:
        print(f"dualsweep: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dualsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
