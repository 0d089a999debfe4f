"""The GPU check (benchmarks/gpu_check.py) rehearsed on the CPU.

The check runs in sessions that are lent a GPU for a few minutes, with a plain python3 that
has torch and Lightning but no Ray, no Optuna and no venv: a broken stage would waste those
minutes, so the whole check runs here, through `make gpu-check`, with Ray and Optuna made
unimportable, and its numbers are checked against what they must be (behind `slow`: 35 s;
its stages' own checks, the sync census, data-parallel steps and resume, are in the default
suite: tests/test_sync_census.py, test_distributed.py, test_train.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from dualsweep.benchmarks import gpu_check, gpu_stages

from .helpers import REPO


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> dict:
    """`make gpu-check DEVICE=cpu` with `import ray` and `import optuna` failing."""
    root = tmp_path_factory.mktemp("gpu-check")
    blocked = root / "blocked"
    for name in ("ray", "optuna"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    out = root / "out"
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    done = subprocess.run(
        ["make", "-s", "gpu-check", f"PY={sys.executable}", "DEVICE=cpu", f"OUT={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {
        "report": json.loads((out / gpu_check.JSON_FILE).read_text()),
        "markdown": (out / gpu_check.MARKDOWN_FILE).read_text(),
        "log": (out / gpu_check.LOG_FILE).read_text(),
    }


@pytest.mark.slow  # 35 s; `make test-slow`, and before any GPU session
def test_every_stage_of_the_rehearsal_passes_without_ray_or_optuna(rehearsal):
    report = rehearsal["report"]
    assert report["imported"] == {"ray": False, "optuna": False}
    stages = report["stages"]
    assert list(stages) == [
        "environment",
        "sdpa_kernels",
        "sync_census",
        "lightning_smoke",
        "data_parallel",
        "step_tiny",
        "compile_tiny",
    ]
    assert {name: r["status"] for name, r in stages.items()} == dict.fromkeys(stages, "ok")
    for name in stages:  # one markdown row and one log line per stage
        assert f"| {name} | ok |" in rehearsal["markdown"]
        assert f"[{name}] ok: " in rehearsal["log"]


@pytest.mark.slow
@pytest.mark.distributed
def test_the_rehearsal_s_numbers_are_what_they_must_be(rehearsal):
    from dualsweep.model import Transformer
    from dualsweep.sweep.plan import training_flops_per_token

    stages = {name: r["result"] for name, r in rehearsal["report"]["stages"].items()}
    assert stages["environment"]["device"] == "cpu" and stages["environment"]["device_count"] == 0
    for mode in ("ar", "md", "mixed"):  # SDPA ran, and the profiler named its kernel
        assert stages["sdpa_kernels"][mode]["backend"], mode

    # No blocking call in a step, and none added by more micro-batches; one (async) copy
    # per step: the step's objective flags and row weights.
    for allocation, counts in stages["sync_census"].items():
        if allocation == "summary":
            continue
        assert set(counts["added_by_3_more_micro_batches"].values()) == {0}, allocation
        for parts in ("1 micro-batches", "4 micro-batches"):
            census = counts[parts]
            assert census["constructions"] + census["blocking_copies"] + census["host_reads"] == 0
            assert census["async_copies"] == 1, (allocation, parts, census["places"])

    smoke = stages["lightning_smoke"]
    assert smoke["steps"] == 48 and smoke["interrupted_at_steps"] == 24
    assert smoke["resumed_from_step"] == 16  # its last checkpoint
    assert smoke["resumed_curve_bitwise_equal"] and smoke["accelerator"] == "cpu"
    assert 0 < smoke["final_held_out_ar_loss"] < math.log(512)  # learned: below uniform

    parallel = stages["data_parallel"]
    assert parallel["backend"] == "gloo" and parallel["worker_rows"] == [[2, 2], [2, 2]]
    assert parallel["start_weights_differed"]  # the broadcast, not the seed, made them equal

    config = gpu_stages.size_config("tiny")
    step, compiled = stages["step_tiny"], stages["compile_tiny"]
    assert step["parameters"] == Transformer(config.model).num_parameters()
    # Causal rows count their attention at half: alpha 1/2 (8 of 16 rows AR) and alpha 1.
    attention = 12 * config.model.n_layers * config.model.seq_len * config.model.d_model
    dense = training_flops_per_token(config.model)  # every row bidirectional
    assert step["flops_per_token"] == {
        "alpha_half": dense - attention / 4,
        "alpha_one": dense - attention / 2,
    }
    assert step["dual_overhead_equal_flops"] == pytest.approx(
        step["dual_overhead"] * (dense - attention / 4) / (dense - attention / 2)
    )
    assert step["tokens_per_step"] == config.train.batch_size * config.model.seq_len == 16 * 128
    for result in (step, compiled):
        for key, rate in result["tokens_per_s"].items():
            assert 0 < rate < math.inf, key
            assert result["mfu"][key] is None  # no nominal peak for a CPU
            share = (
                rate
                * result["flops_per_token"][key]
                / stages["environment"]["measured_bf16_matmul_peak_flops"]
            )
            assert result["of_measured_peak"][key] == pytest.approx(share)
    assert compiled["compile_and_first_step_s"] > 0 and "step_peak_memory_gb" not in step


def test_a_stage_that_does_not_fit_the_budget_is_skipped(tmp_path):
    argv = ["--device", "cpu", "--out", str(tmp_path), "--budget-s", "30"]
    assert gpu_check.main([*argv, "--stages", "environment", "compile_tiny"]) == 0
    stages = json.loads((tmp_path / gpu_check.JSON_FILE).read_text())["stages"]
    assert stages["environment"]["status"] == "ok"
    assert stages["compile_tiny"] == {
        "estimate_s": 60,
        "status": "skipped",
        "reason": stages["compile_tiny"]["reason"],
    } and stages["compile_tiny"]["reason"].startswith("estimated 60 s, ")


def test_a_failed_stage_is_recorded_and_the_next_ones_run(tmp_path, monkeypatch):
    def broken(ctx):
        """A stage that fails."""
        raise RuntimeError("no kernel image is available")

    monkeypatch.setattr(gpu_stages, "sdpa_kernels", broken)
    argv = ["--device", "cpu", "--out", str(tmp_path), "--stages", "environment", "sdpa_kernels"]
    assert gpu_check.main([*argv, "sync_census"]) == 1
    stages = json.loads((tmp_path / gpu_check.JSON_FILE).read_text())["stages"]
    assert [r["status"] for r in stages.values()] == ["ok", "failed", "ok"]
    assert stages["sdpa_kernels"]["error"] == "RuntimeError: no kernel image is available"
    assert "| sdpa_kernels | failed |" in (tmp_path / gpu_check.MARKDOWN_FILE).read_text()


def test_an_unknown_stage_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--stages", "step_124m"])
    assert exit_.value.code == 2
    assert "--stages: unknown ['step_124m']" in capsys.readouterr().err
