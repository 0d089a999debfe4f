"""Owns a test's local Ray cluster in a process of its own, so that the drivers under test
(pytest itself, or `dualsweep sweep` subprocesses) only ever join it.

    python tests/ray_cluster_owner.py [HEAD_CPUS [WORKER_CPUS ...]]

starts a head node with HEAD_CPUS CPUs (default 2) and one more raylet per WORKER_CPUS, all
on this machine (Ray's `cluster_utils.Cluster`: each node its own CPU count and node id).
It prints the cluster's address, then a JSON line of the node ids (head first); a line
`remove I` on stdin kills worker node I at once (as a machine failure would) and is
answered `removed I`; closing stdin shuts the cluster down. Run by the `ray_cluster`
fixture (tests/conftest.py) and the multi-node test, with token auth on
(RAY_AUTH_MODE=token and a token in ~/.ray), as a plain `ray.init()` starts a local cluster.
"""

import json
import sys

from ray.cluster_utils import Cluster

head_cpus, *worker_cpus = [int(n) for n in sys.argv[1:]] or [2]
cluster = Cluster(
    initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False}
)
workers = [cluster.add_node(num_cpus=n) for n in worker_cpus]
print(cluster.address, flush=True)
print(json.dumps([node.node_id for node in [cluster.head_node, *workers]]), flush=True)
try:
    for line in sys.stdin:
        command, _, index = line.strip().partition(" ")
        if command == "remove":
            cluster.remove_node(workers[int(index)], allow_graceful=False)
            print(f"removed {index}", flush=True)
finally:
    cluster.shutdown()
