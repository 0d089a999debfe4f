"""`train.plugins`: the modules a config needs imported, in every process that reads it.

Registries live in a process; a config naming something registered elsewhere (an objective,
a data source, a task of your own) must bring the registering module along, or a fresh
process (a sweep's trial, `dualsweep evaluate` later) could not read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from dualsweep import schema
from dualsweep.config import ConfigError, run_config_from_dict, to_plain
from dualsweep.schema import SUMMARY_FILE

from .helpers import REPO, tiny_run_config

TASK_PLUGIN = """
from dualsweep.evaluate.task_registry import TaskEntry, register_task
from dualsweep.evaluate.tasks import Item, Task

def build(documents, *, n_items, seed):
    return Task(name="plugin_task", items=(Item(context="a", choices=(" b", " c"), label=0),))

register_task(TaskEntry("plugin_task", build, "a task from a plugin"))
"""

# An objective identical to AR under another name: the same model's held-out values under
# both must be equal, which checks that the plugin's objective is the one trained and measured.
OBJECTIVE_PLUGIN = """
from dualsweep.objectives.registry import Autoregressive, register
from dualsweep.schema import ObjectiveColumns

class SecondAR(Autoregressive):
    name = "ar2"
    columns = ObjectiveColumns("ar2", bound=False, estimated=False)

register(SecondAR())
"""


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    """A folder on sys.path for plugin modules; the task registry restored afterwards."""
    from dualsweep.evaluate import task_registry

    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    saved_tasks, saved_names = dict(task_registry._REGISTRY), list(schema.TASK_NAMES)
    yield folder
    task_registry._REGISTRY.clear()
    task_registry._REGISTRY.update(saved_tasks)
    schema.TASK_NAMES[:] = saved_names
    sys.modules.pop("my_tasks", None)


def test_a_plugin_registers_before_the_config_is_checked(plugin_folder):
    (plugin_folder / "my_tasks.py").write_text(TASK_PLUGIN)
    raw = to_plain(tiny_run_config())
    raw["evaluation"]["tasks"] = ["plugin_task"]
    with pytest.raises(ConfigError, match="evaluation.tasks"):
        run_config_from_dict(raw)  # not registered yet
    raw["train"]["plugins"] = ["my_tasks"]
    config = run_config_from_dict(raw)
    assert config.train.plugins == ("my_tasks",) and config.evaluation.tasks == ("plugin_task",)
    # Not part of the run's identity: the same run with or without it.
    from dualsweep.config import run_key

    assert run_key(config) == run_key(config.replace(plugins=()))


def test_a_plugin_that_cannot_be_imported_is_named():
    raw = to_plain(tiny_run_config())
    raw["train"]["plugins"] = ["no_such_module_anywhere"]
    with pytest.raises(ConfigError) as error:
        run_config_from_dict(raw)
    assert str(error.value).startswith("train.plugins[0]: cannot import 'no_such_module_anywhere'")
    raw["train"]["plugins"] = "my_tasks"  # a string, not a list
    with pytest.raises(ConfigError, match="train.plugins: expected a list"):
        run_config_from_dict(raw)


def test_a_fresh_process_trains_a_plugins_objective_from_the_config_alone(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_objectives.py").write_text(textwrap.dedent(OBJECTIVE_PLUGIN))
    raw = to_plain(tiny_run_config(alpha=0.5, token_budget=8 * 32 * 8))
    raw["objective"]["objectives"] = ["ar", "ar2"]
    raw["train"]["plugins"] = ["my_objectives"]
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualsweep",
            "train",
            "--config",
            str(config_file),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_parquet(out / SUMMARY_FILE).iloc[0]
    # The same model, the same exact causal NLL under either name.
    assert summary["final_held_out_ar2_loss"] == pytest.approx(
        summary["final_held_out_ar_loss"], rel=1e-6
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["plugins"] == [
        "my_objectives"
    ]
