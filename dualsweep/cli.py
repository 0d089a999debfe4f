"""The `dualsweep` command line. Heavy packages are imported inside the commands that need them.

Exit codes: 0 success, 1 a run failed or a fault (an unwritable folder, a full disk), 2 a bad
config, data or input file (nothing was written), 130 interrupted. Every error is one line
naming the file or field; `--debug` (or DUALSWEEP_DEBUG=1) adds the full traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dualsweep.config import ConfigError, load_run_config, load_sweep, parse_override
from dualsweep.schema import CHECKPOINT_FILE, RUN_MARKER_FILE, SUMMARY_FILE

EXIT_FAILED = 1
EXIT_USAGE = 2


def _overrides(args: argparse.Namespace) -> dict:
    overrides = dict(parse_override(text) for text in args.set or [])
    for name in ("alpha", "repetitions", "seed"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return overrides


def writable_folder(path: Path, option: str) -> None:
    """Refuse, before any work, a path that is a file or whose nearest existing folder is read-only."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write to {existing} (permission denied)")


def check_run_folder(out: Path, *, force: bool, resume: bool) -> None:
    """`--out` must be new, empty, or a dualsweep run folder: never a folder of other files."""
    writable_folder(out, "--out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    ours = any((out / name).exists() for name in (RUN_MARKER_FILE, SUMMARY_FILE, CHECKPOINT_FILE))
    if not ours:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(
            f"--out: {out} holds files that are not a dualsweep run ({held}); "
            "choose a new or empty folder (nothing there is overwritten)"
        )
    if (out / CHECKPOINT_FILE).exists() and not (resume or force):
        raise ConfigError(
            f"--out: {out} holds an interrupted run's checkpoint; use --resume to continue it, "
            "or --force to start over"
        )


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


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep_file)  # validated before anything is created or launched
    from dualsweep.data.sources import check_source
    from dualsweep.sweep.runner import run_sweep

    writable_folder(Path(args.results), "--results")
    if "://" not in args.storage:
        writable_folder(Path(args.storage), "--storage")
    check_source(sweep.base.data)  # a missing corpus fails here, not in every trial

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    try:
        outcome = run_sweep(
            sweep,
            results_root=args.results,
            storage=args.storage,
            address=address,
            rebuild_tables=args.rebuild_tables,
        )
    except (ConnectionError, RuntimeError) as e:  # no cluster, or another driver on this sweep
        print(f"dualsweep: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if outcome.failed:
        print(
            f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr
        )
        print(
            "their errors are in the `error` and `evaluation_error` columns of runs.parquet; "
            "re-run to retry them",
            file=sys.stderr,
        )
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


def cmd_fit(args: argparse.Namespace) -> int:
    from analysis.data import AnalysisError, metric, trial_table
    from analysis.surface import best_alpha, fit_surface
    from analysis.tables import format_best_alpha
    from dualsweep.results import ResultsError, load

    try:
        table = trial_table(load(args.sweep, args.results))
        chosen = metric(table, args.metric)
        fit = fit_surface(table, chosen, noise=args.noise)
    except (FileNotFoundError, AnalysisError, ResultsError) as e:
        raise ConfigError(str(e)) from None
    print(
        f"{chosen.column} over {len(fit.y)} runs: R^2 {fit.r2:.4f}, leave-one-out RMSE {fit.loo_rmse:.4g}, "
        f"noise {fit.noise}\nkernel {fit.kernel}\n"
    )
    print(format_best_alpha(best_alpha(fit, sorted(table["repetitions"].unique())), chosen.column))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep_file)
    from dualsweep.sweep.plan import format_plan, plan_sweep

    peak = args.peak_tflops * 1e12
    print(
        format_plan(
            sweep, plan_sweep(sweep, peak_flops=peak, mfu=args.mfu), peak_flops=peak, mfu=args.mfu
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualsweep",
        description="Data-constrained scaling studies of dual-objective (AR + masked-diffusion) language models.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the full traceback of an error (also DUALSWEEP_DEBUG=1)",
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

    sweep = commands.add_parser(
        "sweep",
        help="run every trial of a sweep file on Ray Tune (resumes an interrupted sweep)",
        description="Run a sweep's trials on an embedded Ray (default) or a Ray cluster "
        "(RAY_ADDRESS or --address); results go to RESULTS/<name>/{runs,curves,evals}.parquet.",
    )
    sweep.add_argument("sweep_file", help="a sweep file, e.g. sweeps/smoke.yaml")
    sweep.add_argument(
        "--address", help="Ray cluster address (default: $RAY_ADDRESS, else embedded Ray)"
    )
    sweep.add_argument(
        "--storage",
        default="runs",
        help="where trial folders live (shared storage on a multi-node cluster); default: runs",
    )
    sweep.add_argument(
        "--results", default="results", help="root of the results tables; default: results"
    )
    sweep.add_argument(
        "--rebuild-tables",
        action="store_true",
        help="set the sweep's tables aside (*.parquet.replaced) and write them again from the "
        "trial folders (after a damaged or lost table)",
    )
    sweep.set_defaults(handler=cmd_sweep)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a finished run: held-out losses and multiple choice in each mode",
        description="Score a run folder's final model on its configured tasks (evaluation section) "
        "in AR, MD (pseudo-log-likelihood) and prefix-LM modes; writes RUN_DIR/evals.parquet.",
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument(
        "--tasks", nargs="+", help="continuation, word_order, cloze or .jsonl files"
    )
    evaluate.add_argument("--modes", nargs="+", help="any of ar md prefix")
    evaluate.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an evaluation field, e.g. --set task_items=500",
    )
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    evaluate.set_defaults(handler=cmd_evaluate)

    lm = commands.add_parser(
        "lm-eval",
        help="run lm-evaluation-harness tasks on a finished run (needs the lmeval extra)",
        description="Evaluate a run folder's model with lm-evaluation-harness, scoring in a chosen mode.",
    )
    lm.add_argument("run_dir")
    lm.add_argument(
        "--tasks", nargs="+", required=True, help="lm-eval task names, e.g. hellaswag arc_easy"
    )
    lm.add_argument(
        "--mode", default="ar", choices=["ar", "md", "prefix"], help="how continuations are scored"
    )
    lm.add_argument(
        "--md-mask-span", type=int, default=1, help="md mode: tokens masked together (0 = all)"
    )
    lm.add_argument("--include-path", help="a folder of local task YAML files")
    lm.add_argument("--limit", type=int, help="score only the first N documents of each task")
    lm.add_argument("--device", default="cpu")
    lm.set_defaults(handler=cmd_lm_eval)

    fit = commands.add_parser(
        "fit",
        help="fit the GP surface of a sweep's metric and print the best alpha per R",
        description="Gaussian process over (log2 R, logit alpha) -> metric, from results/<sweep>/*.parquet; "
        "posterior samples give the distribution of the best alpha at each trained R.",
    )
    fit.add_argument("sweep", help="sweep name, e.g. tiny")
    fit.add_argument(
        "--metric",
        default="final_held_out_ar_loss",
        help="a column: final_held_out_ar_loss, final_held_out_md_elbo, score_ar, score_md, "
        "score_prefix, score_md:word_order, ... (default final_held_out_ar_loss)",
    )
    fit.add_argument(
        "--noise",
        default="white",
        choices=["white", "stderr", "auto"],
        help="white: one fitted noise level (the paper's); stderr: each run's standard error",
    )
    fit.add_argument("--results", default="results", help="root of the results tables")
    fit.set_defaults(handler=cmd_fit)

    plan = commands.add_parser(
        "plan", help="print a sweep's trials, tokens and compute without launching anything"
    )
    plan.add_argument("sweep_file")
    plan.add_argument(
        "--mfu",
        type=_fraction,
        default=0.4,
        help="model FLOP utilisation assumed, in (0, 1] (default 0.4)",
    )
    plan.add_argument(
        "--peak-tflops",
        type=_positive,
        default=989.0,
        help="accelerator peak TFLOP/s (default 989: H100 SXM dense bf16)",
    )
    plan.set_defaults(handler=cmd_plan)
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (got {text})")
    return value


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean a bad input file (exit 2), imported lazily with their modules."""
    from dualsweep.data.sources import DataError
    from dualsweep.evaluate.tasks import TaskError
    from dualsweep.results import ResultsError

    return (ConfigError, DataError, TaskError, ResultsError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DUALSWEEP_DEBUG", "") not in ("", "0")
    try:
        return args.handler(args)
    except KeyboardInterrupt as e:
        print(f"dualsweep: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line per error; --debug for the traceback
        if debug:
            import traceback

            traceback.print_exc()
        bad_input = isinstance(e, _bad_input_errors())
        message = str(e) if bad_input else f"{type(e).__name__}: {e}"
        hint = "" if debug or bad_input else " (run with --debug for the traceback)"
        print(f"dualsweep: error: {message}{hint}", file=sys.stderr)
        return EXIT_USAGE if bad_input else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
