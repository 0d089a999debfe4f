"""The commands on one run folder: `train`, `evaluate` and `lm-eval`.

What belongs here: turning a command's arguments into one call of `train`, `evaluate_run` or
lm-evaluation-harness, and printing its outcome in a line or a table. Heavy packages (torch,
Lightning, lm-eval) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualsweep.cli.checks import EXIT_FAILED, check_run_folder
from dualsweep.config import ConfigError, load_run_config, parse_override
from dualsweep.schema import SUMMARY_FILE


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
    check_run_folder(out, force=args.force, resume=args.resume)
    if (out / SUMMARY_FILE).exists() and not args.force:
        import pandas as pd

        status = pd.read_parquet(out / SUMMARY_FILE, columns=["status"])["status"].iloc[0]
        if status == "finished":
            raise ConfigError(
                f"--out: {out} already holds a finished run; use --force to train it again"
            )
        if not args.resume:
            raise ConfigError(
                f"--out: {out} holds a {status} run; use --resume to continue it from its "
                "checkpoint, or --force to start over"
            )
    from dualsweep.data import DataError
    from dualsweep.training import train

    try:
        summary = train(config, out, resume=args.resume)
    except DataError as e:
        raise ConfigError(str(e)) from None
    held_out = ", ".join(
        f"{o.title} {summary.value(f'final_{o.held_out}'):.4f} "
        f"(best {summary.value(f'best_{o.held_out}'):.4f})"
        for o in summary.objectives
    )
    print(
        f"{summary.status}: alpha={config.objective.alpha:g} R={config.data.repetitions} "
        f"held-out {held_out} nats/token; "
        f"{summary.tokens:,} tokens ({summary.epochs:.2f} epochs of {summary.unique_tokens:,} unique) "
        f"in {summary.wall_time_s:.1f}s, {summary.tokens_per_s:,.0f} tokens/s -> {out}"
    )
    if summary.status != "finished":
        print(f"error: {summary.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dualsweep.config import EvalConfig, apply_overrides, build_section, to_plain

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {args.device!r} requested but torch sees no CUDA device")
    config = load_run_config(run_dir / "config.yaml")
    overrides = dict(parse_override(text) for text in args.set or [])
    if args.tasks:
        overrides["evaluation.tasks"] = args.tasks
    if args.modes:
        overrides["evaluation.modes"] = args.modes
    raw = apply_overrides({"evaluation": to_plain(config.evaluation)}, overrides)
    evaluation = build_section(EvalConfig, raw["evaluation"], "evaluation")
    from dualsweep.evaluate.run import evaluate_run, format_evals

    evals, held_out = evaluate_run(run_dir, evaluation, device=args.device)
    print(f"{held_out.describe(config.held_out.md_eval_draws)} on {held_out.tokens:,} tokens")
    print(format_evals(evals))
    print(f"-> {run_dir / 'evals.parquet'}")
    return 0


def cmd_lm_eval(args: argparse.Namespace) -> int:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("lm-eval: not installed; pip install 'dualsweep[lmeval]'") from None
    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

    lm = DualSweepLM(
        run_dir=args.run_dir, mode=args.mode, md_mask_span=args.md_mask_span, device=args.device
    )
    manager = TaskManager(include_path=args.include_path) if args.include_path else TaskManager()
    results = lm_eval.simple_evaluate(
        model=lm, tasks=args.tasks, task_manager=manager, limit=args.limit
    )
    from lm_eval.utils import make_table

    print(make_table(results))
    return 0
