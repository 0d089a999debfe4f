"""The GPU check: the first minutes on a GPU as one command, `make gpu-check OUT=dir`.

python -m benchmarks.gpu_check --out DIR [--device cuda|cpu] [--budget-s 450] [--stages ...]

Runs the stages of benchmarks/gpu_stages.py smallest first: the environment, the SDPA kernels
of AR, MD and mixed micro-batches, a census of host syncs in a training step, a Lightning
`dualsweep train` smoke run in bf16 with checkpoint and resume, a 2-worker data-parallel step
(NCCL, with 2 GPUs), then tokens/s, MFU and memory of the ~124M and 470M steps, eager and
compiled. After every stage it rewrites DIR/gpu-check.json (every stage's status: ok,
failed, skipped or running) and DIR/gpu-check.md, and appends to DIR/gpu-check.log, so a
check stopped at any moment keeps what it measured. A stage that would not fit in what is
left of `--budget-s` is skipped (its estimate is in STAGES), and a watchdog ends the check
at the budget plus a minute, recording the stage it stopped.

`--device cpu` is the rehearsal: the same code with the laptop model, in about two minutes
on 2 cores (tests/test_gpu_check.py runs it). It needs torch, Lightning, numpy, pandas,
pyarrow, PyYAML and tokenizers from a checkout (`PYTHONPATH=.`): no install, no Ray, no
Optuna, no network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dualsweep.paths import atomic_write

from . import gpu_stages
from .gpu_stages import Context, Skipped, compiled_speed, format_error, step_speed

JSON_FILE, MARKDOWN_FILE, LOG_FILE = "gpu-check.json", "gpu-check.md", "gpu-check.log"
DEFAULT_BUDGET_S = 450
"""7.5 minutes of stages, so that the check ends within 8 on one H100/H200."""


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], dict]
    estimate_s: float
    """Seconds it is expected to take on one H100/H200 (a guess until a GPU has run it; the
    check skips a stage that would not fit in what is left of the budget)."""


def stages_for(ctx: Context) -> list[Stage]:
    stages = [
        Stage("environment", gpu_stages.environment, 15),
        Stage("sdpa_kernels", gpu_stages.sdpa_kernels, 20),
        Stage("sync_census", gpu_stages.sync_census, 15),
        Stage("lightning_smoke", gpu_stages.lightning_smoke, 60),
        Stage("data_parallel", gpu_stages.data_parallel, 45),
    ]
    estimates = {"124m": (40, 60), "470m": (80, 120), "tiny": (10, 60)}
    for size in ctx.sizes:
        eager_s, compiled_s = estimates[size]
        stages.append(Stage(f"step_{size}", step_speed(size), eager_s))
        stages.append(Stage(f"compile_{size}", compiled_speed(size), compiled_s))
    return stages


class Check:
    """Runs stages in order and keeps the report on disk after each one."""

    def __init__(self, out: Path, device: torch.device, budget_s: float, command: str):
        self.out = out
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.report = {
            "check": "gpu-check",
            "device": device.type,
            "command": command,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": budget_s,
            "stages": {},
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / LOG_FILE).write_text("")

    def log(self, line: str) -> None:
        print(line, flush=True)
        with (self.out / LOG_FILE).open("a") as f:
            f.write(line + "\n")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def run(self, stage: Stage, ctx: Context) -> None:
        left = self.budget_s - self.elapsed_s
        record = self.report["stages"][stage.name] = {"estimate_s": stage.estimate_s}
        if stage.estimate_s > left:
            record.update(
                status="skipped", reason=f"estimated {stage.estimate_s:.0f} s, {left:.0f} s left"
            )
            self.log(f"[{stage.name}] skipped: {record['reason']}")
            self.write()
            return
        record["status"] = "running"  # what a kill leaves: the stage it stopped
        self.write()
        self.log(f"[{stage.name}] {first_sentence(stage.run.__doc__ or '')}")
        started = time.monotonic()
        try:
            result = stage.run(ctx)
            record.update(status="ok", result=result)
            self.log(f"[{stage.name}] ok: {result.get('summary', '')}")
        except Skipped as e:
            record.update(status="skipped", reason=str(e))
            self.log(f"[{stage.name}] skipped: {e}")
        except Exception as e:  # noqa: BLE001 - a failed stage is recorded; the next ones run
            record.update(status="failed", **format_error(e))
            self.log(f"[{stage.name}] FAILED: {record['error']}\n{record['traceback']}")
        record["seconds"] = round(time.monotonic() - started, 1)
        self.write()

    def stop_running(self, why: str) -> None:
        """Mark the stage in progress as stopped (the watchdog's last write)."""
        for record in self.report["stages"].values():
            if record.get("status") == "running":
                record.update(status="failed", error=why)
        self.write()

    def write(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed_s, 1)
        # Heavy packages the check must not need: it runs where they are not installed.
        self.report["imported"] = {name: name in sys.modules for name in ("ray", "optuna")}
        text = json.dumps(self.report, indent=2, default=str) + "\n"
        atomic_write(self.out / JSON_FILE, lambda tmp: tmp.write_text(text))
        lines = "\n".join(markdown(self.report)) + "\n"
        atomic_write(self.out / MARKDOWN_FILE, lambda tmp: tmp.write_text(lines))


def first_sentence(text: str) -> str:
    words = " ".join(text.split())
    return words.split(". ")[0].split(": ")[0].rstrip(".")


def markdown(report: dict) -> list[str]:
    """The check's summary: one row per stage, then each stage's one-line result."""
    lines = [
        f"# GPU check ({report['device']}), {report['started_at']}",
        "",
        f"`{report['command']}`: {report.get('elapsed_s', 0):.0f} s of a {report['budget_s']:.0f} s budget.",
        "",
        "| stage | status | seconds | result |",
        "|---|---|---|---|",
    ]
    for name, record in report["stages"].items():
        result = (
            record.get("result", {}).get("summary")
            or record.get("reason")
            or record.get("error", "")
        )
        seconds = record.get("seconds", "")
        lines.append(f"| {name} | {record['status']} | {seconds} | {result.replace('|', '/')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the JSON, markdown and log"
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument(
        "--steps", type=int, default=2, help="timed optimizer steps per measurement"
    )
    parser.add_argument("--stages", nargs="+", help="only these stages (default: all)")
    parser.add_argument(
        "--work", type=Path, help="scratch folder for run folders (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps: at least 1 (got {args.steps})")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (DEVICE=cpu runs the rehearsal)")
    command = "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv)
    check = Check(args.out, device, args.budget_s, command)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        ctx = Context(
            device=device, work=args.work or Path(scratch), log=check.log, steps=args.steps
        )
        stages = stages_for(ctx)
        unknown = set(args.stages or ()) - {s.name for s in stages}
        if unknown:
            parser.error(
                f"--stages: unknown {sorted(unknown)} (choose from {[s.name for s in stages]})"
            )
        watchdog = threading.Timer(args.budget_s + 60, _give_up, args=(check,))
        watchdog.daemon = True
        watchdog.start()
        for stage in stages:
            if not args.stages or stage.name in args.stages:
                check.run(stage, ctx)
        watchdog.cancel()
    failed = [n for n, r in check.report["stages"].items() if r["status"] == "failed"]
    check.log(
        f"-> {args.out / JSON_FILE}: {len(check.report['stages'])} stages in {check.elapsed_s:.0f} s"
        + (f", FAILED: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def _give_up(check: Check) -> None:
    """The watchdog: a stage ran far past the budget (a hung collective, a slow compile)."""
    check.stop_running(f"stopped by the check's watchdog at {check.elapsed_s:.0f} s")
    check.log("watchdog: the check ran a minute past its budget; stopping")
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
