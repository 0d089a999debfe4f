"""What several test modules share: tiny configs, synthetic corpora, a local Ray cluster run
in its own process, trial folders by run key, small sweeps run through the command line.

Fixtures stay in conftest.py (pytest finds them there); everything a test imports is here.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dualsweep.config import RunConfig, run_config_from_dict
from dualsweep.results import SweepResults
from dualsweep.schema import alpha_log_odds

REPO = Path(__file__).resolve().parent.parent


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


def trial_folder(root: Path, key: str) -> Path:
    """A sweep's trial folder by run key (`alpha0.5_R4_seed0_<key>`, or `<key>` for folders
    of before); a path that does not exist while the trial has none."""
    found = [p for p in root.glob(f"*{key}") if p.name == key or p.name.endswith(f"_{key}")]
    return found[0] if found else root / key


def key_of(folder: Path) -> str:
    """The run key a trial folder's name ends with."""
    return folder.name.rsplit("_", 1)[-1]


# -- sweeps run through the command line (tests/test_sweep.py and others) -----------------
SMOKE = REPO / "sweeps" / "smoke.yaml"


def write_sweep(path: Path, **changes) -> Path:
    """The smoke sweep with top-level keys replaced and `base` sections updated."""
    raw = yaml.safe_load(SMOKE.read_text())
    for section, fields in changes.pop("base", {}).items():
        raw["base"].setdefault(section, {}).update(fields)
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep_command(path: Path, storage: Path, results: Path) -> list[str]:
    """`dualsweep sweep` as a separate driver process."""
    return [
        sys.executable,
        "-m",
        "dualsweep",
        "sweep",
        str(path),
        "--storage",
        str(storage),
        "--results",
        str(results),
    ]


# Trials of about a second: 32 steps of 16 x 64 tokens, evaluated on one small task. The
# vocabulary of conftest's tiny runs, so that the corpus earlier tests prepared is reused
# (preparing the built-in corpus takes ~12 s).
QUICK = {
    "model": {"vocab_size": 320},
    "train": {"token_budget": 32768, "log_interval": 8},
    "held_out": {"eval_interval": 0, "validation_sequences": 8},
    "evaluation": {"tasks": ["word_order"], "modes": ["ar"], "task_items": 10},
}


def quick(**sections) -> dict:
    """QUICK with some sections' fields changed."""
    return {name: {**QUICK.get(name, {}), **sections.get(name, {})} for name in {*QUICK, *sections}}


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries `marker` (the driver and every Ray process it started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def kill_processes_with(marker: str) -> None:
    """SIGKILL every process whose environment carries `marker`, and only those: `ray stop`
    would also stop every other Ray cluster on the machine (a module's shared one)."""
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- results tables made by hand -------------------------------------------------------
def write_results(root: Path, name: str = "s") -> Path:
    """A 4-point sweep table, enough for a surface."""
    rows = [
        {
            "run_key": f"k{i}",
            "sweep": name,
            "alpha": a,
            "repetitions": r,
            "seed": 0,
            "status": "finished",
            "in_sweep": True,
            "final_held_out_ar_loss": 5.0 + i / 10,
            "best_held_out_ar_loss": 5.0,
            "final_held_out_md_elbo": 5.5,
            "best_held_out_md_elbo": 5.5,
            "final_held_out_md_elbo_stderr": 0.01,
        }
        for i, (a, r) in enumerate([(0.0, 1), (1.0, 1), (0.5, 4), (1.0, 4), (0.25, 16)])
    ]
    directory = root / name
    directory.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(directory / "runs.parquet")
    return directory


ALPHAS = [0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16, 63 / 64, 255 / 256, 1]


REPETITIONS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def best_logit(r) -> np.ndarray:
    """The synthetic optimum: alpha = 63/64-ish at R = 1, falling with R (alpha * R ~ 16 late)."""
    return 4.0 - 0.9 * np.log2(r)


def true_score(r, alpha) -> np.ndarray:
    return 40 - 1.5 * (alpha_log_odds(alpha) - best_logit(r)) ** 2 - 2 * np.log2(r)


def synthetic_results(noise: float = 1.0, seed: int = 0) -> SweepResults:
    """A 50-point checkerboard sweep drawn from a known smooth surface plus noise."""
    rng = np.random.default_rng(seed)
    points = [
        (a, r) for j, r in enumerate(REPETITIONS) for i, a in enumerate(ALPHAS) if (i + j) % 2 == 0
    ]
    runs, curves, evals = [], [], []
    for k, (a, r) in enumerate(points):
        key = f"run{k:02d}"
        loss = 4 + 0.05 * (alpha_log_odds(a) - best_logit(r)) ** 2 / 10 + rng.normal(0, 0.01)
        runs.append(
            {
                "run_key": key,
                "alpha": a,
                "repetitions": r,
                "seed": 0,
                "status": "finished",
                "in_sweep": True,
                "final_held_out_ar_loss": loss,
                "best_held_out_ar_loss": loss - 0.01,
                "final_held_out_md_elbo": loss + 0.2,
                "best_held_out_md_elbo": loss + 0.19,
                "final_held_out_md_elbo_stderr": 0.01,
            }
        )
        for step in (0, 50, 100):
            curves.append(
                {
                    "run_key": key,
                    "step": step,
                    "tokens_seen": step * 1000,
                    "held_out_ar_loss": 6 - step / 100 * (6 - loss),
                }
            )
        for mode, shift in (("ar", 0.0), ("md", -3.0), ("prefix", 1.0)):
            for task in ("continuation", "word_order"):
                score = true_score(r, a) + shift + rng.normal(0, noise)
                evals.append(
                    {
                        "run_key": key,
                        "task": task,
                        "mode": mode,
                        "normalized_score": score,
                        "stderr": 2.0,
                        "normalized_score_per_token": score - 1,
                        "stderr_per_token": 2.0,
                    }
                )
    runs.append({**runs[0], "run_key": "broken", "status": "failed"})  # failed runs are left out
    return SweepResults(
        runs=pd.DataFrame(runs), curves=pd.DataFrame(curves), evals=pd.DataFrame(evals)
    )


# -- a third objective ---------------------------------------------------------------------
# (torch is imported inside: the helpers above serve torch-free tests too)
def fixed_rate_mlm():
    """A test-only third objective, "mlm": BERT-style masking at a fixed rate of 0.15 (no 1/t
    weight), read in the next-token layout, bidirectional; a new instance to `register`."""
    import torch

    from dualsweep.objectives.losses import mask_tokens, maskable_positions
    from dualsweep.objectives.registry import Draw, Objective
    from dualsweep.schema import ObjectiveColumns

    class FixedRateMLM(Objective):
        """Masks each maskable token with probability 0.15 and predicts it (next-token layout,
        bidirectional attention); a row's loss is its masked targets' NLL sum / 0.15, a
        per-token mean like the other objectives'."""

        name = "mlm"
        bidirectional = True
        columns = ObjectiveColumns("mlm", bound=False, estimated=True)
        rate = 0.15

        def draw(
            self, tokens, rows, special, generator, *, stratified, min_rate, common=False
        ) -> Draw:
            # With `common`, every row draws (so a row's masks do not depend on which rows train
            # on this objective) and the other rows are left as they were.
            drawn = torch.ones(len(tokens), dtype=torch.bool, device=tokens.device)
            chosen = drawn if common else rows.device
            maskable = maskable_positions(tokens, special) & chosen[:, None]
            inputs, masked = mask_tokens(
                tokens,
                torch.full((len(tokens),), self.rate, device=tokens.device),
                maskable,
                special.mask,
                generator,
            )
            masked = masked & rows.device[:, None]
            inputs = torch.where(masked, inputs, tokens)
            rates = torch.where(rows.device, self.rate, 1.0)
            return Draw(inputs=inputs, masked=masked, rates=rates)

        def sequence_sums(self, nll, targets, masked, rates):
            return (nll * (masked[:, 1:] & targets)).sum(dim=1) / self.rate

    return FixedRateMLM()
