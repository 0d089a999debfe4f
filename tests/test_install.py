"""`make install`'s torch line: the README's commands give pip separate arguments.

Run with `make -n` (print, do not run): no network, no venv touched. The README's two
torch lines (a CPU and a CUDA index) are read from the README itself, so the commands it
gives are the ones checked.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from .helpers import REPO


def pip_torch_arguments(*make_args: str) -> list[str]:
    """The arguments `make install` gives `pip install` for torch."""
    printed = subprocess.run(
        ["make", "-n", "install", *make_args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    (line,) = [line for line in printed.splitlines() if "pip install" in line and "-e" not in line]
    words = shlex.split(line.split("||", 1)[1])
    return words[words.index("install") + 1 :]


def readme_torch_lines() -> list[list[str]]:
    """The `make install VAR=...` commands of the README, as a shell would split them."""
    text = (REPO / "README.md").read_text()
    commands = re.findall(r"`(make install TORCH_[^`]+)`", text)
    return [shlex.split(command)[2:] for command in commands]


def test_the_default_installs_the_pinned_torch_alone():
    assert pip_torch_arguments() == ["torch==2.13.0"]


@pytest.mark.parametrize("variable", ["TORCH_SPEC", "TORCH_INDEX"])
def test_an_index_url_reaches_pip_as_its_own_arguments(variable):
    url = "https://download.pytorch.org/whl/cu128"
    value = f"torch==2.13.0 --index-url {url}" if variable == "TORCH_SPEC" else url
    assert pip_torch_arguments(f"{variable}={value}") == ["torch==2.13.0", "--index-url", url]


def test_the_readme_s_torch_lines_are_the_ones_that_work():
    lines = readme_torch_lines()
    urls = {"https://download.pytorch.org/whl/cpu", "https://download.pytorch.org/whl/cu128"}
    assert len(lines) == 2
    seen = set()
    for make_args in lines:
        arguments = pip_torch_arguments(*make_args)
        assert arguments[0] == "torch==2.13.0" and arguments[1] == "--index-url", arguments
        seen.add(arguments[2])
        assert len(arguments) == 3, arguments
    assert seen == urls


def test_the_installed_packages_are_every_package_folder_under_one_name():
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"dualsweep": "dualsweep", "analysis": "dualsweep.analysis"}
    folders["benchmarks"] = "dualsweep.benchmarks"
    expected = set()
    for folder, name in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join((name, *parts)))
    assert set(setuptools["packages"]) == expected
    assert setuptools["package-dir"] == {
        "dualsweep": "dualsweep",
        "dualsweep.analysis": "analysis",
        "dualsweep.benchmarks": "benchmarks",
    }


def test_nothing_named_analysis_or_benchmarks_is_importable_outside_the_repository(tmp_path):
    import sys

    code = (
        "import importlib.util as u, dualsweep.analysis.plots, dualsweep.benchmarks.run\n"
        "assert u.find_spec('analysis') is None and u.find_spec('benchmarks') is None\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=120)
