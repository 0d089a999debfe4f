"""Sweeps on an embedded Ray: results tables, resume after kill -9, failures, bad files, plan.

Long because each test drives a real sweep on an embedded Ray, and each fault it injects
(kill -9, Ctrl-C, a diverging trial, a bad file, a cluster address) is set up in full.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dualsweep.cli import main
from dualsweep.config import load_sweep, run_key
from dualsweep.results import load
from dualsweep.sweep.plan import parameter_counts, plan_sweep, training_flops_per_token
from dualsweep.sweep.runner import run_sweep

from .helpers import (
    REPO,
    SMOKE,
    key_of,
    kill_processes_with,
    quick,
    sweep_command,
    trial_folder,
    write_sweep,
    write_text_corpus,
)


def attempts(storage: Path, sweep: str, key: str) -> int:
    lines = (trial_folder(storage / sweep, key) / "attempts.jsonl").read_text().splitlines()
    return len([line for line in lines if line.strip()])


def trials_released(storage: Path, sweep: str) -> bool:
    """No process holds any trial of `sweep` (a killed driver's workers are gone)."""
    from dualsweep.paths import exclusive_lock

    for lock in storage.glob(f"{sweep}/*/.lock"):
        try:
            with exclusive_lock(lock, wait=False):
                pass
        except BlockingIOError:
            return False
    return True


@pytest.mark.ray
def test_smoke_sweep_end_to_end(tmp_path, ray_cluster, monkeypatch):
    # The embedded Ray of `make sweep` on a laptop (the other sweep tests join a cluster).
    evaluation = {"tasks": ["continuation", "word_order"], "modes": ["ar", "md", "prefix"]}
    sweep = load_sweep(write_sweep(tmp_path / "smoke.yaml", base=quick(evaluation=evaluation)))
    lines: list[str] = []
    outcome = run_sweep(
        sweep, results_root=tmp_path / "results", storage=tmp_path / "runs", log=lines.append
    )
    assert outcome.finished == 4 and outcome.failed == [] and outcome.launched == 4
    running = [int(m.group(1)) for line in lines if (m := re.search(r", (\d+) running,", line))]
    assert 1 <= max(running) <= min(4, os.cpu_count())  # one 1-CPU trial per core at most

    results = load("smoke", tmp_path / "results")
    runs = results.runs
    assert sorted(runs["run_key"]) == sorted(run_key(c) for c in sweep.trials())  # each once
    assert sorted(zip(runs["alpha"], runs["repetitions"], strict=True)) == sorted(
        (p.alpha, p.repetitions) for p in sweep.points
    )
    assert (runs["status"] == "finished").all() and (runs["attempts"] == 1).all()
    for column in (
        "final_held_out_ar_loss",
        "best_held_out_ar_loss",
        "final_held_out_md_elbo",
        "tokens_per_s",
    ):
        assert runs[column].map(math.isfinite).all(), column
    assert (runs["unique_tokens"] == 32768 // runs["repetitions"]).all()
    assert set(results.curves["run_key"]) == set(runs["run_key"])
    assert not results.curves.duplicated(["run_key", "step"]).any()

    # One evals row per trial x task x mode.
    evals = results.evals
    assert len(evals) == 4 * 2 * 3 and runs["evaluated"].all()
    assert set(evals["mode"]) == {"ar", "md", "prefix"} and set(evals["task"]) == {
        "continuation",
        "word_order",
    }
    assert not evals.duplicated(["run_key", "task", "mode"]).any()

    # Running it again trains nothing and changes no row.
    again = run_sweep(
        sweep, results_root=tmp_path / "results", storage=tmp_path / "runs", log=lines.append
    )
    assert again.launched == 0 and again.finished == 4
    pd.testing.assert_frame_equal(load("smoke", tmp_path / "results").runs, runs)

    # Adding a task evaluates the finished trials again, without training them again. Its
    # path is relative to where the sweep runs, as trials run elsewhere (a Tune trial folder,
    # a cluster process started in another directory).
    monkeypatch.chdir(tmp_path)
    task = Path("extra.jsonl")
    task.write_text(
        "\n".join(
            json.dumps({"context": "def", "choices": [" f(x):", " ))(("], "label": 0})
            for _ in range(5)
        )
    )
    path = write_sweep(
        tmp_path / "smoke.yaml",
        base=quick(evaluation={"tasks": ["word_order", str(task)], "modes": ["ar"]}),
    )
    more = run_sweep(  # on the shared cluster: the same trial folders, another Ray
        load_sweep(path),
        results_root=tmp_path / "results",
        storage=tmp_path / "runs",
        address=ray_cluster,
        log=lines.append,
    )
    assert more.finished == 4 and more.launched == 4  # for evaluation only
    runs = load("smoke", tmp_path / "results").runs
    assert (runs["attempts"] == 1).all() and runs["evaluated"].all()
    evals = load("smoke", tmp_path / "results").evals
    assert set(zip(evals["task"], evals["mode"], strict=True)) == {
        ("word_order", "ar"),
        ("extra", "ar"),
    }


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def kill_9_when(command: list[str], env: dict, condition, timeout: float, what: str) -> None:
    """Start a driver process and SIGKILL it once `condition()` holds."""
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(condition, timeout, what)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()


@pytest.mark.ray
@pytest.mark.slow
def test_kill_9_then_ctrl_c_of_the_driver_then_the_same_command_finishes(tmp_path, ray_cluster):
    # (Slow for the default suite's 4 minutes; the Ctrl-C message and exit code are checked
    # without Ray in test_faults.py.)
    # One trial at a time, with checkpoints: a driver killed by SIGKILL, the next one stopped
    # by Ctrl-C, a third one finishes the sweep. Drivers join the shared cluster.
    path = write_sweep(
        tmp_path / "driver.yaml",
        name="driver",
        max_concurrent_trials=1,
        points=[[1, 1], [0, 1]],  # one to finish, one to cut short (twice)
        base=quick(train={"token_budget": 65536, "checkpoint_interval": 8}),
    )
    sweep = load_sweep(path)
    keys = [run_key(c) for c in sweep.trials()]
    storage, results = tmp_path / "runs", tmp_path / "results"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}

    def folders():
        return [trial_folder(storage / "driver", k) for k in keys]

    def finished():
        return {
            k for k, f in zip(keys, folders(), strict=True) if (f / "summary.parquet").is_file()
        }

    def checkpointed():
        return {k for k, f in zip(keys, folders(), strict=True) if (f / "checkpoint.pt").is_file()}

    kill_9_when(
        sweep_command(path, storage, results),
        env,
        lambda: finished() and checkpointed() - finished(),
        120,
        "a finished trial and a checkpointed one",
    )
    # The killed driver's trial workers die with its job: only then is what they left final.
    _wait_for(lambda: trials_released(storage, "driver"), 60, "the killed driver's workers to end")
    finished_before, interrupted = finished(), checkpointed() - finished()
    assert finished_before and interrupted

    attempts_now = sum(
        attempts(storage, "driver", k)
        for k in keys
        if (trial_folder(storage / "driver", k) / "attempts.jsonl").is_file()
    )
    driver = subprocess.Popen(
        sweep_command(path, storage, results),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(
            lambda: (
                sum(
                    attempts(storage, "driver", k)
                    for k in keys
                    if (trial_folder(storage / "driver", k) / "attempts.jsonl").is_file()
                )
                > attempts_now
            ),
            120,
            "the second driver's first trial to start",
        )
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, output
    assert "interrupted with" in output and "run the same command again" in output
    # Tune's hints that do not apply to a dualsweep sweep are not shown.
    assert "Tuner.restore" not in output and "Failed to fetch metrics" not in output
    _wait_for(lambda: trials_released(storage, "driver"), 60, "the stopped trials to end")

    outcome = run_sweep(
        sweep, results_root=results, storage=storage, address=ray_cluster, log=lambda line: None
    )
    assert outcome.finished == 2 and outcome.failed == []
    runs = load("driver", results).runs
    assert sorted(runs["run_key"]) == sorted(keys)  # every point once
    for key in finished_before:  # never trained again
        assert attempts(storage, "driver", key) == 1
    for key in interrupted:  # resumed from its checkpoint, not started over
        assert attempts(storage, "driver", key) >= 2
        assert (
            "resuming from step"
            in (trial_folder(storage / "driver", key) / "train.log").read_text()
        )


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_to_a_real_driver_stops_it_like_ctrl_c(tmp_path, ray_cluster):
    # (test_faults.py checks the handler without Ray; this sends the signal to a driver.)
    path = write_sweep(
        tmp_path / "term.yaml",
        name="term",
        max_concurrent_trials=1,
        points=[[1, 1], [0, 1]],
        base=quick(train={"token_budget": 65536, "checkpoint_interval": 8}),
    )
    storage, results = tmp_path / "runs", tmp_path / "results"
    driver = subprocess.Popen(
        sweep_command(path, storage, results),
        env={**os.environ, "RAY_ADDRESS": ray_cluster},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(
            lambda: any(storage.glob("term/*/attempts.jsonl")), 120, "the first trial to start"
        )
        driver.send_signal(signal.SIGTERM)  # what `kill PID` and a scheduler's time limit send
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, output
    # (0 or 1 finished: a loaded machine may finish the first trial before the signal lands)
    assert re.search(r"interrupted with [01]/2 trials finished; run the same command again", output)
    assert "Traceback" not in output, output


@pytest.mark.ray
@pytest.mark.slow
def test_errors_that_come_back_on_every_try_are_one_line_and_not_retried(
    tmp_path, capsys, ray_cluster, monkeypatch
):
    # (Slow for the default suite's time; its live lines are checked without Ray in
    # test_faults.py, and run_trial's report of a NaN in test_faults.py too.)
    # A small text corpus: R = 1 needs 32,768 unique tokens and fails in data preparation,
    # an input error; R = 16 needs 2,048 and trains, and at lr 1e30 its loss turns NaN,
    # which the same seed does again on every try. Neither is retried.
    write_text_corpus(tmp_path / "corpus", n_documents=80)
    monkeypatch.chdir(tmp_path)  # the corpus path is relative to where the sweep runs
    path = write_sweep(
        tmp_path / "failing.yaml",
        name="failing",
        points=[[1, 1], [1, 16]],
        retries=1,
        base=quick(
            data={"source": "text_dir", "path": "corpus"},
            optim={"lr": 1e30, "grad_clip": 0},
        ),
    )
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)
    args = ["sweep", str(path), "--storage", str(tmp_path / "runs")]
    assert main([*args, "--results", str(tmp_path / "results")]) == 1
    captured = capsys.readouterr()
    assert "2 trial(s) failed" in captured.err, captured
    runs = load("failing", tmp_path / "results").runs.set_index("repetitions")
    assert (runs["status"] == "failed").all()
    assert "data.repetitions: R=1 with train.token_budget=32768 needs" in runs.loc[1, "error"]
    assert runs.loc[16, "error"].startswith("NonFiniteLossError: training loss became nan")
    assert (runs["attempts"] == 1).all()  # not retried
    printed = (captured.out + captured.err).splitlines()
    for r, error in ((1, "DataError: data.repetitions: R=1"), (16, "NonFiniteLossError")):
        key = runs.loc[r, "run_key"]
        about = [line for line in printed if key in line]
        assert len(about) <= 5, about  # started, FAILED, the failed list: no traceback
        failed = [line for line in about if "FAILED" in line]
        assert len(failed) == 1 and f"not retried: {error}" in failed[0], about
        assert f"{runs.loc[r, 'trial_dir']}/train.log" in failed[0]
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"retires": 1}, "retires: unknown sweep field"),
        ({"points": [[1.5, 1]]}, "points[0].alpha: alpha must be in [0, 1] (got 1.5)"),
        (
            {"points": [[1, 0]]},
            "points[0].repetitions: repetitions must be a positive integer (got 0)",
        ),
        ({"points": [[1, 2], [1, 2]]}, "points[1]: is listed twice (also points[0])"),
        ({"base": "missing.yaml"}, "base: base config file not found"),
    ],
)
def test_bad_sweep_files_start_nothing(tmp_path, capsys, change, message):
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = tmp_path / "results"
    assert (
        main(["sweep", str(path), "--results", str(results), "--storage", str(tmp_path / "runs")])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not results.exists() and not (tmp_path / "runs").exists()


def test_plan_of_the_paper_sweep_by_hand(capsys):
    sweep = load_sweep(REPO / "sweeps" / "paper.yaml")
    # 24 blocks of 4 d^2 (attention) + 3 d f (SwiGLU) + 2 d (norms), a final norm, and the
    # untied head (51200 x 1024) in the matmuls; attention adds 12 L T d per token.
    d, f, L, T, V = 1024, 3584, 24, 2048, 51200
    matmul = L * (4 * d * d + 3 * d * f + 2 * d) + d + V * d
    assert parameter_counts(sweep.base.model).matmul == matmul == 417_383_424
    assert parameter_counts(sweep.base.model).total == matmul + V * d  # + the input embedding
    # Attention: 12 L T d per bidirectional (MD) token, half of it per causal (AR) token,
    # whose rows are round(alpha x 256) of each batch of 256 (at least one of each in a mix).
    bidirectional, causal = 6 * matmul + 12 * L * T * d, 6 * matmul + 6 * L * T * d
    assert training_flops_per_token(sweep.base.model) == bidirectional
    assert training_flops_per_token(sweep.base.model, 1.0) == causal
    tokens = (32_000_000_000 // (256 * T)) * 256 * T  # whole steps of 256 sequences
    plans = plan_sweep(sweep)
    assert len(plans) == 50
    ar_rows = [
        min(max(round(p.alpha * 256), 1), 255) if 0 < p.alpha < 1 else 256 * p.alpha for p in plans
    ]
    expected = sum(tokens * (n * causal + (256 - n) * bidirectional) / 256 for n in ar_rows)
    assert sum(p.flops for p in plans) == pytest.approx(expected, rel=1e-12)
    at_1_256 = next(p for p in plans if p.alpha == 1 / 256)  # 1 AR row of 256, not 1/256 of one
    assert at_1_256.flops == pytest.approx(tokens * (causal + 255 * bidirectional) / 256, rel=1e-12)

    assert main(["plan", str(REPO / "sweeps" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert "sweep paper: 50 trials" in out and f"{expected:.4e} FLOPs" in out
    assert "shapes: d_model, ffn_hidden and vocab_size are multiples of 64 and head_dim of 8" in out
    # The harness suite and the built-in tasks in 3 modes, by the sizes plan.py lists.
    assert "evaluation: 9 tasks x 3 modes (ar, md, prefix) per model, about " in out


def test_the_evaluation_estimate_by_hand():
    from dualsweep.config import load_run_config
    from dualsweep.sweep.plan import evaluation_flops, forward_flops_per_token

    config = load_run_config(
        REPO / "sweeps" / "smoke.yaml",
        {"tasks": ["word_order"], "lm_eval_tasks": ["piqa", "my_task"], "modes": ["ar", "md"]},
    )
    flops, unknown = evaluation_flops(config)
    # piqa: 1,838 documents x 2 solutions of 12 + 25 tokens: AR reads each once, MD's
    # pseudo-log-likelihood once per solution token (25 rows). word_order: task_items x 2
    # choices of 10 + 3 tokens: 1 row, then 3.
    # AR reads causally, MD bidirectionally (its attention counted whole).
    ar, md = (forward_flops_per_token(config.model, share) for share in (1.0, 0.0))
    piqa = 1838 * 2 * (12 + 25) * (ar + 25 * md)
    word_order = config.evaluation.task_items * 2 * (10 + 3) * (ar + 3 * md)
    assert flops == pytest.approx(piqa + word_order, rel=1e-12)
    assert unknown == ["my_task"]


def _gpu_sweep(path: Path, **changes) -> Path:
    """Four identical trials (one point, four seeds) on 1 GPU each, with no multiple-choice
    tasks and the held-out curve only at the start and the end: closed-form trial times."""
    base = {
        "train": {"device": "cuda"},
        "held_out": {"eval_interval": 0},
        "evaluation": {"tasks": [], "lm_eval_tasks": []},
    }
    for section, fields in changes.pop("base", {}).items():
        base.setdefault(section, {}).update(fields)
    changes = {
        "points": [[1, 1]],
        "seeds": [0, 1, 2, 3],
        "resources": {"cpu": 1, "gpu": 1},
        **changes,
    }
    return write_sweep(path, name="gpu4", base=base, **changes)


def _smoke_trial_flops() -> float:
    """A smoke trial at alpha 1 with 2 held-out evaluations, by hand: d 64, f 192, 2 layers,
    vocab 512 (tied), seq_len 64, 131,072 tokens; held out: 32 sequences, AR once, MD twice."""
    d, f, L, T, V = 64, 192, 2, 64, 512
    matmul = L * (4 * d * d + 3 * d * f + 2 * d) + d + V * d
    causal, bidirectional = 6 * matmul + 6 * L * T * d, 6 * matmul + 12 * L * T * d
    held_out = 2 * 32 * T * (causal + 2 * bidirectional) / 3  # forward passes: a third
    return 131_072 * causal + held_out


def test_plan_wall_clock_and_submissions_by_hand(tmp_path, capsys):
    from dualsweep.sweep.plan import (
        hardware,
        schedule_trials,
        submissions,
        training_hours,
        trials_at_once,
    )

    sweep = load_sweep(_gpu_sweep(tmp_path / "gpu4.yaml"))
    peak, mfu = 1e8, 0.5  # 50 MFLOP/s: a trial of about 1.2e11 FLOPs takes about 0.67 hours
    hw = hardware(sweep, peak_flops=peak, mfu=mfu)
    assert (hw.unit, hw.per_trial) == ("GPU", 1.0)
    hours = training_hours(sweep, plan_sweep(sweep, peak_flops=peak, mfu=mfu), hw)
    h = _smoke_trial_flops() / (peak * mfu) / 3600
    assert hours == pytest.approx([h] * 4, rel=1e-12)
    # 4 identical trials: 2 rounds on 2 or 3 GPUs, 1 on 4, 4 on 1.
    for gpus, rounds in ((1, 4), (2, 2), (3, 2), (4, 1), (8, 1)):
        slots = trials_at_once(sweep, hw, gpus)
        assert slots == gpus
        assert schedule_trials(hours, slots).wall_clock_hours == pytest.approx(rounds * h)
    # Jobs of 0.8 h split 2 h into 3; jobs of exactly h into 2 (no third for rounding).
    assert submissions(2 * h, 0.4 * h) == 5 and submissions(2 * h, h) == 2
    assert submissions(2 * h, 3 * h) == 1

    limit = 0.8 * h
    assert main(["plan", str(tmp_path / "gpu4.yaml"), "--peak-tflops", "1e-4", "--mfu", "0.5",
                 "--gpus", "2", "--time", repr(limit)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert (
        f"wall-clock on 2 GPUs: {2 * h:.3g} hours = {2 * h / 24:.3g} days (2 trials at once" in out
    )
    assert "the GPUs are busy 100% of it" in out
    assert f"jobs under a {limit:g}-hour time limit: at least 3 submissions" in out
    # A trial (0.67 h) outlives a 0.53 h job: it goes on from checkpoint_minutes' checkpoints.
    assert "outlives a job and continues from its last checkpoint (about every 10 minutes" in out


def test_plan_schedules_longest_first_and_caps_concurrency(tmp_path):
    from dualsweep.sweep.plan import hardware, schedule_trials, trials_at_once

    # Longest first onto 2 slots: 3, 3 | 2, 2 | 2 ends at 7 (the best split, 3+3 | 2+2+2, is 6:
    # a list schedule is within 4/3 of it, not at it).
    schedule = schedule_trials([2, 3, 2, 3, 2], 2)
    assert schedule.wall_clock_hours == 7
    assert schedule.spans == ((3, 5), (0, 3), (3, 5), (0, 3), (5, 7))
    # Data-parallel trials hold workers x gpu GPUs each; max_concurrent_trials caps them.
    sweep = load_sweep(
        _gpu_sweep(tmp_path / "dp.yaml", resources={"cpu": 1, "gpu": 1, "workers": 4})
    )
    hw = hardware(sweep)
    assert hw.per_trial == 4 and hw.training_flops_per_s == 4 * hw.evaluation_flops_per_s
    assert [trials_at_once(sweep, hw, n) for n in (3, 4, 15, 16)] == [0, 1, 3, 4]
    capped = load_sweep(_gpu_sweep(tmp_path / "capped.yaml", max_concurrent_trials=2))
    assert trials_at_once(capped, hardware(capped), 16) == 2


def test_plan_storage_by_hand(tmp_path, capsys):
    from dualsweep.sweep.plan import (
        checkpoint_bytes,
        hardware,
        peak_storage,
        schedule_trials,
        weights_bytes,
    )

    sweep = load_sweep(_gpu_sweep(tmp_path / "gpu4.yaml"))
    # The smoke model: 139,584 parameters (tied head), fp32: 4 bytes each in model.pt; AdamW's
    # checkpoint adds two fp32 moments each. Muon keeps one momentum for the blocks' matrices
    # (2 layers x (4 d^2 + 3 d f)) and AdamW's two for the rest.
    params, hidden = 139_584, 2 * (4 * 64 * 64 + 3 * 64 * 192)
    assert parameter_counts(sweep.base.model).total == params
    model, checkpoint = weights_bytes(sweep.base.model), checkpoint_bytes(sweep.base)
    assert (model, checkpoint) == (4 * params, 4 * 3 * params)
    muon = sweep.base.replace(optimizer="muon")
    assert checkpoint_bytes(muon) == 4 * (params + hidden + 2 * (params - hidden))
    # 4 trials on 2 GPUs, two rounds: while the second round runs, 2 models are finished and
    # 2 trials hold a checkpoint, twice while it is rewritten.
    spans = schedule_trials([1.0] * 4, 2).spans
    assert peak_storage(spans, model, checkpoint) == 2 * model + 2 * 2 * checkpoint
    assert peak_storage(spans, model, 0) == 4 * model  # no checkpoints: the finished sweep

    assert main(["plan", str(tmp_path / "gpu4.yaml"), "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        "storage (--storage): 4 models x 558 kB (model.pt: 139,584 fp32 parameters) = 2.23 MB"
        in out
    )
    assert "checkpoint.pt is 1.68 MB (the weights, AdamW's two moments)" in out
    assert f"peak {(2 * model + 4 * checkpoint) / 1e6:.3g} MB" in out
    assert hardware(sweep).unit == "GPU"


def test_plan_of_a_cpu_sweep_gives_core_hours(capsys):
    assert main(["plan", str(SMOKE), "--cpus", "2"]) == 0
    out = capsys.readouterr().out
    flops = sum(p.flops for p in plan_sweep(load_sweep(SMOKE)))
    assert (
        f"{flops / 40e9 / 3600:.3g} core-hours at 40 GFLOP/s per core (this sweep trains on CPU"
        in out
    )
    assert "0.0 accelerator-hours" not in out and "core-hours" in out.splitlines()[5]
    assert "wall-clock on 2 cores: " in out and "on 1 core each" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpus", "0"], "--gpus: must be a positive integer (got 0)"),
        (["--gpus", "2.5"], "--gpus: must be a positive integer (got 2.5)"),
        (["--gpus", "2", "--time", "-1"], "--time: must be a positive number of hours (got -1)"),
        (["--gpus", "2", "--time", "48:00:00"], "--time: must be a positive number of hours"),
        (["--gpus", "2", "--time", "inf"], "--time: must be a positive number of hours (got inf)"),
        (["--time", "48"], "--time: give --gpus N too"),
        (["--cpus", "4"], "--cpus: sweep gpu4 trains on GPUs: give --gpus"),
        (["--gpus", "1"], "--gpus: a trial holds 2 GPUs (resources: workers x gpu), more than 1"),
    ],
)
def test_plan_flags_are_checked(tmp_path, capsys, flags, message):
    resources = {"cpu": 1, "gpu": 1, "workers": 2 if flags == ["--gpus", "1"] else 1}
    path = _gpu_sweep(tmp_path / "gpu4.yaml", resources=resources)
    assert main(["plan", str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert main(["plan", str(SMOKE), "--gpus", "2"]) == 2
    assert "--gpus: sweep smoke trains on CPU" in capsys.readouterr().err


def test_plan_warns_when_a_trial_cannot_outlive_a_job(tmp_path, capsys):
    # No checkpoints at all: a trial longer than the job's limit starts over in every job.
    path = _gpu_sweep(tmp_path / "gpu4.yaml", base={"train": {"checkpoint_minutes": 0}})
    h = _smoke_trial_flops() / (1e8 * 0.5) / 3600
    args = ["plan", str(path), "--peak-tflops", "1e-4", "--mfu", "0.5", "--gpus", "4"]
    assert main([*args, "--time", repr(h / 2)]) == 0
    out = capsys.readouterr().out
    assert "warning: the sweep takes no checkpoints" in out and "never finishes" in out
    assert "no checkpoints (train.checkpoint_interval and checkpoint_minutes 0)" in out
    assert main([*args, "--time", repr(2 * h)]) == 0  # one job holds the whole sweep
    out = capsys.readouterr().out
    assert "at least 1 submission (" in out and "warning" not in out


def test_plan_checks_the_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    path = write_sweep(
        tmp_path / "shards.yaml", base={"data": {"source": "shards", "path": str(corpus)}}
    )
    assert main(["plan", str(path)]) == 0  # planning does not need the corpus
    out = capsys.readouterr().out
    assert f"warning: data.path: {str(corpus)!r} is not a folder or a .npy/.bin file" in out
    # 131,072 unique tokens at R = 1 of a 512-token vocabulary: uint16, 2 bytes each.
    assert (
        "the sweep trains on up to 131,072 unique tokens (R = 1): at least 262 kB of uint16" in out
    )
    corpus.mkdir()
    (corpus / "train-00000.bin").write_bytes(bytes(3000))
    (corpus / "train-00001.bin").write_bytes(bytes(1000))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"corpus: {corpus} holds 4 kB of token shards in 2 files" in out and "warning" not in out


def test_plan_of_the_paper_sweep_on_a_cluster(capsys):
    # The SLURM template's 2 x 8 GPUs for 48 hours.
    assert main(["plan", str(REPO / "sweeps" / "paper.yaml"), "--gpus", "16", "--time", "48"]) == 0
    out = capsys.readouterr().out
    wall = re.search(r"wall-clock on 16 GPUs: ([\d,]+) hours = ([\d.]+) days", out)
    hours, days = float(wall[1].replace(",", "")), float(wall[2])
    assert days == pytest.approx(hours / 24, rel=0.01)
    # 50 trials of 63 to 70 hours, 16 at once: 4 rounds, the last holding 2 trials.
    assert 4 * 63 < hours < 4 * 70.2
    assert f"at least {math.ceil(hours / 48)} submissions" in out
    # 469,812,224 fp32 parameters; Muon's momentum for 24 x (4 d^2 + 3 d f) of them.
    params, hidden = 469_812_224, 24 * (4 * 1024**2 + 3 * 1024 * 3584)
    checkpoint = 4 * (params + hidden + 2 * (params - hidden))
    assert f"50 models x {4 * params / 1e9:.3g} GB" in out
    assert f"checkpoint.pt is {checkpoint / 1e9:.3g} GB" in out and "; peak " in out


@pytest.mark.parametrize("sweep_name", ["smoke", "tiny", "paper"])
@pytest.mark.parametrize("tied", [False, True])
def test_plan_counts_the_parameters_the_model_has(sweep_name, tied):
    # The plan counts parameters by formula, the model by its tensors: on the meta device the
    # 470M paper model costs no memory, so every committed shape is checked, tied or not.
    import torch

    from dualsweep.model import Transformer

    config = load_sweep(REPO / "sweeps" / f"{sweep_name}.yaml").base.model
    config = dataclasses.replace(config, tie_embeddings=tied)
    with torch.device("meta"):
        model = Transformer(config)
    counts = parameter_counts(config)
    assert counts.total == model.num_parameters()
    assert counts.non_embedding == model.num_parameters(non_embedding=True)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_plan_checkpoint_bytes_are_what_training_saves(optimizer):
    # The plan's count against the tensors the checkpoint holds: the model's state_dict (a
    # tied head's storage once, as torch.save writes it) and the optimisers' states after a step.
    import io

    import torch

    from dualsweep.config import load_run_config
    from dualsweep.model import Transformer
    from dualsweep.sweep.plan import checkpoint_bytes, weights_bytes
    from dualsweep.training.optim import build_optimizers

    config = load_run_config(SMOKE, {"optimizer": optimizer})
    torch.manual_seed(0)
    model = Transformer(config.model)
    optimizers = build_optimizers(model, config.optim)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    for optimizer_ in optimizers:
        optimizer_.step()
    storages = {t.untyped_storage().data_ptr(): t.nbytes for t in model.state_dict().values()}
    assert sum(storages.values()) == weights_bytes(config.model)
    moments = sum(
        t.nbytes
        for o in optimizers
        for state in o.state_dict()["state"].values()
        for t in state.values()
        if torch.is_tensor(t) and t.dim() > 0  # not the step counters
    )
    assert weights_bytes(config.model) + moments == checkpoint_bytes(config)
    saved = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers]}, saved
    )
    assert checkpoint_bytes(config) < saved.tell() < 1.05 * checkpoint_bytes(config)


@pytest.mark.ray
@pytest.mark.slow  # a sweep of its own: `make test-slow`
def test_storage_uri_mirrors_trial_folders(tmp_path, monkeypatch):
    # A file:// URI goes through the same pyarrow filesystem code as s3:// or gs://.
    monkeypatch.setenv("DUALSWEEP_CACHE", str(tmp_path / "node-cache"))  # the node's staging area
    path = write_sweep(tmp_path / "remote.yaml", name="remote", points=[[1, 4], [0.5, 16]])
    remote = tmp_path / "bucket"
    uri = f"file://{remote}"
    outcome = run_sweep(
        load_sweep(path), results_root=tmp_path / "results", storage=uri, log=lambda line: None
    )
    assert outcome.finished == 2
    runs = load("remote", tmp_path / "results").runs
    for key, trial_dir in zip(runs["run_key"], runs["trial_dir"], strict=True):
        assert trial_dir.startswith(f"{uri}/remote/alpha") and trial_dir.endswith(f"_{key}")
        mirrored = {p.name for p in (remote / "remote" / Path(trial_dir).name).iterdir()}
        assert {"summary.parquet", "curve.parquet", "model.pt", "attempts.jsonl"} <= mirrored
        assert "checkpoint.pt" not in mirrored and ".lock" not in mirrored

    # Another driver machine (empty staging) sees the trials as finished: nothing retrains.
    monkeypatch.setenv("DUALSWEEP_CACHE", str(tmp_path / "other-machine"))
    again = run_sweep(
        load_sweep(path), results_root=tmp_path / "results2", storage=uri, log=lambda line: None
    )
    assert again.launched == 0 and again.finished == 2


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_on_a_ray_cluster_via_ray_address(tmp_path):
    """The cluster path on one machine: `ray start --head`, then RAY_ADDRESS=... dualsweep sweep."""
    ray = str(Path(sys.executable).parent / "ray")
    port = 6390
    start = [
        ray,
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    # Its processes carry a marker of their own, so that only they are stopped after: `ray
    # stop --force` would also kill the module's shared cluster and hang the tests after it.
    marker = f"DUALSWEEP_TEST_{uuid.uuid4().hex}"
    subprocess.run(
        start, env={**os.environ, marker: "1"}, check=True, capture_output=True, timeout=120
    )
    try:
        path = write_sweep(tmp_path / "cluster.yaml", name="cluster", points=[[1, 4], [0, 4]])
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        command = sweep_command(path, tmp_path / "runs", tmp_path / "results")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (load("cluster", tmp_path / "results").runs["status"] == "finished").all()
    finally:
        kill_processes_with(marker)


def test_a_changed_item_count_or_md_span_counts_as_not_evaluated(tmp_path):
    from dualsweep.config import EvalConfig
    from dualsweep.sweep.trials import evaluated

    evaluation = EvalConfig(tasks=("cloze",), modes=("ar", "md"), task_items=350, md_mask_span=0)
    rows = [("cloze", "ar", "next_token", 350), ("cloze", "md", "all_masked", 350)]
    frame = pd.DataFrame(rows, columns=["task", "mode", "strategy", "n_items"])
    frame.to_parquet(tmp_path / "evals.parquet")
    assert evaluated(tmp_path, evaluation)
    # Scored with 500 items, or MD one token at a time: stale, so the sweep evaluates again.
    assert not evaluated(tmp_path, EvalConfig(**{**vars(evaluation), "task_items": 500}))
    assert not evaluated(tmp_path, EvalConfig(**{**vars(evaluation), "md_mask_span": 1}))
    # A task file's item count is the file's own: it is not compared with task_items.
    frame.assign(task="mine").to_parquet(tmp_path / "evals.parquet")
    mine = EvalConfig(tasks=("mine.jsonl",), modes=("ar", "md"), task_items=7, md_mask_span=0)
    assert evaluated(tmp_path, mine)


@pytest.mark.ray
@pytest.mark.distributed
@pytest.mark.slow  # 35 s: a Ray Train group end to end; tests/test_distributed.py checks the
# two-worker step's numbers in the default suite
def test_a_two_worker_trial_trains_the_one_worker_curve(tmp_path, ray_cluster):
    """Data parallelism changes where a trial's rows are computed, not what it trains: a
    sweep trial on a Ray Train group of two gloo workers gives the curve of the same config
    trained in one process (what a 1-worker trial runs: the same `train()`). Both train on
    token shards `dualsweep prepare` wrote from a folder of text files, small enough that
    training sequences straddle shards."""
    from dualsweep.config import DataConfig
    from dualsweep.data import PrepareSettings, prepare
    from dualsweep.training import train

    shards = tmp_path / "shards"
    text = DataConfig(source="text_dir", path=str(write_text_corpus(tmp_path / "text")))
    index = prepare(text, 320, shards, PrepareSettings(shard_tokens=4096), log=lambda m: None)
    assert len(index["train"]["shards"]) > 4
    base = quick(
        data={"source": "shards", "path": str(shards)},
        train={"micro_batch_size": 4},
        held_out={"eval_interval": 16, "validation_sequences": 8},
        evaluation={"tasks": []},
    )
    path = write_sweep(
        tmp_path / "dp.yaml",
        name="dp",
        base=base,
        points=[{"alpha": "1/2", "repetitions": 4}],
        resources={"cpu": 0.9, "gpu": 0, "workers": 2},  # 2 x 0.9 + 0.01 fit 2 CPUs
    )
    sweep = load_sweep(path)
    outcome = run_sweep(
        sweep,
        results_root=tmp_path / "results",
        storage=tmp_path / "runs",
        address=ray_cluster,
        log=lambda line: None,
    )
    assert outcome.finished == 1, outcome
    results = load("dp", tmp_path / "results")
    row = results.runs.iloc[0]
    assert len(row["attempt_nodes"].split(",")) == 2  # one node id per worker
    log = (Path(row["trial_dir"]) / "train.log").read_text()
    assert "training on 2 data-parallel workers" in log

    (config,) = sweep.trials()
    assert train(config, tmp_path / "one", log=lambda line: None).status == "finished"
    one = pd.read_parquet(tmp_path / "one" / "curve.parquet").set_index("step")
    two = results.curves.set_index("step").sort_index()
    assert list(one.index) == list(two.index) and len(one) > 4
    for column in ("train_loss", "train_ar_loss", "train_md_loss", "held_out_ar_loss"):
        pd.testing.assert_series_equal(one[column], two[column], rtol=1e-4, check_names=False)


def write_search_sweep(path: Path, trials_per_repetition: int) -> Path:
    """A search at R = 4 (anchors and `trials_per_repetition` alphas) of QUICK trials of 16
    steps with a checkpoint every 4, scored on the held-out loss only."""
    raw = yaml.safe_load(SMOKE.read_text())
    del raw["points"]
    train = {"token_budget": 16384, "checkpoint_interval": 4, "log_interval": 4}
    for section, fields in quick(train=train, evaluation={"tasks": []}).items():
        raw["base"].setdefault(section, {}).update(fields)
    raw["name"] = "search"
    raw["search"] = {"repetitions": [4], "trials_per_repetition": trials_per_repetition}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.ray
@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_and_trains_nothing_twice(tmp_path, ray_cluster):
    # A search sweep, two trials at a time: its driver is killed by SIGKILL while a searched
    # trial trains; the same command then finishes the search from the stored studies. (For
    # a sweep of fixed points, with a Ctrl-C as well: the slow test above. Slow for the
    # default suite's 4 minutes; the resume logic without Ray: tests/test_search.py.)
    from dualsweep.sweep.search import open_studies, searched_counts, unfinished_proposals
    from dualsweep.training import train

    path = write_search_sweep(tmp_path / "search.yaml", 2)
    sweep = load_sweep(path)
    anchors = {run_key(c) for c in sweep.trials()}
    storage, results = tmp_path / "runs", tmp_path / "results"
    folders = storage / "search"
    for config in sweep.trials():  # the anchors, trained before (here, not on Ray: faster)
        assert train(config, folders / run_key(config), log=lambda line: None).status == "finished"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}

    def searched(name: str) -> set[str]:
        """Searched trials whose folder holds file `name`."""
        return {key_of(file.parent) for file in folders.glob(f"*/{name}")} - anchors

    kill_9_when(
        sweep_command(path, storage, results),
        env,
        lambda: searched("checkpoint.pt") - searched("summary.parquet"),
        180,
        "a searched trial with a checkpoint",
    )
    _wait_for(lambda: trials_released(storage, "search"), 60, "the killed driver's workers to end")
    finished_before = {key_of(f.parent) for f in folders.glob("*/summary.parquet")}
    interrupted = searched("checkpoint.pt") - searched("summary.parquet")
    assert anchors <= finished_before and interrupted
    studies = open_studies(sweep, results / "search")
    unfinished = set(unfinished_proposals(studies, sweep.base))  # asked, never told
    assert interrupted <= unfinished

    lines: list[str] = []
    outcome = run_sweep(
        sweep, results_root=results, storage=storage, address=ray_cluster, log=lines.append
    )
    assert outcome.failed == [], lines
    studies = open_studies(sweep, results / "search")
    assert unfinished_proposals(studies, sweep.base) == {}
    counts = searched_counts(studies, sweep.base, anchors)  # the budget, never more
    # Fewer only where the sampler kept proposing trained alphas (the R's search ended).
    assert counts[4] == 2 or any("[search R=4] the sampler proposed" in x for x in lines)
    assert any("1 proposal(s) a stopped driver left unfinished" in x or
               "2 proposal(s) a stopped driver left unfinished" in x for x in lines)  # fmt: skip
    runs = load("search", results).runs
    assert len(runs) == 2 + counts[4] and not runs["run_key"].duplicated().any()
    assert (runs["status"] == "finished").all() and runs["in_sweep"].all()
    assert unfinished <= set(runs["run_key"])  # the proposals kept, not asked again
    for key in finished_before - anchors:  # never trained again (the anchors: never by Tune)
        assert attempts(storage, "search", key) == 1
    assert not any((folders / key / "attempts.jsonl").exists() for key in anchors)
    for key in interrupted:  # resumed from its checkpoint
        assert attempts(storage, "search", key) == 2
        assert "resuming from step" in (trial_folder(folders, key) / "train.log").read_text()
    curves = load("search", results).curves
    assert not curves.duplicated(["run_key", "step"]).any()
    # The studies hold the tables' values: each searched run's metric, as trained.
    told = {t.value for s in studies.values() for t in s.study.trials if t.value is not None}
    assert set(runs["final_held_out_ar_loss"].round(9)) <= {round(v, 9) for v in told}
