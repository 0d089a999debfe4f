"""Shared benchmark machinery: the machine's description, interleaved timing, result files.

Every benchmark measures two things back to back, alternating A and B (step by step where
both are training steps, run by run otherwise) over several repetitions so that drift
(thermal, other load) hits both alike, and reports the ratio of medians with the spread
(min and max of the per-repetition ratios). `make bench` repeats each training benchmark
in fresh processes and reports the median process, with the spread across processes
(`across_processes`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }
    try:
        model = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu"] = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    return info


def memory_kb(field: str, pid: int | str = "self") -> int:
    """A memory field of /proc/<pid>/status in kB (VmRSS, VmHWM: the peak resident set), 0
    when the process is gone or has no such field."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@dataclass
class Ratio:
    name: str
    what: str
    numerator: str
    denominator: str
    ratio: float
    spread: tuple[float, float]
    target: str
    """">= X" or "<= X" for a target on the ratio, or "report" for none."""
    details: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target == "report":
            return None
        op, bound = self.target.split()
        return {">=": self.ratio >= float(bound), "<=": self.ratio <= float(bound)}[op]

    def line(self) -> str:
        verdict = "n/a" if self.met is None else ("met" if self.met else "MISSED")
        return (
            f"{self.name:<18} {self.ratio:>8.3f}  [{self.spread[0]:.3f}, {self.spread[1]:.3f}]  "
            f"{self.target:<14} {verdict:<7} {self.numerator} / {self.denominator}"
        )


def interleaved(
    a: Callable[[], float], b: Callable[[], float], repetitions: int
) -> tuple[list[float], list[float]]:
    """Alternate measurements of a and b (each returns a rate or a time); a first, then b first."""
    results_a, results_b = [], []
    for i in range(repetitions):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        x, y = first(), second()
        if i % 2 == 1:
            x, y = y, x
        results_a.append(x)
        results_b.append(y)
    return results_a, results_b


def alternating_steps(
    step_a: Callable[[Any], None],
    step_b: Callable[[Any], None],
    batches: list,
    repetitions: int,
    sync: Callable[[], None] = lambda: None,
) -> tuple[list[float], list[float]]:
    """Per repetition, the median step time of a and of b, stepping them alternately.

    a and b take turns batch by batch (a first in even repetitions, b first in odd ones), so
    whatever slows the machine down for a few seconds slows both alike; whole-run blocks
    of each, even interleaved, let such drift land on one side. `sync` waits for an
    accelerator before and after each step."""
    medians_a, medians_b = [], []
    for i in range(repetitions):
        times_a, times_b = [], []
        for batch in batches:
            pair = ((step_a, times_a), (step_b, times_b))
            for step, times in pair if i % 2 == 0 else pair[::-1]:
                sync()
                start = time.perf_counter()
                step(batch)
                sync()
                times.append(time.perf_counter() - start)
        medians_a.append(statistics.median(times_a))
        medians_b.append(statistics.median(times_b))
    return medians_a, medians_b


def ratio_of(a: list[float], b: list[float]) -> tuple[float, tuple[float, float]]:
    """Median of a over median of b, with the min and max per-repetition ratios."""
    per_rep = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.median(a) / statistics.median(b), (min(per_rep), max(per_rep))


def across_processes(results: list[Ratio]) -> Ratio:
    """One benchmark measured in several fresh processes, as one result.

    On a shared machine the same comparison moves by several percent from one process to
    the next (where memory lands, which cores the threads get) while the repetitions
    within a process agree, so the process is the unit of noise: the result is the median
    process's (the lower middle one for an even count), its details included, with the
    lowest and highest process ratios as the interval."""
    ratios = [r.ratio for r in results]
    median = sorted(results, key=lambda r: r.ratio)[(len(results) - 1) // 2]
    details = {**median.details, "process_ratios": [round(r, 4) for r in ratios]}
    return replace(median, spread=(min(ratios), max(ratios)), details=details)


def save(result: Ratio) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{result.name}.json"
    payload = {
        **asdict(result),
        "met": result.met,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
