"""`atoll status --json`'s document (`status_document`): nodes with their latest
heartbeat figures, devices, pools, degraded PGs, and the degraded-read counter summed
over the nodes' heartbeats (issue 5 §5)."""

from __future__ import annotations

from atoll.meta.cluster_map import ClusterMap, Credentials, PoolRecord
from atoll.meta.commands import Bootstrap, RegisterDevice, RegisterNode, apply_command
from atoll.meta.service import NodeHealth, status_document


def booted() -> ClusterMap:
    boot = Bootstrap(
        "c1",
        1,
        Credentials("a", "s"),
        (PoolRecord(0, "standard", 1, 0, 4, "host", "STANDARD"),),
        (1,),
    )
    m, _ = apply_command(ClusterMap(), boot)
    for node in (1, 2, 3):
        m, _ = apply_command(m, RegisterNode(node, f"127.0.0.1:{node}", "", "", "", node == 1))
        m, _ = apply_command(m, RegisterDevice(node, "/d0", 1 << 30))
    return m


def test_degraded_reads_are_summed_over_the_heartbeats_and_shown_per_node() -> None:
    m = booted()
    health = {
        1: NodeHealth(10.0, m.epoch, 0.5, {1: (100, 1 << 30)}, degraded_reads=7),
        2: NodeHealth(9.0, m.epoch, 0.2, {}, degraded_reads=0),
        3: NodeHealth(8.0, m.epoch, 0.1, {}, degraded_reads=5),
    }
    doc = status_document(m, health, now=11.0)
    assert doc["degraded_reads"] == 12
    assert [n["degraded_reads"] for n in doc["nodes"]] == [7, 0, 5]
    assert [n["heartbeat_age_s"] for n in doc["nodes"]] == [1.0, 2.0, 3.0]
    assert doc["devices"][0]["used_bytes"] == 100


def test_nodes_never_heard_from_count_no_degraded_reads() -> None:
    doc = status_document(booted(), {}, now=1.0)
    assert doc["degraded_reads"] == 0
    assert all(n["degraded_reads"] is None for n in doc["nodes"])
