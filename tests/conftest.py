"""Shared fixtures: tiny configs, a hermetic corpus cache, a small synthetic text corpus."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dualsweep.config import RunConfig, run_config_from_dict

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _hermetic_cache(tmp_path_factory):
    """Prepared corpora and tokenizers go to a per-session folder, never the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DUALSWEEP_CACHE", str(tmp_path_factory.mktemp("dualsweep-cache")))
    yield
    mp.undo()


def tiny_run_config(**flat) -> RunConfig:
    """A run of seconds on the built-in corpus: 2 layers, width 32, 32-token sequences."""
    raw = {
        "model": {
            "vocab_size": 320,
            "n_layers": 2,
            "d_model": 32,
            "n_heads": 2,
            "ffn_hidden": 64,
            "seq_len": 32,
        },
        "optim": {"lr": 3e-3},
        "train": {
            "token_budget": 8 * 32 * 48,
            "batch_size": 8,
            "log_interval": 4,
            "device": "cpu",
            "threads": 1,
            "progress_bar": False,
            "loggers": ["csv"],
        },
        "held_out": {"eval_interval": 16, "validation_sequences": 16, "md_eval_draws": 2},
    }
    return run_config_from_dict(raw).replace(**flat) if flat else run_config_from_dict(raw)


WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
    "pi rho sigma tau upsilon phi chi psi omega"
).split()


def write_text_corpus(root: Path, n_documents: int = 300, seed: int = 0) -> Path:
    """A folder of .txt documents of random Greek-letter sentences (distinct contents)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_documents):
        words = [rng.choice(WORDS) for _ in range(rng.randint(20, 80))]
        (root / f"doc{i:04d}.txt").write_text(f"document {i}: " + " ".join(words) + ".")
    return root


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    return write_text_corpus(tmp_path / "corpus")


@dataclass
class OwnedCluster:
    """A local Ray cluster run by tests/ray_cluster_owner.py: its address and node ids (head
    first), and a way to kill a worker node."""

    address: str
    node_ids: list[str]
    owner: subprocess.Popen

    def remove_worker(self, index: int) -> None:
        """Kill worker node `index` (0 = the first after the head) at once."""
        self.owner.stdin.write(f"remove {index}\n")
        self.owner.stdin.flush()
        ready, _, _ = select.select([self.owner.stdout], [], [], 60)
        answer = self.owner.stdout.readline().strip() if ready else ""
        assert answer == f"removed {index}", answer


@contextlib.contextmanager
def owned_cluster(*cpus: int):
    """Start a local cluster (a head of cpus[0] CPUs and a worker node per further count) in
    its own process, with token auth on; stop it on exit."""
    # Token auth on, as for any local cluster a plain `ray.init()` starts: a dualsweep driver
    # given an address uses the token when one exists (sweep/runner.py), and a cluster without
    # auth cancels such a driver's actors before they start.
    if not (os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()):
        from ray._private.authentication.authentication_token_setup import (
            generate_and_save_token,
        )

        generate_and_save_token()
    owner = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "ray_cluster_owner.py"), *map(str, cpus)],
        env={**os.environ, "RAY_AUTH_MODE": "token"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([owner.stdout], [], [], 120)  # a hung start fails, not hangs
    address = owner.stdout.readline().strip() if ready else ""
    if not re.fullmatch(r"[\w.-]+:\d+", address):
        owner.kill()
        raise RuntimeError(
            f"the test's Ray cluster did not start: {address!r} (tests/ray_cluster_owner.py)"
        )
    try:
        yield OwnedCluster(address, json.loads(owner.stdout.readline()), owner)
    finally:
        owner.stdin.close()  # the owner shuts the cluster down
        try:
            owner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            owner.kill()


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs) shared by a module's sweep tests that are not about
    starting Ray: a driver joins it in about a second, where an embedded start takes 7-9 s
    here. Its workers inherit this session's environment (the hermetic corpus cache), and it
    stops after the module, so that its idle processes take no CPU from later tests; yields
    its address."""
    with owned_cluster(2) as cluster:
        yield cluster.address


def trial_folder(root: Path, key: str) -> Path:
    """A sweep's trial folder by run key (`alpha0.5_R4_seed0_<key>`, or `<key>` for folders
    of before); a path that does not exist while the trial has none."""
    found = [p for p in root.glob(f"*{key}") if p.name == key or p.name.endswith(f"_{key}")]
    return found[0] if found else root / key


def key_of(folder: Path) -> str:
    """The run key a trial folder's name ends with."""
    return folder.name.rsplit("_", 1)[-1]
