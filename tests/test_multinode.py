"""Losing a node or a worker mid-sweep (`make test-slow`): a two-node Ray cluster whose
worker node dies, and a data-parallel trial one of whose workers is killed.

Both nodes are raylets on this machine (Ray's `cluster_utils.Cluster`, each its own CPU
count and node id); the driver joins through RAY_ADDRESS, as on a real cluster, and the trial
folders are on storage both nodes see. Killing the worker node kills the trials training on
it: Tune retries them on the head, they resume from their checkpoints, and the tables end
with every trial exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from dualsweep.config import load_sweep, run_key
from dualsweep.results import load
from dualsweep.sweep.storage import trial_folder_name

from .helpers import owned_cluster, quick, sweep_command, write_sweep

pytestmark = pytest.mark.slow


def attempt_records(folder) -> list[dict]:
    path = folder / "attempts.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
    return value


@pytest.mark.ray
def test_a_worker_node_dies_mid_sweep_and_the_sweep_finishes_with_every_row_once(tmp_path):
    # Trials of ~10 s (320 steps) with a checkpoint every 32 steps; 3 run at once (1 CPU on
    # the head, 2 on the worker node); each may be retried twice.
    path = write_sweep(
        tmp_path / "nodes.yaml",
        name="nodes",
        retries=2,
        points=[[a, r] for a in (1, "1/2", 0) for r in (1, 4)],
        base=quick(train={"token_budget": 16 * 64 * 320, "checkpoint_interval": 32}),
    )
    trials = load_sweep(path).trials()
    keys = [run_key(c) for c in trials]
    storage, results = tmp_path / "shared-storage", tmp_path / "results"
    folders = {run_key(c): storage / "nodes" / trial_folder_name(c) for c in trials}

    with owned_cluster(1, 2) as cluster:
        head, worker = cluster.node_ids
        log = (tmp_path / "driver.log").open("w")
        driver = subprocess.Popen(
            sweep_command(path, storage, results),
            env={**os.environ, "RAY_ADDRESS": cluster.address},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def training_on_the_worker_node() -> set[str]:
                return {
                    key
                    for key, folder in folders.items()
                    if (records := attempt_records(folder))
                    and records[-1]["node"] == worker
                    and (folder / "checkpoint.pt").is_file()
                    and not (folder / "summary.parquet").is_file()
                }

            cut_short = wait_for(
                training_on_the_worker_node, 240, "a checkpointed trial on the worker node"
            )
            cluster.remove_worker(0)
            cut_short = {k for k in cut_short if not (folders[k] / "summary.parquet").is_file()}
            assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()
        finally:
            if driver.poll() is None:
                driver.kill()
            log.close()

    output = (tmp_path / "driver.log").read_text()
    tables = load("nodes", results)
    runs, curves = tables.runs, tables.curves
    # No row lost, none duplicated.
    assert sorted(runs["run_key"]) == sorted(keys), output
    assert (runs["status"] == "finished").all() and runs["evaluated"].all()
    assert not curves.duplicated(["run_key", "step"]).any()
    assert (curves.groupby("run_key")["step"].max() == 320).all()
    # Trials ran on both nodes, and each attempt's node is in its row.
    nodes_per_attempt = [n for value in runs["attempt_nodes"] for n in value.split(";")]
    assert set(nodes_per_attempt) == {head, worker}
    assert len(nodes_per_attempt) == runs["attempts"].sum()
    # The trials the node took down were retried on the head, from their checkpoints.
    assert cut_short, "no trial was training on the worker node when it died"
    for key in cut_short:
        nodes = runs.set_index("run_key").loc[key, "attempt_nodes"].split(";")
        assert worker in nodes[:-1] and nodes[-1] == head, nodes
        assert "resuming from step" in (folders[key] / "train.log").read_text()
    print(
        f"\n{len(keys)} trials, {runs['attempts'].sum()} attempts; cut short on the worker node "
        f"and resumed on the head: {len(cut_short)}; attempts per node: "
        f"head {nodes_per_attempt.count(head)}, worker {nodes_per_attempt.count(worker)}"
    )


def train_worker_pids() -> list[int]:
    """Processes of Ray Train workers (Ray titles an actor's process `ray::<class>...`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.ray
@pytest.mark.distributed
def test_a_killed_data_parallel_worker_resumes_to_the_uninterrupted_curve(tmp_path):
    """kill -9 of one worker of a 2-worker trial mid-training: the group ends, Tune retries
    the trial, and it resumes from its checkpoint to the curve of an uninterrupted 2-worker
    trial, bit for bit. (Against one process the curves agree to float rounding, which
    training amplifies step by step: test_sweep.py compares 32 steps.)"""
    from dualsweep.sweep.runner import run_sweep

    base = quick(
        train={"token_budget": 16 * 64 * 320, "checkpoint_interval": 32},
        held_out={"eval_interval": 64},
        evaluation={"tasks": []},
    )
    paths = {
        name: write_sweep(
            tmp_path / f"{name}.yaml",
            name=name,
            points=[["1/2", 4]],
            resources={"cpu": 0.9, "gpu": 0, "workers": 2},
            base=base,
        )
        for name in ("killed", "whole")
    }
    (config,) = load_sweep(paths["killed"]).trials()
    folder = tmp_path / "runs" / "killed" / trial_folder_name(config)
    with owned_cluster(2) as cluster:
        log = (tmp_path / "driver.log").open("w")
        driver = subprocess.Popen(
            sweep_command(paths["killed"], tmp_path / "runs", tmp_path / "results"),
            env={**os.environ, "RAY_ADDRESS": cluster.address},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: (folder / "checkpoint.pt").is_file(), 240, "a checkpoint")
            pids = wait_for(train_worker_pids, 30, "the Ray Train workers")
            os.kill(pids[0], signal.SIGKILL)
            assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()
        finally:
            if driver.poll() is None:
                driver.kill()
            log.close()
        whole = run_sweep(
            load_sweep(paths["whole"]),
            results_root=tmp_path / "results",
            storage=tmp_path / "runs",
            address=cluster.address,
            log=lambda line: None,
        )
        assert whole.finished == 1

    records = attempt_records(folder)
    # (The group's nodes are known when it ends: the failed attempt keeps its trial's node.)
    assert len(records) == 2 and "worker_nodes" not in records[0]
    assert len(records[1]["worker_nodes"]) == 2
    assert "resuming from step" in (folder / "train.log").read_text()
    curves = {}
    for name in ("killed", "whole"):
        tables = load(name, tmp_path / "results")
        assert len(tables.runs) == 1 and tables.runs["status"].iloc[0] == "finished"
        curves[name] = tables.curves.set_index("step").sort_index()
    assert list(curves["killed"].index) == list(curves["whole"].index)
    for column in ("train_loss", "held_out_ar_loss", "held_out_md_elbo"):
        pd.testing.assert_series_equal(
            curves["killed"][column], curves["whole"][column], check_exact=True
        )
