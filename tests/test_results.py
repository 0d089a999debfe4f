"""Result tables: idempotent upserts, documented columns, and layering (no torch below)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from dualsweep.config import RunConfig, flat_fields
from dualsweep.results import RunSummary, load, upsert
from dualsweep.schema import EVAL_COLUMNS, SWEEP_COLUMNS, curve_columns, summary_metric_columns

from .helpers import REPO, write_text_corpus


def test_upsert_keeps_one_row_per_key(tmp_path):
    path = tmp_path / "runs.parquet"
    upsert(path, pd.DataFrame({"run_key": ["a", "b"], "value": [1, 2]}))
    upsert(path, pd.DataFrame({"run_key": ["b", "c"], "value": [20, 3]}))
    table = upsert(path, pd.DataFrame({"run_key": ["b"], "value": [20]}))  # again: no change
    assert table.to_dict("list") == {"run_key": ["a", "b", "c"], "value": [1, 20, 3]}
    assert pd.read_parquet(path).equals(table)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_curves_upsert_replaces_a_whole_curve(tmp_path):
    path = tmp_path / "curves.parquet"
    upsert(path, pd.DataFrame({"run_key": ["a", "a", "b"], "step": [0, 8, 0]}))
    table = upsert(path, pd.DataFrame({"run_key": ["a"], "step": [0]}))
    assert list(zip(table["run_key"], table["step"], strict=True)) == [("a", 0), ("b", 0)]


def test_load_without_results_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run `dualsweep sweep` on its sweep file first"):
        load("nothing", tmp_path)


def test_results_readme_documents_every_column():
    # The schema names every column; the README must describe each of them.
    readme = (REPO / "results" / "README.md").read_text()
    row = RunSummary(config=RunConfig(), status="failed").row()
    measured = [c for c in row if c not in flat_fields(RunConfig())]
    assert set(summary_metric_columns()) <= set(measured)
    for column in [*measured, *SWEEP_COLUMNS, *curve_columns(), *EVAL_COLUMNS]:
        assert f"`{column}`" in readme, column


def test_bottom_layers_do_not_import_torch_or_ray(tmp_path):
    # The sweep driver checks every trial's evaluation (`evaluated`) when it collects the
    # tables: that too must stay free of torch (a second or more at every sweep start).
    pd.DataFrame(
        {"task": ["cloze"], "mode": ["ar"], "strategy": ["next_token"], "n_items": [3]}
    ).to_parquet(tmp_path / "evals.parquet")
    code = (
        "import sys, dualsweep.config, dualsweep.results, dualsweep.sweep.plan, dualsweep.sweep.trials;"
        "from pathlib import Path;"
        f"assert dualsweep.sweep.trials.evaluated(Path({str(tmp_path)!r}), "
        "dualsweep.config.EvalConfig(tasks=('cloze',), modes=('ar',), task_items=3));"
        "heavy = {'torch', 'lightning', 'ray'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_preparing_a_corpus_imports_no_torch(tmp_path):
    # Corpus preparation (sources, tokenizer, shards) is the data layer's torch-free half:
    # a machine that only prepares corpora, or a sweep driver checking them, never loads it.
    corpus = write_text_corpus(tmp_path / "corpus", n_documents=60)
    code = (
        "import sys, dualsweep.data.corpus as c, dualsweep.config as k;"
        f"config = k.DataConfig(source='text_dir', path={str(corpus)!r});"
        "corpus = c.prepare_corpus(config, 320, log=lambda m: None);"
        "assert len(corpus.training_sequences(32)) > 0;"
        "heavy = {'torch', 'lightning', 'ray'} & set(sys.modules); assert not heavy, heavy"
    )
    env = {**os.environ, "DUALSWEEP_CACHE": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
