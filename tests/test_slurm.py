"""The SLURM template (sweeps/slurm/ray-sweep.sbatch) without SLURM: its syntax, and the
commands it runs, with `scontrol`, `srun`, `ray` and `make` replaced by stubs that log them."""

from __future__ import annotations

import os
import subprocess
import time

from .helpers import REPO

SBATCH = REPO / "sweeps" / "slurm" / "ray-sweep.sbatch"

STUBS = {
    "scontrol": 'printf "node1\\nnode2\\nnode3\\n"',
    # `hostname --ip-address` through srun gives the head's address; other steps are logged.
    "srun": 'case "$*" in *hostname*) echo "10.1.2.3 fe80::1";; *) echo "srun $*" >> "$LOG";; esac',
    "ray": 'echo "ray $*" >> "$LOG"',
    "make": 'echo "make $* RAY_ADDRESS=$RAY_ADDRESS RAY_AUTH_MODE=$RAY_AUTH_MODE" >> "$LOG"',
}


def test_the_sbatch_template_parses():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)


def test_the_sbatch_template_starts_ray_on_every_node_then_the_sweep(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "commands.log"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LOG": str(log),
        "HOME": str(tmp_path),  # no token yet: the template generates one
        "RAY": str(bin_dir / "ray"),
        "SLURM_JOB_NODELIST": "node[1-3]",
        "SLURM_CPUS_PER_TASK": "16",
        "SLURM_GPUS_PER_NODE": "h100:8",
    }
    env.pop("RAY_AUTH_TOKEN", None)
    done = subprocess.run(
        ["bash", str(SBATCH), "tiny", "/shared/runs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    ray = bin_dir / "ray"
    expected = {
        "ray get-auth-token --generate",
        f"srun --nodes=1 --ntasks=1 -w node1 {ray} start --head --node-ip-address=10.1.2.3 "
        "--port=6379 --num-cpus=16 --num-gpus=8 --include-dashboard=false --block",
        "ray status --address=10.1.2.3:6379",
        *(
            f"srun --nodes=1 --ntasks=1 -w {node} {ray} start --address=10.1.2.3:6379 "
            "--num-cpus=16 --num-gpus=8 --block"
            for node in ("node2", "node3")
        ),
        "make sweep SWEEP=tiny STORAGE=/shared/runs RAY_ADDRESS=10.1.2.3:6379 RAY_AUTH_MODE=token",
    }
    deadline = time.monotonic() + 10  # the `ray start` steps run in the background
    while not expected <= set(log.read_text().splitlines()) and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = log.read_text().splitlines()
    assert expected <= set(lines), lines
    assert len(lines) == len(expected)  # nothing else: one head, one worker per other node
