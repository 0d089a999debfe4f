"""End-to-end training: the CLI, outputs, reproducibility, failures.

Long because each behaviour of `train` (outputs, reproducibility, resume, failures, loggers,
compile, micro-batches, the bare-loop equivalence) needs its own tiny run.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from dualsweep.cli import main
from dualsweep.config import load_run_config, run_key
from dualsweep.schema import curve_columns
from dualsweep.training import train

from .helpers import REPO, tiny_run_config

TIMING = [
    "tokens_per_s",
    "elapsed_s",
    "train_time_s",
    "held_out_eval_time_s",
    "wall_time_s",
    "started_at",
    "finished_at",
]


def test_cli_train_on_the_smoke_config(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "dualsweep",
        "train",
        "--config",
        str(REPO / "sweeps" / "smoke.yaml"),
        "--alpha",
        "0.5",
        "--repetitions",
        "16",
        # The vocabulary of the other tests' runs, whose prepared corpus is then reused; half
        # the smoke budget (64 steps).
        "--set",
        "vocab_size=320",
        "--set",
        "token_budget=65536",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {"config.yaml", "curve.parquet", "summary.parquet"} <= {p.name for p in out.iterdir()}

    expected = load_run_config(
        REPO / "sweeps" / "smoke.yaml",
        {"alpha": 0.5, "repetitions": 16, "vocab_size": 320, "token_budget": 65536},
    )
    assert load_run_config(out / "config.yaml") == expected  # fully resolved: it rebuilds the run

    curve = pd.read_parquet(out / "curve.parquet")
    assert list(curve.columns) == list(curve_columns())
    assert curve["step"].tolist() == sorted(set(curve["step"]))
    held_out = curve.dropna(subset=["held_out_ar_loss"])
    assert held_out["step"].tolist() == [0, 32, 64]  # start, every eval_interval, end
    assert np.isfinite(held_out[["held_out_ar_loss", "held_out_md_elbo"]].to_numpy()).all()
    # An untrained model (init std 0.02) predicts nearly uniformly: AR loss ~ log V (5.77 at
    # V = 320; the tied head favours the current token a little: 5.71 measured).
    assert held_out["held_out_ar_loss"].iloc[0] == pytest.approx(math.log(320), abs=0.1)
    assert held_out["held_out_ar_loss"].iloc[-1] < held_out["held_out_ar_loss"].iloc[0] - 0.5
    trained = curve.dropna(subset=["train_loss"])
    assert np.isfinite(
        trained[["train_ar_loss", "train_md_loss", "lr", "tokens_per_s"]].to_numpy()
    ).all()
    assert trained["tokens_seen"].tolist() == [s * 16 * 64 for s in trained["step"]]
    assert trained["epoch"].iloc[-1] == 16

    (row,) = pd.read_parquet(out / "summary.parquet").to_dict("records")
    assert row["status"] == "finished" and row["error"] == ""
    assert (row["alpha"], row["repetitions"]) == (0.5, 16)
    assert row["run_key"] == run_key(expected)
    assert row["tokens"] == 65536 and row["unique_tokens"] == 65536 // 16 and row["epochs"] == 16
    assert row["final_held_out_ar_loss"] == held_out["held_out_ar_loss"].iloc[-1]
    assert row["best_held_out_md_elbo"] == held_out["held_out_md_elbo"].min()
    assert len(row["unique_subset_hash"]) == 16 and row["tokens_per_s"] > 0

    logged = pd.read_csv(out / "logs" / "metrics.csv")
    assert {
        "train_ar_loss",
        "train_md_loss",
        "held_out_ar_loss",
        "held_out_md_elbo",
        "tokens_seen",
        "epoch",
        "lr",
        "tokens_per_s",
    } <= set(logged.columns)
    assert "held-out AR" in done.stdout  # line progress when not on a terminal


def without(frame: pd.DataFrame, columns) -> pd.DataFrame:
    return frame.drop(columns=[c for c in columns if c in frame.columns])


def test_same_config_and_seed_give_identical_runs(tmp_path):
    config = tiny_run_config(alpha=0.5, repetitions=4)
    first, second = (
        train(config, tmp_path / "a", log=lambda m: None),
        train(config, tmp_path / "b", log=lambda m: None),
    )
    assert first.status == second.status == "finished"
    for name in ("curve.parquet", "summary.parquet"):
        a, b = (pd.read_parquet(tmp_path / d / name) for d in ("a", "b"))
        pd.testing.assert_frame_equal(without(a, TIMING), without(b, TIMING))
    other_seed = train(config.replace(seed=1), tmp_path / "c", log=lambda m: None)
    assert other_seed.value("final_held_out_ar_loss") != first.value("final_held_out_ar_loss")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--alpha", "1.5"], "objective.alpha: must be in [0, 1] (got 1.5)"),
        (["--repetitions", "0"], "data.repetitions: must be a positive integer (got 0)"),
        (["--repetitions", "1024"], "data.repetitions: R=1024 leaves"),
        (["--set", "d_model=wide"], "model.d_model: expected an integer (got 'wide')"),
        (  # (the vocabulary of the other tests, whose prepared corpus is reused)
            ["--set", "token_budget=100000000", "--set", "vocab_size=320"],
            "data.repetitions: R=1 with train.token_budget=100000000 needs",
        ),
    ],
)
def test_config_and_data_errors_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(
        ["train", "--config", str(REPO / "sweeps" / "smoke.yaml"), *args, "--out", str(out)]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "status, args, message",
    [
        ("finished", [], "already holds a finished run; use --force"),
        ("finished", ["--resume"], "already holds a finished run; use --force"),
        ("failed", [], "holds a failed run; use --resume to continue it"),
    ],
)
def test_an_existing_run_is_not_overwritten(tmp_path, capsys, status, args, message):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".dualsweep-run").write_text("key\n")  # a run folder (its marker)
    pd.DataFrame({"status": [status]}).to_parquet(out / "summary.parquet")
    before = (out / "summary.parquet").read_bytes()
    command = ["train", "--config", str(REPO / "sweeps" / "smoke.yaml"), "--out", str(out), *args]
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert (out / "summary.parquet").read_bytes() == before


def test_a_non_finite_loss_fails_the_run_and_keeps_its_curve(tmp_path, monkeypatch):
    import dualsweep.training.step as step

    real = step.dual_objective_loss

    def poisoned(model, tokens, corruption, *args, **kwargs):
        out = real(model, tokens, corruption, *args, **kwargs)
        poisoned.calls += 1
        if poisoned.calls > 6:
            return type(out)(loss=out.loss * math.nan, sequence_losses=out.sequence_losses)
        return out

    poisoned.calls = 0
    monkeypatch.setattr(step, "dual_objective_loss", poisoned)
    summary = train(tiny_run_config(), tmp_path / "run", log=lambda m: None)
    assert summary.status == "failed"
    assert summary.error.startswith("NonFiniteLossError: training loss became nan by step 8")
    assert summary.steps == 4  # the last logged step before the failure
    curve = pd.read_parquet(tmp_path / "run" / "curve.parquet")
    assert curve["step"].tolist() == [0, 4]
    assert pd.read_parquet(tmp_path / "run" / "summary.parquet")["status"].item() == "failed"


def test_pure_objectives_log_only_their_own_loss(tmp_path):
    ar = train(tiny_run_config(alpha=1.0), tmp_path / "ar", log=lambda m: None)
    md = train(tiny_run_config(alpha=0.0), tmp_path / "md", log=lambda m: None)
    assert ar.status == md.status == "finished"
    ar_curve = pd.read_parquet(tmp_path / "ar" / "curve.parquet").dropna(subset=["train_loss"])
    md_curve = pd.read_parquet(tmp_path / "md" / "curve.parquet").dropna(subset=["train_loss"])
    assert (
        ar_curve["train_md_loss"].isna().all()
        and (ar_curve["train_ar_loss"] == ar_curve["train_loss"]).all()
    )
    assert md_curve["train_ar_loss"].isna().all() and np.allclose(
        md_curve["train_md_loss"], md_curve["train_loss"]
    )


def test_muon_document_masking_and_stratified_rates(tmp_path):
    config = tiny_run_config(
        alpha=0.5, optimizer="muon", document_masking=True, mask_rate_sampling="stratified"
    )
    summary = train(config, tmp_path / "run", log=lambda m: None)
    assert summary.status == "finished", summary.error
    curve = pd.read_parquet(tmp_path / "run" / "curve.parquet").dropna(subset=["held_out_ar_loss"])
    assert curve["held_out_ar_loss"].iloc[-1] < curve["held_out_ar_loss"].iloc[0] - 0.3


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    import dualsweep.training.step as step

    config = tiny_run_config(alpha=0.5, repetitions=2, checkpoint_interval=8)
    whole = train(config, tmp_path / "whole", log=lambda m: None)
    assert not (tmp_path / "whole" / "checkpoint.pt").exists()  # removed once finished
    assert (tmp_path / "whole" / "model.pt").is_file()

    real = step.dual_objective_loss

    def crash_at_step_21(model, tokens, corruption, *args, **kwargs):
        crash_at_step_21.calls += 1
        if crash_at_step_21.calls == 22:
            raise RuntimeError("simulated crash")
        return real(model, tokens, corruption, *args, **kwargs)

    crash_at_step_21.calls = 0
    monkeypatch.setattr(step, "dual_objective_loss", crash_at_step_21)
    crashed = train(config, tmp_path / "run", log=lambda m: None)
    assert crashed.status == "failed" and "simulated crash" in crashed.error
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    monkeypatch.setattr(step, "dual_objective_loss", real)

    logs = []
    resumed = train(config, tmp_path / "run", log=logs.append, resume=True)
    assert resumed.status == "finished"
    assert any(line.startswith("resuming from step 16 of 48") for line in logs)
    a, b = (pd.read_parquet(tmp_path / d / "curve.parquet") for d in ("whole", "run"))
    pd.testing.assert_frame_equal(without(a, TIMING), without(b, TIMING))
    assert resumed.value("final_held_out_md_elbo") == whole.value("final_held_out_md_elbo")
    logged = pd.read_csv(
        tmp_path / "run" / "logs" / "metrics.csv"
    )  # rows from before the crash too
    assert set(logged["step"]) == set(a["step"])


def test_missing_logger_package_is_a_config_error(tmp_path, monkeypatch):
    import importlib.util

    from dualsweep.config import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"^train\.loggers: 'wandb' needs the wandb package"):
        train(tiny_run_config(loggers=("csv", "wandb")), tmp_path / "run", log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_tensorboard_logger(tmp_path):
    summary = train(
        tiny_run_config(loggers=("csv", "tensorboard")), tmp_path / "run", log=lambda m: None
    )
    assert summary.status == "finished"
    assert list((tmp_path / "run" / "logs" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path):
    eager = train(tiny_run_config(), tmp_path / "eager", log=lambda m: None)
    compiled = train(tiny_run_config(compile=True), tmp_path / "compiled", log=lambda m: None)
    assert compiled.status == "finished", compiled.error
    assert compiled.value("final_held_out_ar_loss") == pytest.approx(
        eager.value("final_held_out_ar_loss"), abs=0.02
    )


def test_prefetching_loader_workers_give_the_same_run(tmp_path):
    # Batches are functions of their step: two worker processes reading ahead feed the step
    # the very batches the training process reads itself, so the curves are bit-identical.
    config = tiny_run_config(alpha=0.5, token_budget=8 * 32 * 12, eval_interval=6)
    alone = train(config, tmp_path / "alone", log=lambda m: None)
    ahead = train(config.replace(loader_workers=2), tmp_path / "ahead", log=lambda m: None)
    assert alone.status == ahead.status == "finished"
    a, b = (pd.read_parquet(tmp_path / d / "curve.parquet") for d in ("alone", "ahead"))
    pd.testing.assert_frame_equal(without(a, TIMING), without(b, TIMING), check_exact=True)


def test_micro_batches_train_like_whole_batches(tmp_path):
    whole = train(tiny_run_config(alpha=0.5), tmp_path / "whole", log=lambda m: None)
    assert whole.status == "finished"
    micro = train(
        tiny_run_config(alpha=0.5, micro_batch_size=2), tmp_path / "micro", log=lambda m: None
    )
    assert micro.status == "finished"
    a, b = (pd.read_parquet(tmp_path / d / "curve.parquet") for d in ("whole", "micro"))
    # Same draws and gradients; only the order of float additions differs.
    pd.testing.assert_frame_equal(without(a, TIMING), without(b, TIMING), rtol=1e-4, atol=1e-5)


def test_an_unreadable_checkpoint_is_set_aside_and_the_restart_equals_a_fresh_run(tmp_path):
    fresh = train(tiny_run_config(), tmp_path / "fresh", log=lambda m: None)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"truncated by a killed upload")
    logs = []
    summary = train(tiny_run_config(), out, log=logs.append, resume=True)
    assert summary.status == "finished"
    assert any("checkpoint unusable" in line and "starting from step 0" in line for line in logs)
    assert (out / "checkpoint.pt.unreadable").read_bytes() == b"truncated by a killed upload"
    # The restart must start from the fresh run's initial weights: the whole curve and the
    # final weights are bit-identical (the unreadable checkpoint consumed no random draws).
    a, b = (pd.read_parquet(d / "curve.parquet") for d in (tmp_path / "fresh", out))
    pd.testing.assert_frame_equal(without(a, TIMING), without(b, TIMING), check_exact=True)
    assert summary.value("final_held_out_ar_loss") == fresh.value("final_held_out_ar_loss")
    weights = [torch.load(d / "model.pt", weights_only=True) for d in (tmp_path / "fresh", out)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_ctrl_c_records_the_run_and_says_how_to_resume(tmp_path, monkeypatch):
    import dualsweep.training.step as step

    real = step.dual_objective_loss

    def interrupt_at_step_10(model, tokens, corruption, *args, **kwargs):
        interrupt_at_step_10.calls += 1
        if interrupt_at_step_10.calls == 11:
            raise KeyboardInterrupt
        return real(model, tokens, corruption, *args, **kwargs)

    interrupt_at_step_10.calls = 0
    monkeypatch.setattr(step, "dual_objective_loss", interrupt_at_step_10)
    with pytest.raises(KeyboardInterrupt, match="resume with --resume"):
        train(tiny_run_config(checkpoint_interval=8), tmp_path / "run", log=lambda m: None)
    row = pd.read_parquet(tmp_path / "run" / "summary.parquet").iloc[0]
    assert row["status"] == "failed" and row["error"].startswith("interrupted")
    assert row["steps"] == 8 and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_the_module_and_a_bare_loop_run_the_same_step(tmp_path):
    # Lightning adds nothing to the step: a bare loop calling `train_step` on the same
    # batches from the same initial weights ends at the same weights, bit for bit on CPU.
    import lightning as L
    import torch

    from dualsweep.data.datamodule import DualSweepData
    from dualsweep.model import Transformer
    from dualsweep.objectives import AR, MD
    from dualsweep.training import train
    from dualsweep.training.optim import build_optimizers
    from dualsweep.training.step import train_step

    config = tiny_run_config(alpha=0.5, token_budget=6 * 8 * 32, eval_interval=0)
    assert train(config, tmp_path / "run", log=lambda m: None).status == "finished"
    trained = torch.load(tmp_path / "run" / "model.pt", weights_only=True)

    data = DualSweepData(config, log=lambda m: None)
    data.setup()
    L.seed_everything(config.train.seed, verbose=False)
    model = Transformer(config.model)
    optimizers = build_optimizers(model, config.optim)
    generator = torch.Generator()
    for batch in data.train_dataloader():
        train_step(
            model,
            optimizers,
            batch["tokens"],
            step=int(batch["step"]),
            total_steps=config.steps,
            config=config,
            pair=(AR, MD),
            special=data.corpus.special,
            generator=generator,
        )
    assert config.steps == 6
    for name, value in model.state_dict().items():
        assert torch.equal(value, trained[name]), name
