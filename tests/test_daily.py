"""Daily use of sweeps: a sweep named by its file or its name alike, `dualsweep status`,
readable trial folders, and tables to group by.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from dualsweep.cli import main
from dualsweep.config import run_label, to_plain
from dualsweep.results import RunSummary, load, with_point, write_parquet
from dualsweep.schema import CONFIG_FILE, RUN_MARKER_FILE, SUMMARY_FILE, TRAIN_LOG_FILE

from .helpers import REPO, tiny_run_config


def test_fit_takes_the_sweep_file_or_its_name(tmp_path, capsys, monkeypatch):
    from .helpers import write_results

    write_results(tmp_path / "results", "s")
    (tmp_path / "sweeps").mkdir()
    raw = yaml.safe_load((REPO / "sweeps" / "smoke.yaml").read_text())
    (tmp_path / "sweeps" / "s.yaml").write_text(yaml.safe_dump({**raw, "name": "s"}))
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "sweeps/s.yaml"]) == 0
    by_file = capsys.readouterr().out
    assert main(["fit", "s"]) == 0
    assert capsys.readouterr().out == by_file
    assert "final_held_out_ar_loss over 5 runs" in by_file


def test_a_sweep_name_finds_its_file_and_an_unknown_one_is_named(tmp_path, capsys, monkeypatch):
    from dualsweep.cli.checks import sweep_file

    (tmp_path / "sweeps").mkdir()
    raw = yaml.safe_load((REPO / "sweeps" / "smoke.yaml").read_text())
    (tmp_path / "sweeps" / "renamed.yaml").write_text(yaml.safe_dump({**raw, "name": "mine"}))
    monkeypatch.chdir(tmp_path)
    assert str(sweep_file("renamed")) == "sweeps/renamed.yaml"  # by file name
    assert str(sweep_file("mine")) == "sweeps/renamed.yaml"  # by the name it holds
    assert main(["plan", "nothere"]) == 2
    assert "sweep: 'nothere' is no file, and no sweep of sweeps/ is named so" in (
        capsys.readouterr().err
    )
    assert main(["plan", "other/x.yaml"]) == 2
    assert "sweep: other/x.yaml: no such sweep file" in capsys.readouterr().err


def test_plots_by_name_writes_the_report(tmp_path, capsys):
    from .helpers import write_results

    write_results(tmp_path, "s")
    assert main(["plots", "s", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "s" / "REPORT.md").is_file()
    assert str(tmp_path / "s" / "REPORT.md") in capsys.readouterr().out


def test_a_sweep_refuses_a_storage_folder_that_is_a_single_run(tmp_path, capsys):
    run = tmp_path / "runs" / "smoke"
    run.mkdir(parents=True)
    (run / RUN_MARKER_FILE).write_text("somekey\n")
    args = ["sweep", str(REPO / "sweeps" / "smoke.yaml"), "--storage", str(tmp_path / "runs")]
    assert main([*args, "--results", str(tmp_path / "results")]) == 2
    assert f"--storage: {run} is a single run's folder" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == [RUN_MARKER_FILE]


def _started(folder, config, lines=()):
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(to_plain(config)))
    (folder / TRAIN_LOG_FILE).write_text("".join(f"{line}\n" for line in lines))


def test_status_of_each_trial_state(tmp_path, capsys):
    from dualsweep.paths import exclusive_lock
    from dualsweep.schema import CHECKPOINT_FILE, TRIAL_LOCK_FILE

    base = tiny_run_config(token_budget=8 * 32 * 160)
    points = [[1, 1], [0, 1], [0.5, 2], [0.25, 4], [0.75, 8]]
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": to_plain(base), "points": points}))
    storage = tmp_path / "runs" / "s"
    configs = [base.replace(alpha=a, repetitions=r) for a, r in points]
    running, finished, failed, resumable, pending = configs
    # Running: its lock held, its log's last progress line at step 96 of 160.
    progress = "step 96/160 (60%)  train 4.978  held-out AR 5.056  43,694 tok/s  ETA 50s"
    _started(storage / run_label(running), running, ["resuming from step 64", progress])
    for config, status, error in (
        (finished, "finished", ""),
        (failed, "failed", "RuntimeError: x"),
    ):
        _started(storage / run_label(config), config)
        summary = RunSummary(config=config, status=status, error=error, steps=160)
        write_parquet(pd.DataFrame([summary.row()]), storage / run_label(config) / SUMMARY_FILE)
    _started(storage / run_label(resumable), resumable, ["step 32/160 (20%)  train 5.1  ETA 9s"])
    (storage / run_label(resumable) / CHECKPOINT_FILE).write_bytes(b"x")
    args = ["status", str(sweep), "--storage", str(tmp_path / "runs")]
    with exclusive_lock(storage / run_label(running) / TRIAL_LOCK_FILE, wait=False):
        assert main([*args, "--results", str(tmp_path / "results")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:6] == ["alpha", "R", "seed", "state", "step", "train"]
    states = {line.split()[0]: line.split() for line in rows[1:-1]}
    assert states["1"][3:6] == ["running", "96/160", "4.978"]
    assert rows[1].endswith(str(storage / run_label(running) / TRAIN_LOG_FILE))
    assert states["0"][3:5] == ["unevaluated", "160/160"]  # finished, its evaluation missing
    assert states["0.5"][3] == "failed" and rows[3].endswith("RuntimeError: x")
    assert states["0.25"][3:6] == ["resumable", "32/160", "5.100"]
    assert states["0.75"][3] == "pending" and pending.objective.alpha == 0.75
    assert rows[-1] == (
        "sweep s: 5 trials: 1 unevaluated, 1 running, 1 resumable, 1 failed, 1 pending"
    )


def test_a_trial_folder_is_named_by_its_point_and_key_and_old_ones_are_found(tmp_path):
    from dualsweep.config import run_key
    from dualsweep.sweep.storage import TrialStorage

    config = tiny_run_config(alpha=63 / 64, repetitions=4, seed=2)
    storage = TrialStorage(tmp_path, "s")
    assert storage.trial_dir(config).name == f"alpha0.984375_R4_seed2_{run_key(config)}"
    (tmp_path / "s" / run_key(config)).mkdir(parents=True)  # a folder of a sweep of before
    assert TrialStorage(tmp_path, "s").trial_dir(config).name == run_key(config)


def test_curves_and_evals_carry_the_point_of_their_trial():
    tables = load("tiny", REPO / "results")
    for frame in (tables.curves, tables.evals):
        assert list(frame.columns[:4]) == ["run_key", "alpha", "repetitions", "seed"]
        joined = frame.merge(tables.runs[["run_key", "alpha"]], on="run_key", suffixes=("", "_"))
        assert (joined["alpha"] == joined["alpha_"]).all() and len(joined) == len(frame)
    runs = pd.DataFrame({"run_key": ["a", "b"], "alpha": [0.5, 1.0], "repetitions": [1, 2]})
    curve = pd.DataFrame({"run_key": ["b", "a"], "step": [0, 0], "alpha": [None, 0.25]})
    filled = with_point(curve, runs)  # a value it has is kept, a missing one filled
    assert filled["alpha"].tolist() == [1.0, 0.25] and filled["repetitions"].tolist() == [2, 1]


@pytest.mark.parametrize("command", ["sweep", "plan", "suggest", "fit", "status", "plots"])
def test_every_sweep_command_says_it_takes_a_file_or_a_name(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "or a sweep's name" in capsys.readouterr().out


def test_a_missing_extra_is_named(monkeypatch, capsys):
    import dualsweep.cli as cli

    def needs_torch(args):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setitem(cli.COMMANDS, "plan", needs_torch)
    assert main(["plan", str(REPO / "sweeps" / "smoke.yaml")]) == 1
    assert capsys.readouterr().err == (
        "dualsweep: error: `dualsweep plan` needs the train extra (No module named 'torch'): "
        "pip install 'dualsweep[train]' (`make install` installs every extra)\n"
    )


def test_the_analysis_commands_need_no_torch_lightning_or_ray(tmp_path):
    # What the `analysis` extra promises: fits (and figures: the same modules) and plans from
    # the tables alone.
    import subprocess
    import sys

    from .helpers import write_results

    write_results(tmp_path, "s")
    blocked = (  # as if not installed: every import of them fails
        "import sys\n"
        "class NotInstalled:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'lightning', 'ray', 'optuna'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
    )
    code = blocked + (
        "from dualsweep.cli import main\n"
        f"assert main(['fit', 's', '--results', {str(tmp_path)!r}]) == 0\n"
        "assert main(['plan', 'sweeps/paper.yaml']) == 0\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.ray
def test_resources_this_machine_lacks_are_a_bad_input(monkeypatch):
    import ray

    from dualsweep.config import ConfigError, load_sweep
    from dualsweep.sweep.runner import _check_resources

    sweep = load_sweep(REPO / "sweeps" / "paper.yaml")  # 1 GPU and 8 CPUs per trial
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"resources: each trial needs cpu=8, gpu=1, but the "
                       r"embedded Ray on this machine has CPU=2, GPU=0"):  # fmt: skip
        _check_resources(sweep, None, print)
    warnings = []
    _check_resources(sweep, "10.0.0.1:6379", warnings.append)  # a cluster may grow: a warning
    assert warnings[0].startswith("warning: resources: each trial needs")


def test_version_and_help_text(capsys):
    from dualsweep import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"dualsweep {__version__}")
    with pytest.raises(SystemExit):
        main(["suggest", "--help"])
    text = capsys.readouterr().out
    assert "90% interval" in text and "%%" not in text


def test_an_unknown_set_name_gets_a_suggestion(capsys):
    args = ["train", "--config", str(REPO / "sweeps" / "smoke.yaml"), "--set", "dmodel=32"]
    assert main([*args, "--out", "unused"]) == 2
    assert "dmodel: no such config field; did you mean 'd_model' (model.d_model)?" in (
        capsys.readouterr().err
    )


@pytest.mark.slow  # 8 s: three trainings with TensorBoard, CSV and W&B (offline) loggers
def test_loggers_get_the_runs_name_and_hparams(tmp_path, monkeypatch):
    from lightning.pytorch import loggers

    from dualsweep.config import run_key
    from dualsweep.training import run as run_module
    from dualsweep.training import train

    made = {}

    class FakeWandb(loggers.CSVLogger):  # records what W&B would be told, writes a CSV
        def __init__(self, save_dir, **kwargs):
            made.update(kwargs)
            super().__init__(save_dir, name="wandb", version="")

    monkeypatch.setattr(loggers, "WandbLogger", FakeWandb)
    monkeypatch.setitem(run_module.LOGGER_PACKAGES, "wandb", ())  # (wandb is not installed)
    config = tiny_run_config(
        alpha=0.5, repetitions=2, seed=3, token_budget=8 * 32 * 8, wandb_group="mine"
    ).replace(loggers=["csv", "tensorboard", "wandb"])
    out = tmp_path / "run"
    assert train(config, out, log=lambda m: None).status == "finished"
    label = run_label(config)
    assert label == f"alpha0.5_R2_seed3_{run_key(config)}"
    assert made["project"] == "dualsweep" and made["group"] == "mine"
    assert made["name"] == label and made["id"] == run_key(config)
    for hparams in (out / "logs" / "hparams.yaml", out / "logs" / "tensorboard" / "hparams.yaml"):
        logged = yaml.safe_load(hparams.read_text())
        assert (logged["alpha"], logged["repetitions"], logged["seed"]) == (0.5, 2, 3), hparams
        assert logged["run_key"] == run_key(config)
    assert list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))
