"""Owns the test session's shared local Ray cluster: prints its address, stops it when stdin
closes. Run by the `ray_cluster` fixture (tests/conftest.py) in a process of its own, so that
the drivers under test (pytest itself, or `dualsweep sweep` subprocesses) only ever join it.
The fixture starts it with token auth on (RAY_AUTH_MODE=token and a token in ~/.ray), as a
plain `ray.init()` starts a local cluster.
"""

import sys

from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
print(cluster.address, flush=True)
try:
    sys.stdin.read()
finally:
    cluster.shutdown()
