"""The READMEs' Python examples run as written and draw lines that have points.

Each `python` block of README.md and results/README.md runs in a folder holding the
quickstart's run (`runs/a0.5-r16`, trained here on the tiny test config) and the committed
`results/`, as a user's clone would after the quickstart.
"""

from __future__ import annotations

import math
import re

import matplotlib
import pytest

from .helpers import REPO, tiny_run_config

READMES = [REPO / "README.md", REPO / "results" / "README.md"]


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in READMES:
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S)):
            blocks.append((f"{path.relative_to(REPO)} block {i + 1}", code))
    return blocks


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    from dualsweep.training import train

    folder = tmp_path_factory.mktemp("clone")
    config = tiny_run_config(alpha=0.5, repetitions=2)
    assert train(config, folder / "runs" / "a0.5-r16", log=lambda m: None).status == "finished"
    (folder / "results").symlink_to(REPO / "results")
    return folder


def test_the_readmes_have_examples():
    names = [name for name, _ in python_blocks()]
    assert len(names) >= 3 and any(name.startswith("README.md") for name in names)


@pytest.mark.parametrize("name, code", python_blocks(), ids=[n for n, _ in python_blocks()])
def test_a_readme_example_runs_and_its_lines_have_points(name, code, user_folder, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(user_folder)
    plt.close("all")
    exec(compile(code, name, "exec"), {"__name__": "readme_example"})
    for number in plt.get_fignums():
        for axes in plt.figure(number).axes:
            for line in axes.get_lines():
                # A segment needs two finite points in a row: a NaN between points breaks
                # the line, and a line of isolated points (no markers) shows nothing.
                finite = [
                    math.isfinite(float(x)) and math.isfinite(float(y))
                    for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
                ]
                segments = sum(a and b for a, b in zip(finite, finite[1:], strict=False))
                assert segments, f"{name}: line {line.get_label()!r} draws nothing"
    plt.close("all")
