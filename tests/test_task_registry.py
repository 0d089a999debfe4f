"""The task registry: a task registered here, in a test module, is accepted by the config,
listed by the command line and evaluated by `evaluate_run` like the built-in tasks."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from dualsweep import schema
from dualsweep.config import ConfigError, EvalConfig
from dualsweep.evaluate import task_registry
from dualsweep.evaluate.task_registry import TaskEntry, build_task, register_task
from dualsweep.evaluate.tasks import Item, Task, TaskError

from .helpers import tiny_run_config

FIRST_WORDS = "first_words"


def first_words_task(documents, *, n_items: int, seed: int) -> Task:
    """The fourth word of a held-out document after its first three, against the fourth word
    of another document."""
    rng = random.Random(seed)
    words = [d.split() for d in documents if len(d.split()) >= 4]
    items = []
    for _ in range(n_items):
        doc, other = rng.sample(range(len(words)), 2)
        label = rng.randrange(2)
        true, wrong = words[doc][3], words[other][3]
        choices = (true, wrong) if label == 0 else (wrong, true)
        context = " ".join(words[doc][:3])
        items.append(Item(context, tuple(" " + c for c in choices), label))
    return Task("fourth_word", tuple(items))  # the registry names it by its entry


@pytest.fixture
def first_words(monkeypatch):
    """`first_words` registered for one test (the registry and `schema.TASK_NAMES` as they
    were after it); yields the (documents, n_items, seed) of each build."""
    builds = []

    def build(documents, *, n_items, seed):
        builds.append((list(documents), n_items, seed))
        return first_words_task(documents, n_items=n_items, seed=seed)

    monkeypatch.setattr(task_registry, "_REGISTRY", dict(task_registry._REGISTRY))
    names = list(schema.TASK_NAMES)  # extended in place: the config holds this very list
    register_task(TaskEntry(FIRST_WORDS, build, "the fourth word of a held-out document"))
    yield builds
    schema.TASK_NAMES[:] = names


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from dualsweep.training import train

    run_dir = tmp_path_factory.mktemp("task-registry") / "run"
    assert train(tiny_run_config(), run_dir, log=lambda m: None).status == "finished"
    return run_dir


def test_a_registered_task_is_evaluated_like_a_builtin_one(trained_run, first_words):
    from dualsweep.evaluate.loaded import held_out_documents, load_run
    from dualsweep.evaluate.multiple_choice import evaluate_task
    from dualsweep.evaluate.run import evaluate_run

    evaluation = EvalConfig(
        tasks=("word_order", FIRST_WORDS),
        modes=("ar", "prefix"),
        task_items=24,
        task_seed=5,
        bootstrap_samples=50,
    )
    evals, _ = evaluate_run(trained_run, evaluation, held_out=False, log=lambda m: None)
    assert list(zip(evals["task"], evals["mode"], strict=True)) == [
        ("word_order", "ar"),
        ("word_order", "prefix"),
        (FIRST_WORDS, "ar"),
        (FIRST_WORDS, "prefix"),
    ]
    rows = evals[evals["task"] == FIRST_WORDS]
    assert (rows["n_items"] == 24).all() and (rows["item_limit"] == 24).all()
    assert (rows["chance"] == 0.5).all()  # two choices per item
    # Built once, from the run's held-out documents, with the configured items and seed.
    run = load_run(trained_run)
    ((documents, n_items, seed),) = first_words
    assert documents == held_out_documents(run) and (n_items, seed) == (24, 5)
    # Its numbers are those of scoring the builder's items directly, batched as evaluate_run
    # batches (64 rows, at most a training batch of tokens).
    task = first_words_task(documents, n_items=24, seed=5)
    direct = evaluate_task(
        run.model,
        run.tokenizer,
        run.special,
        task,
        ["ar", "prefix"],
        batch_size=64,
        max_batch_tokens=run.config.train.batch_size * run.config.model.seq_len,
        bootstrap=50,
        seed=5,
    )
    for result, (_, row) in zip(direct, rows.iterrows(), strict=True):
        assert row["accuracy"] == result.summed.accuracy
        assert row["normalized_score"] == pytest.approx(200 * (row["accuracy"] - 0.5))
        assert row["accuracy_per_token"] == result.per_token.accuracy
    # Evaluated again: every row is kept, nothing is built or scored twice.
    again, _ = evaluate_run(trained_run, evaluation, held_out=False, log=lambda m: None)
    assert len(first_words) == 1 and again[evals.columns].equals(evals)


def test_the_config_takes_the_registered_task_names():
    # "continuation, word_order, cloze" and later registrations: the list is the registry's.
    listed = ", ".join(entry.name for entry in task_registry.registered_tasks())
    assert listed == ", ".join(schema.TASK_NAMES) == "continuation, word_order, cloze"
    with pytest.raises(ConfigError, match=f"each task must be one of {listed} or a .jsonl file"):
        EvalConfig(tasks=(FIRST_WORDS,))
    with pytest.raises(TaskError, match=f"^{FIRST_WORDS}: not a registered task \\({listed}\\)"):
        build_task(FIRST_WORDS, ["a b c d e"], n_items=1, seed=0)


def test_registering_adds_a_name_once(first_words):
    assert schema.TASK_NAMES == ["continuation", "word_order", "cloze", FIRST_WORDS]
    assert EvalConfig(tasks=(FIRST_WORDS,), task_items=7).item_limit(FIRST_WORDS) == 7
    entry = task_registry._REGISTRY[FIRST_WORDS]
    assert register_task(entry) is entry and schema.TASK_NAMES.count(FIRST_WORDS) == 1
    with pytest.raises(ValueError, match="a task named 'first_words' is already registered"):
        register_task(TaskEntry(FIRST_WORDS, first_words_task, "another"))
    with pytest.raises(ValueError, match="'mine.jsonl': must be a plain name"):
        register_task(TaskEntry("mine.jsonl", first_words_task, "a file's name"))
    with pytest.raises(TaskError, match=r"^nope: not a registered task \(.*, first_words\)"):
        build_task("nope", ["a b c d e"], n_items=1, seed=0)


def test_the_command_line_lists_the_registered_tasks(first_words, capsys):
    from dualsweep.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for entry in task_registry.registered_tasks():
        assert f"{entry.name}: {entry.description}" in help_text
    assert re.search(r"first_words: the fourth word of a held-out document\) or \.jsonl", help_text)
    # The help is built without torch: the registry is torch-free.
    code = (
        "import sys; from dualsweep.cli.parser import build_parser; build_parser();"
        "heavy = {'torch', 'lightning', 'ray'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
