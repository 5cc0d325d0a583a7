"""A Raft group that loses a voter for good gets a new one on a live node (issue 6 §1,
"Raft groups too"), on real node processes: a 3-node dev cluster (every node a voter
of the meta group and of the KV region) with a fourth node added by `atoll dev
add-node`. `kill -9` of a founding node: once it is out, each group's leader adds
node 4 as a learner, promotes it once caught up and removes the dead voter, and the
map records the new replicas; node 4 restarts as a voter. Then `kill -9` of a second
founding node: with the old
voters that would leave one live voter of three (no majority); with the replacement
the groups still commit (the meta leader marks the node down, a KV write commits)
and every acknowledged object reads back."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from dev_cluster import Workload, node_state, start, stop

pytestmark = pytest.mark.timeout(600)


def groups(doc: dict[str, Any]) -> list[tuple[list[int], list[int], list[int]]]:
    return [(g["voters"], g["learners"], g["recorded"]) for g in doc["raft_groups"]]


def test_a_dead_voter_is_replaced_by_a_learner_on_a_live_node(tmp_path: Path) -> None:
    cluster = start(tmp_path / "dev", nodes=3)
    try:
        work = Workload(cluster, via=(1, 3), seed=66)
        work.create_buckets()
        work.write(8, "before")
        put = cluster.cli("kv", "put", "alpha", "one")
        assert put.returncode == 0, put.stdout + put.stderr
        added = cluster.cli("dev", "add-node", "--dir", str(cluster.root), with_cluster=False)
        assert added.returncode == 0 and "node 4 added" in added.stdout, added
        cluster.document = json.loads((cluster.root / "cluster.json").read_text())
        doc = cluster.wait_for(
            "node 4 up, every PG healthy",
            lambda d: node_state(d, 4) == "up" and d["degraded_pgs"] == 0,
            240,
        )
        # Node 4 joined as a data node: the groups are the founders'.
        assert groups(doc) == [([1, 2, 3], [], [1, 2, 3])] * 2, doc["raft_groups"]

        cluster.signal(2, signal.SIGKILL)
        doc = cluster.wait_for(
            "node 2 out; node 4 a voter of both groups in its place, recorded in the map",
            lambda d: node_state(d, 2) == "out" and groups(d) == [([1, 3, 4], [], [1, 3, 4])] * 2,
            120,
        )
        doc = cluster.wait_for(
            "every PG verified healthy again",
            lambda d: d["degraded_pgs"] == 0 and d["bytes_to_repair"] == 0,
            240,
        )

        # Node 4 restarts: it opens its groups from its stored log, as a voter, at once.
        for verb, state in (("stop-node", "down"), ("start-node", "up")):
            done = cluster.cli("dev", verb, "4", "--dir", str(cluster.root), with_cluster=False)
            assert done.returncode == 0, done.stdout + done.stderr
            cluster.wait_for(f"node 4 {state}", lambda d, s=state: node_state(d, 4) == s, 60)
        cluster.document = json.loads((cluster.root / "cluster.json").read_text())

        # A second founder dies: voters 1 and 4 are a majority of {1, 3, 4}.
        cluster.signal(3, signal.SIGKILL)
        cluster.wait_for("node 3 marked down", lambda d: node_state(d, 3) == "down", 60)
        put = cluster.cli("kv", "put", "beta", "two")
        assert put.returncode == 0, put.stdout + put.stderr
        for key, value in (("alpha", "one"), ("beta", "two")):
            got = cluster.cli("kv", "get", key)
            assert got.returncode == 0 and got.stdout.strip() == value, got
        for via in (1, 4):
            work.verify(via)
    finally:
        stop(cluster)
