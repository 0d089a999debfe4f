"""The `dualsweep` command line. Heavy packages are imported inside the commands that need them.

Exit codes: 0 success, 1 a run failed or a fault (an unwritable folder, a full disk), 2 a bad
config, data or input file (nothing was written), 130 interrupted. Every error is one line
naming the file or field; `--debug` (or DUALSWEEP_DEBUG=1) adds the full traceback.

Modules: `parser` (the arguments), `run` (train, evaluate, lm-eval), `prepare`, `sweep`
(sweep, plan, status), `fit` (fit, suggest, plots), `simulate`, `searchers` (the searchers
that join the sweep and the analysis, registered before a sweep runs) and `checks` (exit
codes, output-folder checks). This package re-exports the commands, the checks and the exit
codes; `main` runs the function `COMMANDS` names for the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from dualsweep.cli.checks import EXIT_FAILED, EXIT_USAGE, check_run_folder, writable_folder
from dualsweep.cli.fit import cmd_fit, cmd_plots, cmd_suggest
from dualsweep.cli.parser import build_parser
from dualsweep.cli.prepare import cmd_prepare
from dualsweep.cli.run import cmd_evaluate, cmd_export, cmd_generate, cmd_lm_eval, cmd_train
from dualsweep.cli.simulate import cmd_simulate
from dualsweep.cli.sweep import cmd_plan, cmd_status, cmd_sweep
from dualsweep.config import ConfigError

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "COMMANDS",
    "build_parser",
    "check_run_folder",
    "cmd_evaluate",
    "cmd_export",
    "cmd_generate",
    "cmd_fit",
    "cmd_lm_eval",
    "cmd_plan",
    "cmd_plots",
    "cmd_prepare",
    "cmd_simulate",
    "cmd_status",
    "cmd_suggest",
    "cmd_sweep",
    "cmd_train",
    "main",
    "writable_folder",
]


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": cmd_train,
    "prepare": cmd_prepare,
    "sweep": cmd_sweep,
    "evaluate": cmd_evaluate,
    "lm-eval": cmd_lm_eval,
    "export": cmd_export,
    "generate": cmd_generate,
    "fit": cmd_fit,
    "suggest": cmd_suggest,
    "plan": cmd_plan,
    "status": cmd_status,
    "plots": cmd_plots,
    "simulate": cmd_simulate,
}
"""The function each command runs (tests replace an entry to run `main` around a fake)."""


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean a bad input file (exit 2), from the modules that define them where
    they are loaded (a module not loaded raised none; importing it could need torch)."""
    errors: list[type[Exception]] = [ConfigError]
    for module, name in (
        ("dualsweep.data.readers", "DataError"),
        ("dualsweep.evaluate.tasks", "TaskError"),
        ("dualsweep.results", "ResultsError"),
    ):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


# The extra (pyproject.toml) that installs each optional top-level package.
_EXTRA_OF = {
    **dict.fromkeys(("torch", "lightning", "tokenizers"), "train"),
    **dict.fromkeys(("ray", "optuna"), "sweep"),
    **dict.fromkeys(("sklearn", "matplotlib"), "analysis"),
    "lm_eval": "lmeval",
    **dict.fromkeys(("datasets", "transformers", "safetensors"), "hf"),
    "tensorboard": "tensorboard",
    "wandb": "wandb",
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DUALSWEEP_DEBUG", "") not in ("", "0")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as e:
        print(f"dualsweep: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        extra = _EXTRA_OF.get((e.name or "").split(".")[0])
        if extra is None or debug:
            raise
        print(
            f"dualsweep: error: `dualsweep {args.command}` needs the {extra} extra ({e}): "
            f"pip install 'dualsweep[{extra}]' (`make install` installs every extra)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - one line per error; --debug for the traceback
        if debug:
            import traceback

            traceback.print_exc()
        bad_input = isinstance(e, _bad_input_errors())
        message = str(e) if bad_input else f"{type(e).__name__}: {e}"
        hint = "" if debug or bad_input else " (run with --debug for the traceback)"
        print(f"dualsweep: error: {message}{hint}", file=sys.stderr)
        return EXIT_USAGE if bad_input else EXIT_FAILED
