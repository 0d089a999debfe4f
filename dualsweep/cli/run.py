"""The commands on one run folder: `train`, `evaluate`, `lm-eval`, `export` and `generate`.

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
from dualsweep.schema import CONFIG_FILE, EVALS_FILE, RUN_MARKER_FILE, SUMMARY_FILE


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
    if args.resume and not (out / RUN_MARKER_FILE).is_file():
        print(f"nothing to resume in {out} (no run there): training a new run")
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
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    device = _checked_device(args.device)
    config = load_run_config(run_dir / CONFIG_FILE)
    overrides = dict(parse_override(text) for text in args.set or [])
    if args.tasks:
        overrides["evaluation.tasks"] = args.tasks
    if args.modes:
        overrides["evaluation.modes"] = args.modes
    raw = apply_overrides({"evaluation": to_plain(config.evaluation)}, overrides)
    evaluation = build_section(EvalConfig, raw["evaluation"], "evaluation")
    from dualsweep.evaluate.run import evaluate_run, format_evals

    evals, held_out = evaluate_run(run_dir, evaluation, device=device)
    print(f"{held_out.describe(config.held_out.md_eval_draws)} on {held_out.tokens:,} tokens")
    print(format_evals(evals))
    print(f"-> {run_dir / EVALS_FILE}")
    return 0


def cmd_lm_eval(args: argparse.Namespace) -> int:
    try:
        import lm_eval
    except ImportError:
        raise ConfigError("lm-eval: not installed; pip install 'dualsweep[lmeval]'") from None
    from dualsweep.evaluate.harness import task_manager, task_spec
    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

    for name in ("limit", "num_fewshot", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < (1 if name != "num_fewshot" else 0):
            raise ConfigError(f"--{name.replace('_', '-')}: must be positive (got {value})")
    device = _checked_device(args.device)
    output = Path(args.output_path) if args.output_path else None
    if output is not None and output.is_dir():
        raise ConfigError(f"--output-path: {output} is a folder; give a file name")
    manager = task_manager(args.include_path, args.tasks)
    specs = [task_spec(manager, name) for name in args.tasks]  # an unknown task fails now
    lm = DualSweepLM(
        run_dir=args.run_dir,
        mode=args.mode,
        md_mask_span=args.md_mask_span,
        batch_size=args.batch_size,
        device=device,
    )
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=specs,
        task_manager=manager,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
    )
    from lm_eval.utils import make_table

    print(make_table(results))
    if output is not None:
        import json

        from dualsweep.results import atomic_write_text

        output.parent.mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in results.items() if k != "samples"}
        atomic_write_text(output, json.dumps(kept, indent=2, default=str) + "\n")
        print(f"-> {output}")
    return 0


def _checked_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {device!r} requested but torch sees no CUDA device")
    return device


def cmd_export(args: argparse.Namespace) -> int:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise ConfigError("export: needs safetensors; pip install 'dualsweep[hf]'") from None
    from dualsweep.export import export_run

    export_run(args.run_dir, args.out)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import json

    from dualsweep.evaluate.loaded import load_run
    from dualsweep.generation import Sampling, generate

    sampling = Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=tuple(args.stop),
        steps=args.steps,
        order=args.order,
    )
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise ConfigError(f"--prompts: {path} is not a file")
        prompts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts:
            raise ConfigError(f"--prompts: {path} holds no prompt")
    else:
        prompts = [args.prompt]
    run = load_run(args.run_dir, _checked_device(args.device))
    texts = generate(run, prompts, mode=args.mode, sampling=sampling)
    if args.prompts:
        for prompt, text in zip(prompts, texts, strict=True):
            print(json.dumps({"prompt": prompt, "completion": text}))
    else:
        print(f"{args.prompt}{texts[0]}")
    return 0
