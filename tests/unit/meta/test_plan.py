"""`atoll admin plan` (`atoll.meta.plan`): what a drain or a new node would move,
before anything moves."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from atoll.meta.cluster_map import (
    ClusterMap,
    DeviceRecord,
    NodeRecord,
    PgTable,
    PoolRecord,
    placement_devices,
)
from atoll.meta.plan import plan_add_node, plan_drain
from atoll.placement import place_pool

GIB = 1 << 30


def cluster(hosts: int = 4) -> ClusterMap:
    nodes = {h: NodeRecord(h, f"h:{h}", "", "", "", "up", h <= 3) for h in range(1, hosts + 1)}
    devices = {
        2 * (h - 1) + d + 1: DeviceRecord(2 * (h - 1) + d + 1, h, f"/n{h}/d{d}", 100 * GIB, "in")
        for h in range(1, hosts + 1)
        for d in range(2)
    }
    pool = PoolRecord(1, "standard", 2, 1, 64, "host", "STANDARD")
    m = ClusterMap(
        cluster_id="c",
        epoch=5,
        nodes=nodes,
        devices=devices,
        pools={1: pool},
        next_device_id=len(devices) + 1,
    )
    table = place_pool(pool.as_placement(), placement_devices(m))
    return replace(m, pg_tables={1: PgTable(1, 5, "d", tuple(tuple(pg) for pg in table))})


def test_a_drain_moves_every_shard_of_the_node_and_few_others() -> None:
    m = cluster()
    used = dict.fromkeys(m.devices, 64 * (1 << 20))
    plan = plan_drain(m, 4, used)
    on_node_4 = {7, 8}
    held = [
        (pg, i)
        for pg, members in enumerate(m.pg_tables[1].members)
        for i, d in enumerate(members)
        if d in on_node_4
    ]
    moved = {(move.pg, move.position) for move in plan.moves}
    assert held and set(held) <= moved  # every shard of the node moves
    assert len(moved) <= 1.25 * len(held)  # and a few others, for balance
    assert all(m.devices[move.target].node_id != 4 for move in plan.moves)
    # Each moved shard weighs its source device's used bytes over the shards it holds.
    cells = Counter(d for pg in m.pg_tables[1].members for d in pg)
    assert plan.bytes == sum(used[mv.source] // cells[mv.source] for mv in plan.moves)
    assert 4 not in plan.receiving_nodes and plan.receiving_nodes
    assert plan.eta_s(1 << 20) == plan.bytes / ((1 << 20) * len(plan.receiving_nodes))
    assert plan.eta_s(0) is None
    # Nothing was changed by planning.
    assert m.nodes[4].state == "up"


def test_a_new_node_takes_about_its_share_of_the_shards() -> None:
    m = cluster()
    plan = plan_add_node(m, 2, 100 * GIB, dict.fromkeys(m.devices, 0))
    assert plan.what.startswith("add node 5")
    to_new = [move for move in plan.moves if move.target not in m.devices]
    cells = sum(len(pg) for pg in m.pg_tables[1].members)
    share = cells * 2 / 10  # 2 of 10 devices
    assert 0.8 * share <= len(to_new) <= 1.2 * share
    assert len(plan.moves) <= 1.25 * len(to_new)
    assert 5 in plan.receiving_nodes
    assert (plan.bytes == 0 and plan.eta_s(1 << 20) == 0.0) or plan.bytes == 0
