"""A node added to a running 4-node dev cluster during the workload, then drained
(issue 6 §1, §2, §4): `atoll dev add-node` starts it, it joins, placement gives it PGs
in a new epoch, their new members rebuild (backfill) until every PG is verified
healthy, and the old copies are removed only after that. Then `atoll admin plan
drain`, `atoll admin drain` during the workload until its devices are empty, and
`atoll admin decommission`. Every acknowledged object reads back after each step.
Also `atoll dev stop-node` / `start-node`, with cluster.json following."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from dev_cluster import Workload, node_state, start, stop

pytestmark = pytest.mark.timeout(600)


def test_an_added_node_takes_pgs_by_backfill_and_stale_copies_go(tmp_path: Path) -> None:
    cluster = start(tmp_path / "dev")
    try:
        work = Workload(cluster, via=(1, 2, 3, 4), seed=64)
        work.create_buckets()
        work.write(16, "before")
        doc = cluster.wait_for("a healthy cluster", lambda d: d["degraded_pgs"] == 0, 120)
        stored = sum(d["used_bytes"] for d in doc["devices"])

        writer = work.in_background(16, "during")
        added = cluster.cli("dev", "add-node", "--dir", str(cluster.root), with_cluster=False)
        assert added.returncode == 0, added.stdout + added.stderr
        assert "node 5 added" in added.stdout
        cluster.document = json.loads((cluster.root / "cluster.json").read_text())
        assert [n["id"] for n in cluster.document["nodes"]] == [1, 2, 3, 4, 5]
        assert cluster.node(5)["member"] is False and cluster.node(5)["pid"] > 0
        writer.join(300)
        assert not writer.is_alive() and work.failed == 0

        doc = cluster.wait_for(
            "node 5's devices in service and every PG verified healthy",
            lambda d: node_state(d, 5) == "up" and d["degraded_pgs"] == 0,
            240,
        )
        on_new = [d for d in doc["devices"] if d["node"] == 5]
        assert len(on_new) == 2 and all(d["used_bytes"] > 0 for d in on_new), on_new
        rebuilt = sum(n["repair"]["repaired_bytes"] for n in doc["nodes"] if n["repair"])
        assert 0 < rebuilt < stored, (rebuilt, stored)
        # Old copies go once the new members hold theirs (a pass after the PGs are healthy).
        doc = cluster.wait_for(
            "stale copies removed",
            lambda d: sum(n["repair"]["stale_removed"] for n in d["nodes"] if n["repair"]) > 0,
            60,
        )
        for via in (1, 5):
            work.verify(via)

        # Drain node 5 during the workload: plan it, drain it, decommission it once empty.
        planned = cluster.cli("admin", "plan", "drain", "5")
        assert planned.returncode == 0 and "plan: drain node 5" in planned.stdout, planned
        assert "shards move" in planned.stdout and "to rebuild on nodes" in planned.stdout
        refused = cluster.cli("admin", "decommission", "5")
        assert refused.returncode != 0 and "drain it first" in refused.stdout, refused
        writer = work.in_background(8, "draining")
        drained = cluster.cli("admin", "drain", "5")
        assert drained.returncode == 0 and "draining" in drained.stdout, drained
        writer.join(300)
        assert not writer.is_alive() and work.failed == 0
        doc = cluster.wait_for(
            "node 5 drained: every PG healthy elsewhere, its devices empty",
            lambda d: (
                d["degraded_pgs"] == 0
                and all(x["used_bytes"] == 0 for x in d["devices"] if x["node"] == 5)
            ),
            240,
        )
        assert node_state(doc, 5) == "draining"
        member = cluster.cli("admin", "decommission", "1")
        assert member.returncode != 0 and "replica of Raft group" in member.stdout, member
        gone = cluster.cli("admin", "decommission", "5")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        doc = cluster.status()
        assert [n["id"] for n in doc["nodes"]] == [1, 2, 3, 4]
        assert not [d for d in doc["devices"] if d["node"] == 5]
        for via in (1, 3):
            work.verify(via)

        # stop-node / start-node: cluster.json follows, the node goes down and comes back.
        stopped = cluster.cli(
            "dev", "stop-node", "2", "--dir", str(cluster.root), with_cluster=False
        )
        assert stopped.returncode == 0 and "node 2 stopped" in stopped.stdout, stopped
        assert json.loads((cluster.root / "cluster.json").read_text())["nodes"][1]["pid"] is None
        cluster.wait_for("node 2 down", lambda d: node_state(d, 2) == "down", 30)
        again = cluster.cli("dev", "stop-node", "2", "--dir", str(cluster.root), with_cluster=False)
        assert again.returncode != 0 and "not running" in again.stderr, again
        started = cluster.cli(
            "dev", "start-node", "2", "--dir", str(cluster.root), with_cluster=False
        )
        assert started.returncode == 0 and "node 2 started" in started.stdout, started
        cluster.document = json.loads((cluster.root / "cluster.json").read_text())
        assert cluster.node(2)["pid"] > 0
        began = time.monotonic()
        cluster.wait_for(
            "node 2 up and every PG healthy",
            lambda d: node_state(d, 2) == "up" and d["degraded_pgs"] == 0,
            120,
        )
        assert time.monotonic() - began < 120
        work.verify(2)
    finally:
        stop(cluster)
