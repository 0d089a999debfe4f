"""The `dualsweep` argument parser: every command, its arguments and their help.

What belongs here: argparse only, nothing that runs a command. A parsed command is named by
`args.command`; `dualsweep.cli.main` maps that name to the function that runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from dualsweep.config.fields import ConfigError, coerce, field_docs
from dualsweep.data.prepare import PrepareSettings  # numpy, no torch: --help stays fast
from dualsweep.evaluate.task_registry import registered_tasks
from dualsweep.schema import DEFAULT_METRIC, SCORING_MODES
from dualsweep.sweep.plan import H100_BF16_PEAK_FLOPS

SWEEP_HELP = "a sweep file (sweeps/tiny.yaml) or a sweep's name (tiny)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualsweep",
        description="Data-constrained scaling studies of dual-objective (AR + masked-diffusion) language models.",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="print the version (and the git commit of a checkout) and exit",
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

    prepare = commands.add_parser(
        "prepare",
        help="tokenize a config's data source into token shards (streamed, parallel, resumable)",
        description="Read the config's data source (data: section) document by document, split "
        "it, train a BPE tokenizer of model.vocab_size on a sample of the training split (or use "
        "--tokenizer), and write fixed-size token shards and index.json to OUT; train on them "
        "with --set source=shards --set path=OUT. Run the same command again to resume.",
    )
    prepare.add_argument("--config", required=True, help="a run config or a sweep file")
    prepare.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set source=jsonl --set path=DIR (repeatable)",
    )
    prepare.add_argument("--out", required=True, help="the shard folder to create (or resume)")
    _settings_flags(prepare, PrepareSettings)  # --workers, --memory-mb, --shard-tokens, ...
    prepare.add_argument(
        "--verify",
        action="store_true",
        help="check an existing preparation in --out: every shard's size and checksum",
    )

    sweep = commands.add_parser(
        "sweep",
        help="run every trial of a sweep file on Ray Tune (resumes an interrupted sweep)",
        description="Run a sweep's trials on an embedded Ray (default) or a Ray cluster "
        "(RAY_ADDRESS or --address); results go to RESULTS/<name>/{runs,curves,evals}.parquet.",
    )
    sweep.add_argument("sweep_file", help=SWEEP_HELP)
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
    sweep.add_argument(
        "--mix-corpora",
        action="store_true",
        help="train the remaining trials on the corpus as it is now, though finished trials "
        "were trained on another (refused without it)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a finished run: held-out losses and multiple choice in each mode",
        description="Score a run folder's final model on its configured tasks (evaluation section) "
        "in AR, MD (pseudo-log-likelihood) and prefix-LM modes; writes RUN_DIR/evals.parquet.",
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument(
        "--tasks",
        nargs="+",
        help="tasks built from held-out documents ("
        + "; ".join(f"{task.name}: {task.description}" for task in registered_tasks())
        + ") or .jsonl task files",
    )
    evaluate.add_argument("--modes", nargs="+", help=f"any of {' '.join(SCORING_MODES)}")
    evaluate.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an evaluation field, e.g. --set task_items=500",
    )
    evaluate.add_argument(
        "--device",
        default="auto",
        help="auto (cuda when present, as train), cpu, cuda, cuda:1, ...",
    )

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
        "--mode", default="ar", choices=SCORING_MODES, help="how continuations are scored"
    )
    lm.add_argument(
        "--md-mask-span", type=int, default=1, help="md mode: tokens masked together (0 = all)"
    )
    lm.add_argument(
        "--include-path",
        help="a folder of local task YAML files (offline; relative data_files resolve against each YAML's folder)",
    )
    lm.add_argument("--limit", type=int, help="score only the first N documents of each task")
    lm.add_argument("--num-fewshot", type=int, default=0, help="few-shot examples per prompt")
    lm.add_argument(
        "--batch-size", type=int, default=32, help="continuations scored per forward pass"
    )
    lm.add_argument(
        "--device",
        default="auto",
        help="auto (cuda when present, as train), cpu, cuda, cuda:1, ...",
    )
    lm.add_argument(
        "--output-path", help="write the harness's results (JSON, with its configs) to this file"
    )

    export = commands.add_parser(
        "export",
        help="write a finished run as a Hugging Face model folder (Llama; transformers loads it)",
        description="Write RUN_DIR's model as a LlamaForCausalLM folder: config.json, "
        "model.safetensors, the tokenizer, generation_config.json and a model card (README.md) "
        "that says how to use the masked-diffusion mode. Needs the hf extra (safetensors).",
    )
    export.add_argument("run_dir")
    export.add_argument("--out", required=True, help="folder to create (refused if it holds files)")

    generate = commands.add_parser(
        "generate",
        help="generate text from a finished run, autoregressively or by masked diffusion",
        description="Continue each prompt with the run's model: --mode ar samples the next token "
        "causally; --mode md starts from masks after the prompt and unmasks them over --steps "
        "steps with bidirectional attention. Seeded: the same seed gives the same text.",
    )
    generate.add_argument("run_dir")
    prompts = generate.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="the text to continue")
    prompts.add_argument(
        "--prompts", help="a file of prompts, one per line; prints one JSON line per prompt"
    )
    generate.add_argument("--mode", default="ar", choices=["ar", "md"])
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument(
        "--temperature", type=float, default=1.0, help="0 = greedy (the most probable token)"
    )
    generate.add_argument(
        "--top-k", type=int, default=0, help="draw among the k most probable (0 = all)"
    )
    generate.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = all)"
    )
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--stop", action="append", default=[], help="ar: stop at this string (repeatable)"
    )
    generate.add_argument("--steps", type=int, default=16, help="md: denoising steps")
    generate.add_argument(
        "--order",
        default="confidence",
        choices=["confidence", "random"],
        help="md: unmask the most confident drawn tokens first, or a random set",
    )
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")

    fit = commands.add_parser(
        "fit",
        help="fit the GP surface of a sweep's metric and print the best alpha per R",
        description="Gaussian process over (log2 R, logit alpha) -> metric, from results/<sweep>/*.parquet; "
        "posterior samples give the distribution of the best alpha at each trained R.",
    )
    fit.add_argument("sweep", help=SWEEP_HELP)
    fit.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"a column: {DEFAULT_METRIC}, final_held_out_md_elbo, score_ar, score_md, "
        f"score_prefix, score_md:word_order, ... (default {DEFAULT_METRIC})",
    )
    fit.add_argument(
        "--noise",
        default="white",
        choices=["white", "stderr", "auto"],
        help="white: one fitted noise level (the paper's); stderr: each run's standard error",
    )
    fit.add_argument("--results", default="results", help="root of the results tables")

    suggest = commands.add_parser(
        "suggest",
        help="propose the next points of a finished sweep: where the GP expects a run to "
        "narrow the best alpha's 90%% intervals most",
        description="Fits the sweep's GP surface (as `fit`) on its finished trials and picks "
        "--budget (alpha, R) points at its trained R, one at a time, each where observing the "
        "metric is expected to shrink the summed 90% interval width (log-odds) of the best "
        "alpha the most. Writes --out: the sweep (same name, its base in full, every point) "
        "plus the suggestions, for `dualsweep plan` and `dualsweep sweep`; the new trials join "
        "the sweep's tables. Comments of the original file are not kept.",
    )
    suggest.add_argument("sweep_file", help=f"{SWEEP_HELP}, whose trials have finished")
    suggest.add_argument("--budget", type=_count, required=True, help="points to propose")
    suggest.add_argument("--out", required=True, help="the sweep file to write (a new file)")
    suggest.add_argument("--force", action="store_true", help="replace --out if it exists")
    suggest.add_argument(
        "--metric",
        help="the metric whose best alpha to pin down (default: the sweep's search metric, "
        f"else {DEFAULT_METRIC})",
    )
    suggest.add_argument(
        "--noise", default="white", choices=["white", "stderr", "auto"], help="as for `fit`"
    )
    suggest.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    suggest.add_argument("--results", default="results", help="root of the results tables")

    status = commands.add_parser(
        "status",
        help="each trial of a sweep: pending, running (step, loss, ETA), stopped, finished or "
        "failed, from its folder (from any terminal, while the sweep runs or after)",
    )
    status.add_argument("sweep", help=SWEEP_HELP)
    status.add_argument(
        "--storage", default="runs", help="where the sweep's trial folders live; default: runs"
    )
    status.add_argument(
        "--results", default="results", help="root of the results tables; default: results"
    )

    plots = commands.add_parser(
        "plots",
        help="every figure and table of a sweep and its REPORT.md, from its Parquet tables",
        description="Writes RESULTS/<sweep>/figures/*.{png,pdf}, tables/*.{md,tex} and "
        "REPORT.md (the paper's claims against the sweep) from the sweep's tables alone.",
    )
    plots.add_argument("sweep", help=SWEEP_HELP)
    plots.add_argument("--results", default="results", help="root of the results tables")

    simulate = commands.add_parser(
        "simulate",
        help="measure designs (grid, checkerboard, suggest rounds, Optuna search) against a "
        "known truth surface with simulated noise: no training",
        description="Draws K simulated studies of a known metric surface truth(alpha, R) "
        "(lower is better) plus noise; runs each design's own choices on them (the code of a "
        "real sweep, told simulated values) and the GP of `dualsweep fit` at each run count; "
        "writes --out/simulations.parquet, REPORT.md (the error of the posterior median best "
        "alpha against the truth at each R, interval coverage, widths, runs needed) and figures.",
    )
    simulate.add_argument(
        "--truth",
        nargs="+",
        required=True,
        metavar="MODULE:FUNCTION",
        help="loss(alpha, R) -> float, importable from the current folder or PYTHONPATH "
        "(several: one section each); the repository's own: dualsweep.analysis.truths:paper_shaped, "
        "dualsweep.analysis.truths:flat",
    )
    simulate.add_argument(
        "--noise", type=_non_negative, required=True, help="SD of a run's own noise (metric units)"
    )
    simulate.add_argument(
        "--seed-effect",
        type=_non_negative,
        default=0.0,
        help="SD of a noise shared by every alpha at one R of a study (default 0)",
    )
    simulate.add_argument(
        "--studies", type=_count, default=10, help="simulated studies (default 10)"
    )
    simulate.add_argument(
        "--designs",
        nargs="+",
        default=["grid", "suggest"],
        choices=["grid", "checkerboard", "suggest", "optuna"],
        help="default: grid suggest",
    )
    simulate.add_argument(
        "--sweep",
        default="tiny",
        help=f"{SWEEP_HELP} whose points are the grid design and whose R every design uses "
        "(default tiny)",
    )
    simulate.add_argument(
        "--tolerance",
        type=_positive,
        default=1.0,
        help="error (log-odds) within which a design has found the best alpha (default 1.0)",
    )
    simulate.add_argument("--seed", type=int, default=0, help="seed of the simulated noise")
    simulate.add_argument(
        "--samples", type=_count, default=2000, help="posterior samples per fit (as `fit`)"
    )
    simulate.add_argument(
        "--jobs", type=_count, help="worker processes (default: the machine's cores)"
    )
    simulate.add_argument("--out", required=True, help="folder for the tables, report, figures")

    plan = commands.add_parser(
        "plan", help="print a sweep's trials, tokens and compute without launching anything"
    )
    plan.add_argument("sweep_file", help=SWEEP_HELP)
    plan.add_argument(
        "--mfu",
        type=_fraction,
        default=0.4,
        help="model FLOP utilisation assumed, in (0, 1] (default 0.4)",
    )
    plan.add_argument(
        "--peak-tflops",
        type=_positive,
        default=H100_BF16_PEAK_FLOPS / 1e12,
        help=f"accelerator peak TFLOP/s (default {H100_BF16_PEAK_FLOPS / 1e12:g}: H100 SXM dense bf16)",
    )
    # Checked by `cmd_plan` (a bad value is one line naming the flag, exit 2).
    plan.add_argument(
        "--gpus",
        metavar="N",
        help="the cluster's GPUs: prints the sweep's wall-clock on them (its trials scheduled "
        "longest first, each on resources.workers x gpu GPUs) and the storage it peaks at",
    )
    plan.add_argument(
        "--cpus",
        metavar="N",
        help="the same for a CPU sweep (train.device cpu or resources.gpu 0): its cores",
    )
    plan.add_argument(
        "--time",
        metavar="HOURS",
        help="a scheduler job's time limit in hours (SLURM --time): prints the job submissions "
        "the sweep takes (with --gpus or --cpus)",
    )
    return parser


class _Version(argparse.Action):
    """--version: the package version and git commit, looked up only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        from dualsweep.results import code_version

        print(f"dualsweep {code_version()}")
        parser.exit()


def _settings_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--flag` per field of config class `cls` (`memory_mb`: `--memory-mb`), with the
    field's default and docstring, its value checked by the field's own rules."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        doc = docs[f.name].rstrip(".")
        if doc[1:2].islower():  # a sentence made a flag's help, as the others are written
            doc = doc[0].lower() + doc[1:]
        default = f" (default {f.default})" if f.default != "" else ""
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_setting(cls, f.name, hints[f.name]),
            default=f.default,
            help=(doc + default).replace("%", "%%"),  # argparse formats help with %
        )


def _setting(cls: type, name: str, tp: typing.Any):
    """A flag's value as field `name` of `cls` takes it: coerced and checked, or refused with
    the field's reason (`--workers 0`: must be a positive integer)."""

    def parse(text: str) -> typing.Any:
        try:
            value = coerce(text, tp, name)
            cls(**{name: value})  # the field's rules, beside the other fields' defaults
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{name}: ")) from None
        return value

    return parse


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text})") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (got {text})")
    return value
