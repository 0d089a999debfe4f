"""Sweep efficiency: how much of the machine a sweep spends training.

sum of per-trial training times / (concurrency x sweep wall time), for the smoke sweep's
4 points with evaluation switched off (evaluation is not training; its cost is measured by
`dualsweep evaluate`), on the embedded Ray with one single-thread trial per core. The wall
time includes everything a user waits for: Ray start-up, worker imports, data preparation
(cached), held-out evaluations during training, writing results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dualsweep.config import load_sweep
from dualsweep.results import load
from dualsweep.sweep.runner import run_sweep

from .common import Ratio


def fixed_costs() -> dict[str, float]:
    """What every embedded sweep pays however short its trials, measured here and now:
    starting and stopping the embedded Ray, and a fresh process importing the training stack
    (what each Ray worker does before its first trial trains)."""
    from dualsweep.sweep.runner import _ray_environment, _start_ray

    _ray_environment(None)  # before ray is imported, as in a sweep
    import ray

    start = time.perf_counter()
    _start_ray(None)
    ray.shutdown()
    ray_start_stop = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import dualsweep.training.module, dualsweep.training.run"],
        check=True,
    )
    return {"ray_start_stop_s": ray_start_stop, "worker_import_s": time.perf_counter() - start}


def sweep_efficiency(budget_multiple: int = 1) -> Ratio:
    raw = yaml.safe_load(Path("sweeps/smoke.yaml").read_text())
    raw["name"] = "bench"
    raw["base"].setdefault("evaluation", {})["tasks"] = []
    raw["base"]["train"]["token_budget"] *= budget_multiple
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(raw))
        sweep = load_sweep(path)
        # Data preparation is cached: prepared before the clock, as every sweep but a
        # machine's first finds it (after a change of the corpus format, the first bench
        # run would otherwise time one preparation too).
        from dualsweep.data import prepare_corpus

        prepare_corpus(sweep.base.data, sweep.base.model.vocab_size, log=lambda m: None)
        start = time.perf_counter()
        run_sweep(
            sweep,
            results_root=Path(tmp) / "results",
            storage=Path(tmp) / "runs",
            log=lambda m: None,
        )
        wall = time.perf_counter() - start
        runs = load("bench", Path(tmp) / "results").runs
    concurrency = min(len(runs), int((os.cpu_count() or 1) // sweep.resources.cpu))
    training = float(runs["train_time_s"].sum())
    ratio = training / (concurrency * wall)
    fixed = fixed_costs()
    # The most this sweep could reach if Ray start-up, shutdown and worker imports were its
    # only costs beyond training: what is left to gain elsewhere is the gap to this bound.
    bound = training / (
        concurrency
        * (training / concurrency + fixed["ray_start_stop_s"] + fixed["worker_import_s"])
    )
    budget = sweep.base.train.token_budget
    name = "sweep_efficiency" if budget_multiple == 1 else f"sweep_efficiency_{budget_multiple}x"
    smoke_size = budget_multiple == 1  # the target is stated for the smoke-size sweep
    return Ratio(
        name,
        f"sum of trial training times over (concurrency x wall), {len(runs)} trials of {budget:,} tokens",
        "sum train s",
        "concurrency x wall s",
        ratio,
        (ratio, ratio),
        ">= 0.9" if smoke_size else "report",
        {
            "trials": len(runs),
            "concurrency": concurrency,
            "wall_s": wall,
            "train_s": training,
            "mean_trial_train_s": training / len(runs),
            "trial_wall_s": float(runs["wall_time_s"].sum()),
            "token_budget": budget,
            **fixed,
            "bound_with_fixed_costs": bound,
        },
    )
