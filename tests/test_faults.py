"""Fault injection: every bad input and fault ends in one clear line and the right exit code.

Exit 2 is a bad input (config, data, task or results file), 1 a fault; nothing partial is
left behind. The fast cases run in `make test`; the ones that need a sweep carry the `slow`
marker (`make test-slow`). A damaged checkpoint is in test_train.py (the restart equals a
fresh run bit for bit).

One file for the whole fault audit: long because it covers every fault class, from an empty
config to kill -9 at random points of a sweep.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dualsweep.cli import main
from dualsweep.config import DataConfig, to_plain
from dualsweep.data import DataError
from dualsweep.data.sources import text_documents

from .helpers import REPO, kill_processes_with, tiny_run_config, trial_folder, write_results

SMOKE = REPO / "sweeps" / "smoke.yaml"


def error_line(capsys) -> str:
    """The command's stderr, which must be exactly one line."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def write_config(path: Path, **flat) -> Path:
    path.write_text(yaml.safe_dump(to_plain(tiny_run_config(**flat))))
    return path


# -- configs and run folders -----------------------------------------------------------
@pytest.mark.parametrize("content", ["", "# only a comment\n", "\n\n"])
def test_an_empty_config_file_is_refused(tmp_path, capsys, content):
    config = tmp_path / "empty.yaml"
    config.write_text(content)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "the file is empty" in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_out_folder_of_other_files_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "logs").mkdir(parents=True)
    (out / "config.yaml").write_text("my own notes\n")
    (out / "logs" / "metrics.csv").write_text("a,b\n1,2\n")
    config = write_config(tmp_path / "c.yaml")
    for extra in ([], ["--force"], ["--resume"]):
        assert main(["train", "--config", str(config), "--out", str(out), *extra]) == 2
        assert "not a dualsweep run" in error_line(capsys)
    assert (out / "config.yaml").read_text() == "my own notes\n"
    assert (out / "logs" / "metrics.csv").read_text() == "a,b\n1,2\n"


def test_an_out_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    config = write_config(tmp_path / "c.yaml")
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert f"--out: {out} is a file" in error_line(capsys)


def test_an_unwritable_out_is_found_before_any_work(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: let the OS say what it says to a user
        import dualsweep.cli as cli

        real_access = os.access
        monkeypatch.setattr(
            cli.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode)
        )
    config = write_config(tmp_path / "c.yaml")
    assert main(["train", "--config", str(config), "--out", str(locked / "run")]) == 2
    assert "permission denied" in error_line(capsys)


def test_a_left_checkpoint_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".dualsweep-run").write_text("key\n")
    (out / "checkpoint.pt").write_bytes(b"state")
    config = write_config(tmp_path / "c.yaml")
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "interrupted run's checkpoint; use --resume" in error_line(capsys)


@pytest.mark.parametrize("flags", [[], ["--resume"], ["--force"]])
def test_a_user_folder_holding_run_file_names_is_never_a_run(tmp_path, capsys, flags):
    """Only the run marker makes a folder a run: a user's checkpoint.pt and config.yaml are
    refused, with or without --resume or --force, and keep their bytes."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"my own model")
    (out / "config.yaml").write_text("my: settings\n")
    config = write_config(tmp_path / "c.yaml")
    assert main(["train", "--config", str(config), "--out", str(out), *flags]) == 2
    assert "holds files that are not a dualsweep run" in error_line(capsys)
    assert (out / "checkpoint.pt").read_bytes() == b"my own model"
    assert (out / "config.yaml").read_text() == "my: settings\n"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml"]


@pytest.fixture
def interrupted_run(tmp_path):
    """A run stopped like a Ctrl-C after step 10, its step-8 checkpoint left (the CLI's way)."""
    from dualsweep.benchmarks.gpu_stages import interrupt_after

    from dualsweep.training import train

    out = tmp_path / "run"
    config = tiny_run_config(alpha=0.5, checkpoint_interval=8)
    with pytest.raises(KeyboardInterrupt):
        train(config, out, callbacks=[interrupt_after(10)], log=lambda m: None)
    return out, config


def test_checkpoints_by_time_and_a_resume_with_nothing_to_resume(tmp_path, capsys):
    from dualsweep.benchmarks.gpu_stages import interrupt_after

    from dualsweep.training import train

    # By time alone (no checkpoint_interval): with a minute-long step every log step is due.
    out = tmp_path / "timed"
    short = 8 * 32 * 16  # 16 steps
    timed = tiny_run_config(checkpoint_minutes=1e-9, token_budget=short)
    with pytest.raises(KeyboardInterrupt):
        train(timed, out, callbacks=[interrupt_after(10)], log=lambda m: None)
    import torch

    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["steps_done"] == 8  # the last log step (log_interval 4) before the stop
    # The default interval: 10 minutes, so a run of seconds stopped at step 10 has none, and
    # --resume says it starts over instead of doing so silently.
    out = tmp_path / "default"
    config = tiny_run_config(token_budget=short)
    assert config.train.checkpoint_minutes == 10 and config.train.checkpoint_interval == 0
    with pytest.raises(KeyboardInterrupt):
        train(config, out, callbacks=[interrupt_after(10)], log=lambda m: None)
    assert not (out / "checkpoint.pt").exists()
    lines = []
    summary = train(config, out, resume=True, log=lines.append)
    assert summary.status == "finished"
    # (Its row also records what the numbers may depend on beyond config and code.)
    import platform

    row = pd.read_parquet(out / "summary.parquet").iloc[0]
    assert row["torch_version"] == torch.__version__ and row["cuda_version"] == (
        torch.version.cuda or ""
    )
    assert row["python_version"] == platform.python_version() and row["device_name"]
    assert row["lightning_version"] and row["ray_version"]
    assert any(
        line.startswith(f"nothing to resume in {out}: the run stopped before its first checkpoint")
        and "train.checkpoint_minutes=10" in line
        for line in lines
    ), lines
    # From the command line, a --resume where there is no run says so too.
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_plain(config)))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert f"nothing to resume in {tmp_path / 'new'} (no run there)" in capsys.readouterr().out


def test_resuming_with_another_alpha_is_refused_and_touches_nothing(interrupted_run, capsys):
    out, config = interrupted_run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    path = out.parent / "other.yaml"
    path.write_text(yaml.safe_dump(to_plain(config.replace(alpha=0.25))))
    assert main(["train", "--config", str(path), "--out", str(out), "--resume"]) == 2
    assert "--resume continues the same run only" in error_line(capsys)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # the checkpoint and the run's config.yaml untouched


def test_a_good_checkpoint_is_kept_when_the_log_fails(interrupted_run):
    """Only a checkpoint that fails to load is set aside: an error after loading (here the
    log line cannot be written, as on a full disk) fails the command, the checkpoint stays."""
    from dualsweep.training import train

    out, config = interrupted_run
    checkpoint = (out / "checkpoint.pt").read_bytes()

    def full_disk(line):
        if line.startswith("resuming"):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        train(config, out, resume=True, log=full_disk)
    assert (out / "checkpoint.pt").read_bytes() == checkpoint
    assert not (out / "checkpoint.pt.unreadable").exists()


def test_two_trainings_into_one_folder_are_refused(interrupted_run, capsys):
    """While one process trains into a folder (it holds the folder's lock), a second
    `dualsweep train` there is refused and writes nothing."""
    from dualsweep.paths import exclusive_lock

    out, config = interrupted_run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    path = out.parent / "same.yaml"
    path.write_text(yaml.safe_dump(to_plain(config)))
    with exclusive_lock(out / ".run.lock", wait=False):  # the first training, still running
        assert main(["train", "--config", str(path), "--out", str(out), "--resume"]) == 2
    assert "another training is writing" in error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resuming_after_the_corpus_changed_is_refused(tmp_path, capsys, text_corpus):
    from dualsweep.benchmarks.gpu_stages import interrupt_after

    from dualsweep.training import train

    out = tmp_path / "run"
    config = tiny_run_config(source="text_dir", path=str(text_corpus), checkpoint_interval=8)
    with pytest.raises(KeyboardInterrupt):
        train(config, out, callbacks=[interrupt_after(10)], log=lambda m: None)
    checkpoint = (out / "checkpoint.pt").read_bytes()
    (text_corpus / "doc0000.txt").write_text("a document edited after the run started")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_plain(config)))
    assert main(["train", "--config", str(path), "--out", str(out), "--resume"]) == 2
    assert "resuming would continue its weights on other data" in error_line(capsys)
    assert (out / "checkpoint.pt").read_bytes() == checkpoint


def test_a_sweep_rerun_after_a_corpus_edit_trains_nothing_until_asked(
    tmp_path, capsys, text_corpus
):
    """Finished trials of one corpus and new trials of another in one table: refused before
    Ray starts, the table untouched (`--mix-corpora` goes on anyway)."""
    from .helpers import quick, write_sweep

    path = write_sweep(
        tmp_path / "smoke.yaml",
        base=quick(data={"source": "text_dir", "path": str(text_corpus)}),
    )
    table = tmp_path / "results" / "smoke" / "runs.parquet"
    table.parent.mkdir(parents=True)
    pd.DataFrame(
        {"run_key": ["k"], "status": ["finished"], "corpus_hash": ["before-the-edit"]}
    ).to_parquet(table)
    before = table.read_bytes()
    args = [
        "sweep",
        str(path),
        "--storage",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    assert main(args) == 2
    err = error_line(capsys)
    assert (
        "1 finished trial(s) were trained on corpus before-the-edit" in err
        and "--mix-corpora" in err
    )
    assert table.read_bytes() == before
    assert not (tmp_path / "runs" / "smoke").exists() or not any(
        (tmp_path / "runs" / "smoke").iterdir()
    )


def test_rebuilding_tables_from_a_storage_without_the_sweep_is_refused(tmp_path, capsys):
    """A mistyped --storage holds none of the sweep's trial folders: the good tables are
    left as they are, and nothing is retrained."""
    path = tmp_path / "s.yaml"
    path.write_text(SMOKE.read_text())
    table = tmp_path / "r" / "smoke" / "runs.parquet"
    table.parent.mkdir(parents=True)
    pd.DataFrame({"run_key": ["k"], "status": ["finished"]}).to_parquet(table)
    before = table.read_bytes()
    args = [
        "sweep",
        str(path),
        "--results",
        str(tmp_path / "r"),
        "--storage",
        str(tmp_path / "typo"),
    ]
    assert main([*args, "--rebuild-tables"]) == 2
    assert "holds no trial folder of sweep smoke" in error_line(capsys)
    assert table.read_bytes() == before and not list(table.parent.glob("*.replaced*"))


def test_a_second_table_backup_never_overwrites_the_first(tmp_path):
    from dualsweep.sweep.driver import backup_name

    table = tmp_path / "runs.parquet"
    assert backup_name(table).name == "runs.parquet.replaced"
    (tmp_path / "runs.parquet.replaced").write_text("first")
    assert backup_name(table).name == "runs.parquet.replaced.2"


def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("objective:\n  alpha: 0.5\n  alpha: 1\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "key 'alpha' given twice (lines 2 and 3)" in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_text_folder_of_links_is_read(tmp_path):
    from dualsweep.data.sources import fingerprint

    real, links = tmp_path / "real", tmp_path / "links"
    write_text_corpus_of(real, 3)
    links.mkdir()
    for doc in sorted(real.iterdir()):
        (links / doc.name).symlink_to(doc)
    names = [
        entry[0] for entry in fingerprint(DataConfig(source="text_dir", path=str(links)))["files"]
    ]
    assert names == sorted(p.name for p in real.iterdir())


def write_text_corpus_of(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"d{i}.txt").write_text(f"document {i}")


def test_a_checkpoint_write_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    import torch

    from dualsweep.training import train

    real = torch.save

    def full_disk(obj, path, *args, **kwargs):
        real(obj, path, *args, **kwargs)  # a partial file exists when the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    summary = train(tiny_run_config(checkpoint_interval=8), tmp_path / "run", log=lambda m: None)
    assert summary.status == "failed"
    assert "DiskFullError: [Errno 28] " in summary.error
    assert "checkpoint.pt: not written, the disk is full" in summary.error
    assert not [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from dualsweep import paths
    from dualsweep.paths import DiskFullError, atomic_write

    target = tmp_path / "model.pt"
    target.write_text("the previous model")

    def stream_error(tmp):  # torch's writer on a full disk: no errno, the free space is gone
        tmp.write_text("half a mod")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 414976")

    monkeypatch.setattr(paths, "free_bytes", lambda folder: 0)
    with pytest.raises(DiskFullError, match=r"model\.pt: not written, the disk is full"):
        atomic_write(target, stream_error)
    monkeypatch.setattr(paths, "free_bytes", lambda folder: 10 << 30)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # space left: not a full disk
        atomic_write(target, stream_error)

    def no_space(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(DiskFullError):  # ENOSPC says so whatever the free space
        atomic_write(target, no_space)
    assert target.read_text() == "the previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_tune_log_records_are_one_line(tmp_path):
    import logging
    import sys

    from dualsweep.sweep.runner import _TuneLogs

    def record(message, exc_info=None):
        return logging.LogRecord("ray.tune", logging.ERROR, "x.py", 1, message, None, exc_info)

    shown = _TuneLogs()
    assert not shown.filter(record("Trials did not complete: [run_trial_0]"))
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        saving = record(
            "Saving experiment state to /runs/.tune failed with exception: ", sys.exc_info()
        )
    assert shown.filter(saving)
    assert saving.getMessage() == (
        "Saving experiment state to /runs/.tune failed with exception: "
        "OSError: [Errno 28] No space left on device"
    )
    assert saving.exc_info is None
    text = (
        "Last sync command failed with the following error:\nTraceback (most recent call last):\n"
        '  File "syncer.py", line 343, in wait\n    raise e\n'
        "OSError: [Errno 28] Error writing bytes to file\n"
    )
    synced = record(text)
    assert shown.filter(synced)
    assert synced.getMessage() == (
        "Last sync command failed with the following error: OSError: [Errno 28] Error writing bytes to file"
    )
    plain = record("Trial started")
    assert shown.filter(plain) and plain.getMessage() == "Trial started"


def test_the_error_line_of_a_trial(tmp_path):
    from dualsweep.sweep.trials import error_line

    assert error_line(TUNE_ERROR_TEXT) == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    text = "Traceback ...\ndualsweep.paths.DiskFullError: [Errno 28] /r/model.pt: not written"
    assert error_line(text) == "DiskFullError: [Errno 28] /r/model.pt: not written"
    assert error_line("") == "unknown error"
    assert error_line("ValueError: " + "x" * 500).endswith("...")


def test_a_damaged_attempts_line_does_not_block_the_sweep(tmp_path):
    from dualsweep.sweep.trials import attempt_nodes, read_attempts

    (tmp_path / "attempts.jsonl").write_text(
        '{"node": "a"}\n{"node": "b", "star\n'
    )  # cut by a kill
    attempts = read_attempts(tmp_path)
    assert len(attempts) == 2 and attempts[0] == {"node": "a"}
    assert attempt_nodes(attempts) == "a;"


@pytest.mark.parametrize(
    "table, message",
    [
        ("duplicated", r"1 row\(s\) repeated \(run_key = \['k'\]\)"),
        ("no key", r"not a dualsweep runs table \(no column run_key\)"),
    ],
)
def test_tables_with_repeated_rows_or_without_their_keys_are_refused(tmp_path, table, message):
    from dualsweep.results import ResultsError, load

    folder = tmp_path / "s"
    folder.mkdir()
    rows = (
        {"run_key": ["k", "k"], "status": ["finished"] * 2} if table == "duplicated" else {"x": [1]}
    )
    pd.DataFrame(rows).to_parquet(folder / "runs.parquet")
    with pytest.raises(ResultsError, match=rf"runs\.parquet: {message}"):
        load("s", tmp_path)


def test_suggest_never_overwrites_a_file_unless_forced(tmp_path, capsys):
    out = tmp_path / "next.yaml"
    out.write_text("mine")
    args = ["suggest", str(SMOKE), "--budget", "2", "--out", str(out), "--results", str(tmp_path)]
    assert main(args) == 2
    assert "exists; give a new file name, or --force" in error_line(capsys)
    assert out.read_text() == "mine"


def test_an_interrupt_message_is_never_empty(monkeypatch, capsys):
    import dualsweep.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "plan", interrupted)
    assert main(["plan", str(SMOKE)]) == 130
    assert capsys.readouterr().err == "dualsweep: interrupted\n"


# -- evaluation inputs -----------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from dualsweep.training import train

    run = tmp_path_factory.mktemp("faults") / "run"
    assert train(tiny_run_config(), run, log=lambda m: None).status == "finished"
    return run


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing", "foreign"])
def test_evaluate_a_damaged_model_file(finished_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    model = run / "model.pt"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    elif damage == "empty":
        model.write_bytes(b"")
    elif damage == "missing":
        model.unlink()
    else:
        import torch

        torch.save({"other": torch.zeros(2)}, model)
    assert main(["evaluate", str(run)]) == 2
    line = error_line(capsys)
    assert ("no model.pt" if damage == "missing" else "model.pt: unreadable model weights") in line


def test_evaluate_with_a_bad_task_file_or_device(finished_run, tmp_path, capsys):
    assert main(["evaluate", str(finished_run), "--tasks", str(tmp_path / "nope.jsonl")]) == 2
    assert "task file not found" in error_line(capsys)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["b"], "label": 0}\n')
    assert main(["evaluate", str(finished_run), "--tasks", str(bad)]) == 2
    assert f"{bad}:1: choices must be a list" in error_line(capsys)
    import torch

    if not torch.cuda.is_available():
        assert main(["evaluate", str(finished_run), "--device", "cuda"]) == 2
        assert "torch sees no CUDA device" in error_line(capsys)
    assert not (finished_run / "evals.parquet").exists()  # nothing partial written


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_fit_and_plots_on_a_damaged_table(tmp_path, capsys, damage):
    from dualsweep.analysis.plots import main as plots

    table = write_results(tmp_path) / "runs.parquet"
    data = table.read_bytes()
    table.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"x" * 99}[damage]
    )
    assert main(["fit", "s", "--results", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert f"{table}: unreadable Parquet table" in line and "--rebuild-tables" in line
    assert plots(["s", "--results", str(tmp_path)]) == 2
    assert "unreadable Parquet table" in error_line(capsys)
    assert not (tmp_path / "s" / "tables").exists() and not (tmp_path / "s" / "figures").exists()


def test_plots_with_too_few_points_write_nothing(tmp_path, capsys):
    from dualsweep.analysis.plots import main as plots

    directory = write_results(tmp_path)
    runs = pd.read_parquet(directory / "runs.parquet").head(3)
    runs.to_parquet(directory / "runs.parquet")
    assert plots(["s", "--results", str(tmp_path)]) == 2
    assert "3 finished (alpha, R) points" in error_line(capsys)
    assert sorted(p.name for p in directory.iterdir()) == ["runs.parquet"]


# -- command-line values and sweep paths -----------------------------------------------
@pytest.mark.parametrize(
    "flags", [["--mfu", "0"], ["--mfu", "-1"], ["--mfu", "1.5"], ["--peak-tflops", "0"]]
)
def test_plan_refuses_non_positive_rates(capsys, flags):
    with pytest.raises(SystemExit) as exit_:
        main(["plan", str(REPO / "sweeps" / "paper.yaml"), *flags])
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_a_sweep_on_a_full_disk_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    # Collecting the trial folders into the tables is the sweep's first write: a full disk
    # there is a fault (exit 1), said in one line; the trial folders are left as they were.
    import dualsweep.sweep.driver as driver

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver, "collect", full_disk)
    args = ["sweep", str(SMOKE), "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "t")]
    assert main(args) == 1
    assert error_line(capsys) == (
        "dualsweep: error: OSError: [Errno 28] No space left on device "
        "(run with --debug for the traceback)"
    )


@pytest.mark.parametrize("search", [False, True])
def test_a_stopped_sweep_exits_130_saying_how_to_finish(tmp_path, capsys, monkeypatch, search):
    # Tune returns early only when Ctrl-C stopped it: the trials it did not end come back
    # (the real signal, through Tune: the slow kill-9-then-Ctrl-C test of test_sweep.py).
    import dualsweep.sweep.runner as runner

    class Stopped:
        """A trainer stopped in the fixed phase, or (with a search) in the search phase."""

        def __init__(self, *args):
            pass

        def train(self, configs, pending, *, done_before):
            return [] if search else ["stopped"]

        def search(self, configs, loop, *, done_before):
            return ["stopped"]

    raw = yaml.safe_load(SMOKE.read_text())
    if search:
        raw["search"] = {"repetitions": [4], "trials_per_repetition": 2}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(runner, "TuneTrainer", Stopped)
    args = ["sweep", str(path), "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "t")]
    assert main(args) == 130
    error = capsys.readouterr().err
    total = 6 if search else 4  # the smoke points, and with a search its anchors at R = 4
    assert f"interrupted with 0/{total} trials finished; run the same command again" in error
    assert ("the search where it stopped" in error) == search


def test_sigterm_to_the_sweep_driver_is_a_ctrl_c(tmp_path, capsys, monkeypatch):
    """A SIGTERM while the sweep runs is turned into the SIGINT Tune stops on: the driver
    exits 130 with the line saying how to finish, as after a Ctrl-C."""
    import os
    import signal

    import dualsweep.sweep.runner as runner

    class StoppedBySigterm:
        def __init__(self, *args):
            pass

        def train(self, configs, pending, *, done_before):
            # As Tune does: it handles SIGINT by stopping its trials and returning the unfinished.
            stopped = []
            previous = signal.signal(signal.SIGINT, lambda signum, frame: stopped.append(signum))
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` and schedulers send
            finally:
                signal.signal(signal.SIGINT, previous)
            return ["a trial"] if stopped else []

    monkeypatch.setattr(runner, "TuneTrainer", StoppedBySigterm)
    path = tmp_path / "s.yaml"
    path.write_text(SMOKE.read_text())
    args = ["sweep", str(path), "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "t")]
    assert main(args) == 130
    assert (
        "interrupted with 0/4 trials finished; run the same command again"
        in capsys.readouterr().err
    )
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored after the command


@pytest.mark.parametrize("option", ["--results", "--storage"])
def test_sweep_paths_that_are_files_start_nothing(tmp_path, capsys, option):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    args = ["sweep", str(SMOKE), "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "t")]
    args[args.index(option) + 1] = str(a_file)
    assert main(args) == 2
    assert f"{option}: {a_file} is a file" in error_line(capsys)


def test_a_sweep_over_a_missing_data_folder_starts_nothing(tmp_path, capsys):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["base"]["data"] = {"source": "text_dir", "path": str(tmp_path / "no-such-corpus")}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw))
    args = ["sweep", str(sweep), "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "t")]
    assert main(args) == 2
    assert "no-such-corpus" in error_line(capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import dualsweep.cli as cli

    def broken(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(cli.COMMANDS, "plan", broken)
    assert main(["plan", str(SMOKE)]) == 1
    assert error_line(capsys) == (
        "dualsweep: error: RuntimeError: disk on fire (run with --debug for the traceback)"
    )
    assert main(["--debug", "plan", str(SMOKE)]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def _progress_after(events, on_trial_end, *, error_text=None, clock=None):
    """Feed SweepProgress a sequence of (event, key, last_result) and return its lines.

    `error_text` is what Tune's record of a trial's error holds; `clock`, a list whose first
    item is the time now, replaces the progress view's clock (and a status line at the last
    time is added)."""
    from types import SimpleNamespace

    from dualsweep.sweep import progress as progress_module
    from dualsweep.sweep.progress import SweepProgress
    from dualsweep.sweep.runner import trial_params

    params = {key: trial_params(tiny_run_config(seed=i)) for i, key in enumerate("abc")}
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        if clock is not None:
            patch.setattr(progress_module.time, "monotonic", lambda: clock[0])
        progress = SweepProgress(
            "s",
            len(params),
            0,
            on_trial_end=on_trial_end,
            log_path=lambda key: f"/runs/s/{key}/train.log",
            log=lines.append,
        )
        for event in events:
            if isinstance(event, (int, float)):  # the clock moves on
                clock[0] = event
                continue
            name, key, result = event
            trial = SimpleNamespace(
                config={"trial": {**params[key], "run_key": key}},
                last_result=result,
                get_error=lambda: error_text,
            )
            getattr(progress, f"on_trial_{name}")(0, [], trial)
        if clock is not None:  # the line at the clock's last time
            lines.append(progress.status_line())
    return lines


# What Tune records of a trial that raised (error.txt): its traceback, with colour codes.
TUNE_ERROR_TEXT = """Failure # 1 (occurred at 2026-12-04_20-30-18)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=18929, ip=192.0.2.2, repr=run_trial)
  File "/work/main/dualsweep/sweep/trainable.py", line 106, in run_trial
    raise TrialFailed(error)
dualsweep.sweep.trainable.TrialFailed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def test_a_retried_or_failed_trial_is_one_line_with_its_error_and_log(tmp_path):
    lines = _progress_after(
        [("start", "a", {}), ("recover", "a", {}), ("start", "a", {}), ("error", "a", {})],
        lambda key: None,
        error_text=TUNE_ERROR_TEXT,
    )
    retry, failed = lines[1], lines[3]
    where = "(traceback in /runs/s/a/train.log)"
    point = "alpha=1 R=1 seed=0 (a)"
    assert retry.endswith(
        f"retrying {point} after RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB {where}"
    )
    assert failed.endswith(
        f"FAILED {point}: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB {where}"
    )
    assert all("\n" not in line and "\x1b" not in line for line in lines)


def test_a_finished_line_gives_the_final_held_out_losses(tmp_path):
    result = {"status": "finished", "final_held_out_ar_loss": 4.25, "final_held_out_md_elbo": 4.5}
    lines = _progress_after([("start", "a", {}), ("complete", "a", result)], lambda key: None)
    assert lines[1].endswith("finished alpha=1 R=1 seed=0 (a): held-out AR 4.2500, MD 4.5000")
    result = {"status": "finished", "final_held_out_ar_loss": 4.25}  # pure AR, say
    lines = _progress_after([("start", "a", {}), ("complete", "a", result)], lambda key: None)
    assert lines[1].endswith("(a): held-out AR 4.2500")


def test_the_eta_counts_what_the_running_trials_have_left(tmp_path):
    # Two at a time. a and b start at 0; a ends at 60 (mean trial 60 s) and c starts; at 70
    # b has 0 s left (it is late), c 50 s: the last ends in 50 s, not 1 x 60 / 2 running.
    events = [0, ("start", "a", {}), ("start", "b", {}), 60, ("complete", "a", {})]
    events += [("start", "c", {}), 70]
    lines = _progress_after(events, lambda key: None, clock=[0.0])
    assert lines[-1].endswith("| elapsed 0:01:10 | ETA 0:00:50")
    # One left running, with 12 s of the mean trial time to go: 12 s (not one mean trial).
    events = [0, ("start", "a", {}), ("start", "c", {}), 12, ("start", "b", {}), 60]
    events += [("complete", "a", {}), ("complete", "c", {})]
    lines = _progress_after(events, lambda key: None, clock=[0.0])
    assert lines[-1].endswith(
        "2/3 done, 1 running, 0 pending, 0 failed | elapsed 0:01:00 | ETA 0:00:12"
    )


def test_the_live_line_while_table_writes_fail(tmp_path):
    def full_disk(key):
        raise OSError(28, "No space left on device")

    # Tune reports an error after a callback raised: the trial must count once.
    lines = _progress_after(
        [("start", "a", {}), ("start", "b", {}), ("complete", "a", {}), ("error", "a", {})],
        full_disk,
    )
    assert lines[-2].startswith("[s] 1/3 done, 1 running, 1 pending, 0 failed")
    assert "tables not updated: OSError: [Errno 28] No space left on device" in lines[-2]
    assert lines[-1].startswith("[s] 1/3 done, 1 running, 1 pending, 0 failed")


def test_a_trial_reporting_an_input_error_ends_failed(tmp_path):
    collected = []
    lines = _progress_after(
        [("start", "c", {}), ("complete", "c", {"status": "failed", "error": "DataError: x"})],
        collected.append,
    )
    assert collected == ["c"]
    assert lines[-1].startswith("[s] 0/3 done, 0 running, 2 pending, 1 failed")
    assert "not retried: DataError: x" in lines[-1]


# -- text sources ----------------------------------------------------------------------
def test_binary_or_non_utf8_text_is_refused_not_read_as_garbage(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("fine text")
    (corpus / "b.txt").write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(DataError, match=r"b\.txt: not UTF-8 text \(byte 0xe9 at offset 3\)"):
        list(text_documents(DataConfig(source="text_dir", path=str(corpus))))
    (corpus / "b.txt").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(DataError, match=r"b\.txt: holds NUL bytes"):
        list(text_documents(DataConfig(source="text_dir", path=str(corpus))))
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl:2: not UTF-8 text"):
        list(text_documents(DataConfig(source="jsonl", path=str(jsonl))))


# -- sweeps: kill -9 at random points, damaged tables (slow) ---------------------------
def assert_one_row_per_key(results: Path, name: str) -> None:
    directory = results / name
    keys = {
        "runs.parquet": ["run_key"],
        "curves.parquet": ["run_key", "step"],
        "evals.parquet": ["run_key", "task", "mode"],
    }
    for table, key in keys.items():
        if (directory / table).is_file():
            frame = pd.read_parquet(directory / table)
            assert not frame.duplicated(key).any(), table


@pytest.mark.ray
@pytest.mark.slow
def test_kill_9_at_random_points_then_a_damaged_table(tmp_path, capsys):
    import random
    import signal
    import subprocess
    import sys
    import time
    import uuid

    from dualsweep.config import load_sweep, run_key
    from dualsweep.results import load

    raw = yaml.safe_load(SMOKE.read_text())
    raw["name"] = "faults"
    raw["base"]["train"].update({"token_budget": 262144, "checkpoint_interval": 32})
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    keys = [run_key(c) for c in load_sweep(path).trials()]
    storage, results = tmp_path / "runs", tmp_path / "results"
    command = [sys.executable, "-m", "dualsweep", "sweep", str(path)]
    command += ["--storage", str(storage), "--results", str(results)]

    def attempts() -> dict[str, int]:
        found = {}
        for key in keys:
            log = trial_folder(storage / "faults", key) / "attempts.jsonl"
            found[key] = len(log.read_text().split()) if log.is_file() else 0
        return found

    def finished() -> set[str]:
        done = set()
        for key in keys:
            summary = trial_folder(storage / "faults", key) / "summary.parquet"
            if summary.is_file() and pd.read_parquet(summary)["status"].iloc[0] == "finished":
                done.add(key)
        return done

    rng = random.Random(0)
    frozen: dict[str, int] = {}  # a finished trial's attempts never change again
    for _ in range(3):
        marker = f"DUALSWEEP_TEST_{uuid.uuid4().hex}"
        driver = subprocess.Popen(
            command,
            env={**os.environ, marker: "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(4, 20))
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        kill_processes_with(marker)  # Ray's processes outlive a killed driver
        assert_one_row_per_key(results, "faults")
        now = attempts()
        assert all(now[key] == count for key, count in frozen.items())
        frozen |= {key: now[key] for key in finished()}

    assert main(command[3:]) == 0  # the re-run finishes the sweep
    capsys.readouterr()
    assert_one_row_per_key(results, "faults")
    runs = load("faults", results).runs
    assert sorted(runs["run_key"]) == sorted(keys) and (runs["status"] == "finished").all()
    assert all(attempts()[key] == count for key, count in frozen.items())

    # A damaged runs.parquet (and a temporary file left by a killed write): refused with the
    # way out, then rebuilt from the trial folders, the damaged table set aside.
    table = results / "faults" / "runs.parquet"
    before = pd.read_parquet(table).drop(columns=["in_sweep"])
    table.write_bytes(table.read_bytes()[:200])
    (results / "faults" / ".curves.parquet.tmp123").write_bytes(b"half")
    assert main(command[3:]) == 2
    assert "--rebuild-tables" in capsys.readouterr().err
    assert main([*command[3:], "--rebuild-tables"]) == 0
    after = pd.read_parquet(table).drop(columns=["in_sweep"])
    pd.testing.assert_frame_equal(
        before.sort_values("run_key").reset_index(drop=True),
        after.sort_values("run_key").reset_index(drop=True),
    )
    assert (results / "faults" / "runs.parquet.replaced").is_file()
    assert not (results / "faults" / ".curves.parquet.tmp123").exists()


@pytest.mark.ray
def test_a_trial_whose_loss_turns_nan_is_reported_failed_not_raised(tmp_path, monkeypatch):
    # What Tune sees from run_trial: a raise is retried, a `status: failed` report is not.
    # The same seed diverges at the same step on every try, so a NaN must be reported.
    import ray.tune

    from dualsweep.sweep import trainable
    from dualsweep.sweep.runner import trial_params
    from dualsweep.sweep.storage import TrialStorage

    reports = []
    monkeypatch.setattr(ray.tune, "report", reports.append)
    monkeypatch.setattr(trainable, "_node_id", lambda: "node")
    config = tiny_run_config(lr=1e30, grad_clip=0.0)
    storage = TrialStorage(tmp_path / "runs", "s")
    params = {"trial": trial_params(config)}
    trainable.run_trial(
        params, base=to_plain(config), storage=storage, resources=config_resources()
    )
    (report,) = reports
    assert report["status"] == "failed"
    assert report["error"].startswith("NonFiniteLossError: training loss became nan by step")
    trial_dir = storage.trial_dir(config)
    assert "(not retried: it would come back on every try)" in (trial_dir / "train.log").read_text()
    assert pd.read_parquet(trial_dir / "summary.parquet")["status"].iloc[0] == "failed"
    assert not (trial_dir / "evals.parquet").exists()  # a failed run is not evaluated


def config_resources():
    from dualsweep.config import Resources

    return Resources(cpu=1, gpu=0)


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_whose_storage_fills_up_says_so_in_a_few_lines(tmp_path):
    # A real full disk: a 1.2 MB tmpfs holds one smoke trial folder (about 0.7 MB), not four.
    import subprocess
    import sys

    full = tmp_path / "full"
    full.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(full)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dualsweep", "sweep", str(SMOKE), "--storage", str(full / "runs"),
             "--results", str(tmp_path / "results")],
            capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)
    printed = done.stdout + done.stderr
    assert done.returncode == 1, printed
    assert "Traceback" not in printed and "EOFError" not in printed, printed
    assert len(printed.splitlines()) < 40, printed  # a line per event, none of Ray's dumps
    assert "not written, the disk is full (the partial file was removed)" in printed
    assert f"--storage {full / 'runs'} is full" in printed
    failed = [line for line in printed.splitlines() if "FAILED" in line]
    assert failed and all("DiskFullError" in line for line in failed), failed
