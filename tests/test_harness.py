"""lm-evaluation-harness tasks inside dualsweep: scored into a run's evals rows in every mode,
equal to the harness's own `simple_evaluate`, incremental, offline (a local task), and the
command-line doors (`dualsweep lm-eval`, `dualsweep-lm-eval`). No network anywhere: every
task here is the repository's local task, sweeps/lm_eval/idle_news.yaml, or a copy of it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import pandas as pd
import pytest

from dualsweep.cli import main
from dualsweep.config import EvalConfig
from dualsweep.evaluate.run import evaluate_run

from .helpers import REPO, tiny_run_config

LOCAL = REPO / "sweeps" / "lm_eval"
LIMIT = 16  # documents per task: seconds per mode on the tiny model
pytest.importorskip("lm_eval")


def local_tasks(folder, *names: str):
    """A task folder holding idle_news's YAML under each of `names` (the same items)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LOCAL / "idle_news.jsonl", folder / "idle_news.jsonl")
    yaml = (LOCAL / "idle_news.yaml").read_text()
    for name in names:
        (folder / f"{name}.yaml").write_text(yaml.replace("task: idle_news", f"task: {name}"))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dualsweep.training import train

    out = tmp_path_factory.mktemp("harness") / "run"
    assert train(tiny_run_config(alpha=0.5), out, log=lambda m: None).status == "finished"
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run, its evals this test's own."""
    return shutil.copytree(trained, tmp_path / "run")


def harness_evaluation(folder, tasks=("idle_news",), **changes) -> EvalConfig:
    fields = {
        "tasks": (),
        "modes": ("ar", "md", "prefix"),
        "lm_eval_tasks": tasks,
        "lm_eval_include_path": str(folder),
        "lm_eval_limit": LIMIT,
        **changes,
    }
    return EvalConfig(**fields)


def test_harness_rows_in_every_mode_equal_simple_evaluate(run, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

    folder = local_tasks(tmp_path / "tasks", "idle_news")
    evals, _ = evaluate_run(run, harness_evaluation(folder), held_out=False, log=lambda m: 0)
    assert list(zip(evals["task"], evals["mode"], strict=True)) == [
        ("idle_news", "ar"),
        ("idle_news", "md"),
        ("idle_news", "prefix"),
    ]
    assert (evals["n_items"] == LIMIT).all() and (evals["chance"] == 0.25).all()
    assert evals["accuracy"].between(0, 1).all() and (evals["accuracy"] == evals["acc"]).all()
    # The normalised score and its error, from the harness's acc and acc_stderr.
    expected = 100 * (evals["acc"] - 0.25) / 0.75
    pd.testing.assert_series_equal(evals["normalized_score"], expected, check_names=False)
    pd.testing.assert_series_equal(
        evals["stderr"], 100 * evals["acc_stderr"] / 0.75, check_names=False
    )
    assert (evals["accuracy_per_token"] == evals["acc_norm"]).all()

    # The harness alone, on the same task (its YAML with an absolute data path: the harness
    # resolves a relative one against the working directory), in each mode.
    absolute = tmp_path / "absolute"
    absolute.mkdir()
    (absolute / "idle_news.yaml").write_text(
        (folder / "idle_news.yaml")
        .read_text()
        .replace("test: idle_news.jsonl", f"test: {folder / 'idle_news.jsonl'}")
    )
    manager = TaskManager(include_path=str(absolute), include_defaults=False)
    for mode in ("ar", "md", "prefix"):
        results = lm_eval.simple_evaluate(
            model=DualSweepLM(run_dir=str(run), mode=mode, device="cpu"),
            tasks=["idle_news"],
            task_manager=manager,
            limit=LIMIT,
        )
        row = evals[evals["mode"] == mode].iloc[0]
        assert row["acc"] == results["results"]["idle_news"]["acc,none"], mode
        assert row["acc_norm"] == results["results"]["idle_news"]["acc_norm,none"], mode


def test_only_what_is_missing_is_scored(run, tmp_path, monkeypatch):
    import dualsweep.evaluate.harness as harness

    folder = local_tasks(tmp_path / "tasks", "idle_news", "idle_news_copy")
    scored = []
    real = harness.harness_rows

    def counting(lm, evaluation, pairs, **kwargs):
        scored.append(sorted(pairs))
        return real(lm, evaluation, pairs, **kwargs)

    monkeypatch.setattr(harness, "harness_rows", counting)
    one = harness_evaluation(folder, modes=("ar",))
    first, _ = evaluate_run(run, one, held_out=False, log=lambda m: 0)
    again, _ = evaluate_run(run, one, held_out=False, log=lambda m: 0)
    pd.testing.assert_frame_equal(first, again)  # kept as they were, scoring time included
    both = harness_evaluation(folder, tasks=("idle_news", "idle_news_copy"), modes=("ar",))
    more, _ = evaluate_run(run, both, held_out=False, log=lambda m: 0)
    assert scored == [[("idle_news", "ar")], [("idle_news_copy", "ar")]]
    pd.testing.assert_frame_equal(more.iloc[:1], first)
    assert more["acc"].iloc[1] == more["acc"].iloc[0]  # the same items, the same model
    # Another item limit is another measurement: scored again.
    evaluate_run(
        run,
        harness_evaluation(folder, modes=("ar",), lm_eval_limit=12),
        held_out=False,
        log=lambda m: 0,
    )
    assert scored[-1] == [("idle_news", "ar")]


def test_what_counts_as_scored_for_each_kind_of_task():
    from dualsweep.results import missing_evals

    evaluation = EvalConfig(
        tasks=("cloze", "mine.jsonl"), modes=("ar", "md"), task_items=50, lm_eval_tasks=("mmlu",)
    )
    # A table of before the harness columns: built-in rows count by their item count.
    old = pd.DataFrame(
        [("cloze", m, s, 50) for m, s in (("ar", "next_token"), ("md", "pll"))]
        + [("mine", "ar", "next_token", 7)],
        columns=["task", "mode", "strategy", "n_items"],
    )
    assert missing_evals(old, evaluation) == {("mine", "md"), ("mmlu", "ar"), ("mmlu", "md")}
    # A harness group is scored as its subtasks' rows, each naming the group it was asked as.
    group = pd.DataFrame(
        [
            (sub, m, s, 100, "mmlu", 0, 0)
            for sub in ("mmlu_law", "mmlu_art")
            for m, s in (("ar", "next_token"), ("md", "pll"))
        ],
        columns=[
            "task",
            "mode",
            "strategy",
            "n_items",
            "requested_task",
            "item_limit",
            "num_fewshot",
        ],
    )
    both = pd.concat([old, group], ignore_index=True)
    assert missing_evals(both, evaluation) == {("mine", "md")}
    # Another limit or few-shot count for the harness task, or another task_items: stale.
    assert ("mmlu", "ar") in missing_evals(
        both, EvalConfig(**{**vars(evaluation), "lm_eval_limit": 10})
    )
    assert ("mmlu", "md") in missing_evals(
        both, EvalConfig(**{**vars(evaluation), "lm_eval_num_fewshot": 5})
    )
    assert ("cloze", "ar") in missing_evals(
        both, EvalConfig(**{**vars(evaluation), "task_items": 60})
    )
    assert missing_evals(old.iloc[:0], EvalConfig(tasks=(), modes=("ar",))) == set()


def test_a_harness_task_named_like_a_task_file_is_refused():
    from dualsweep.config import ConfigError

    with pytest.raises(ConfigError, match=r"^lm_eval_tasks: also named in evaluation.tasks"):
        EvalConfig(tasks=("data/arc_easy.jsonl",), lm_eval_tasks=("arc_easy",))


def test_a_new_model_drops_the_old_model_s_scores(run, tmp_path):
    from dualsweep.training import train

    folder = local_tasks(tmp_path / "tasks", "idle_news")
    out = run
    evaluate_run(out, harness_evaluation(folder, modes=("ar",)), held_out=False, log=lambda m: 0)
    assert (out / "evals.parquet").is_file()
    train(tiny_run_config(alpha=0.5, seed=1), out, log=lambda m: None)  # what --force does
    assert not (out / "evals.parquet").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param(  # slow: an unknown name is looked up among the harness's 14K tasks
            {"lm_eval_tasks": ["no_such_task"]},
            r"'no_such_task' is not among",
            marks=pytest.mark.slow,
        ),
        (
            {"lm_eval_include_path": "missing-folder"},
            r"lm_eval_include_path: .*missing-folder is not a folder",
        ),
        ({"broken_data": True}, r"'idle_news' \(.*idle_news.yaml\) does not load"),
    ],
)
def test_a_task_that_cannot_load_fails_the_sweep_before_ray(tmp_path, capsys, change, message):
    from .helpers import write_sweep

    folder = local_tasks(tmp_path / "tasks", "idle_news")
    if change.pop("broken_data", False):
        (folder / "idle_news.jsonl").unlink()
    evaluation = {"lm_eval_tasks": ["idle_news"], "lm_eval_include_path": str(folder), **change}
    path = write_sweep(tmp_path / "smoke.yaml", base={"evaluation": evaluation})
    code = main(
        [
            "sweep",
            str(path),
            "--storage",
            str(tmp_path / "runs"),
            "--results",
            str(tmp_path / "results"),
        ]
    )
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs" / "smoke").exists()  # no trial folder: Ray never started


def test_dualsweep_lm_eval_writes_the_harness_json(run, tmp_path, capsys):
    folder = local_tasks(tmp_path / "tasks", "idle_news")
    out = tmp_path / "out" / "results.json"
    args = ["lm-eval", str(run), "--tasks", "idle_news", "--include-path", str(folder)]
    args += ["--limit", "8", "--num-fewshot", "0", "--batch-size", "4", "--mode", "prefix"]
    assert main([*args, "--output-path", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["results"]["idle_news"]["sample_len"] == 8
    assert 0 <= results["results"]["idle_news"]["acc,none"] <= 1
    assert "idle_news" in capsys.readouterr().out  # the harness's table


@pytest.mark.slow  # the harness's command line indexes its 14K tasks first (about 10 s)
def test_the_harness_command_line_finds_the_dualsweep_model(run, tmp_path, monkeypatch):
    from dualsweep.evaluate.lm_eval_adapter import harness_cli

    folder = local_tasks(tmp_path / "tasks", "idle_news")
    out = tmp_path / "harness-out"
    argv = [
        "dualsweep-lm-eval",
        "--model",
        "dualsweep",
        "--model_args",
        f"run_dir={run},mode=md",
    ]
    argv += ["--tasks", "idle_news", "--include_path", str(folder), "--limit", "4"]
    argv += ["--batch_size", "auto", "--device", "cpu", "--output_path", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    # The harness's own command line resolves a relative data_files path against the
    # working directory (the README says so): run it from the task folder.
    monkeypatch.chdir(folder)
    harness_cli()
    (written,) = out.rglob("results_*.json")
    results = json.loads(written.read_text())
    assert results["results"]["idle_news"]["sample_len"] == 4
    assert results["config"]["model"] == "dualsweep"


@pytest.mark.ray
@pytest.mark.slow
def test_a_smoke_sweep_scores_a_harness_task_once_per_trial_and_mode(tmp_path, ray_cluster, capsys):
    from dualsweep.config import load_sweep
    from dualsweep.results import load
    from dualsweep.sweep.runner import run_sweep

    from .helpers import quick, write_sweep

    folder = local_tasks(tmp_path / "tasks", "idle_news", "idle_news_copy")
    evaluation = {
        "tasks": ["word_order"],
        "modes": ["ar", "md", "prefix"],
        "lm_eval_tasks": ["idle_news"],
        "lm_eval_include_path": str(folder),
        "lm_eval_limit": LIMIT,
    }
    results, storage = tmp_path / "results", tmp_path / "runs"

    def sweep(**changes):
        path = write_sweep(
            tmp_path / "smoke.yaml", base=quick(evaluation={**evaluation, **changes})
        )
        return run_sweep(
            load_sweep(path), results_root=results, storage=storage, address=ray_cluster, log=print
        )

    first = sweep()
    assert first.finished == 4 and first.failed == []
    tables = load("smoke", results)
    harness = tables.evals[tables.evals["task"] == "idle_news"]
    assert sorted(zip(harness["run_key"], harness["mode"], strict=True)) == sorted(
        (key, mode) for key in tables.runs["run_key"] for mode in ("ar", "md", "prefix")
    )
    assert harness["accuracy"].between(0, 1).all() and (harness["n_items"] == LIMIT).all()
    expected = 100 * (harness["accuracy"] - harness["chance"]) / (1 - harness["chance"])
    assert (harness["normalized_score"] - expected).abs().max() < 1e-9
    assert tables.runs["evaluated"].all()

    again = sweep()  # nothing to train or score
    assert again.launched == 0
    pd.testing.assert_frame_equal(load("smoke", results).evals, tables.evals)

    more = sweep(lm_eval_tasks=["idle_news", "idle_news_copy"])  # scores the new task only
    assert more.launched == 4 and more.finished == 4
    evals = load("smoke", results).evals
    kept = evals[evals["task"] != "idle_news_copy"].sort_values(["run_key", "task", "mode"])
    before = tables.evals.sort_values(["run_key", "task", "mode"])
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), before.reset_index(drop=True))
    assert len(evals[evals["task"] == "idle_news_copy"]) == 4 * 3
    assert (load("smoke", results).runs["attempts"] == 1).all()  # trained once

    # The harness scores are metrics like any other.
    capsys.readouterr()
    assert main(["fit", "smoke", "--results", str(results), "--metric", "score_md:idle_news"]) == 0
    assert "score_md:idle_news" in capsys.readouterr().out
