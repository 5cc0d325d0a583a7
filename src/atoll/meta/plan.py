"""What a change of the cluster would move, before anything moves (`atoll admin plan`,
issue 6 §2). Pure: the map and the devices' used bytes in, a plan out.

The plan computes the PG tables the meta leader would commit after the change (the
same `atoll.placement` calls, keeping positions stable), compares them with the
current ones cell by cell, and estimates the bytes of each moved cell as its source
device's used bytes over the cells it holds (every cell of a device weighs the same:
PGs are about equal in size when objects are spread by hash). The time is the bytes
over the receiving nodes' repair rate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from atoll.meta.cluster_map import (
    DEVICE_IN,
    NODE_DRAINING,
    NODE_UP,
    ClusterMap,
    DeviceRecord,
    NodeRecord,
    placement_devices,
)
from atoll.placement import place_pool


@dataclass(frozen=True)
class Move:
    pool: str
    pg: int
    position: int
    source: int  # device
    target: int  # device
    bytes: int  # estimated


@dataclass(frozen=True)
class PoolChange:
    pool: str
    pgs: int
    pgs_changed: int
    cells_moved: int


@dataclass(frozen=True)
class Plan:
    what: str
    moves: tuple[Move, ...]
    pools: tuple[PoolChange, ...]
    receiving_nodes: tuple[int, ...]

    @property
    def bytes(self) -> int:
        return sum(move.bytes for move in self.moves)

    def eta_s(self, bytes_per_s_per_node: float) -> float | None:
        """Seconds to rebuild it all at that rate on every receiving node (None if
        the rate is 0: no limit, no estimate)."""
        if not self.moves:
            return 0.0
        if bytes_per_s_per_node <= 0:
            return None
        return self.bytes / (bytes_per_s_per_node * max(1, len(self.receiving_nodes)))


def plan_drain(m: ClusterMap, node_id: int, used: Mapping[int, int]) -> Plan:
    """Draining node `node_id`: its devices leave every PG table."""
    node = m.nodes.get(node_id)
    if node is None:
        raise ValueError(f"no node {node_id}")
    after = replace(m, nodes={**m.nodes, node_id: replace(node, state=NODE_DRAINING)})
    return _plan(f"drain node {node_id}", m, after, used)


def plan_add_node(
    m: ClusterMap, devices: int, capacity_bytes: int, used: Mapping[int, int], zone: str = ""
) -> Plan:
    """Adding a node with `devices` devices of `capacity_bytes` each (in `zone`)."""
    if devices < 1 or capacity_bytes < 1:
        raise ValueError("a new node needs at least one device with a capacity")
    node_id = max(m.nodes, default=0) + 1
    node = NodeRecord(node_id, "", "", zone, "", NODE_UP, False)
    added = {
        m.next_device_id + i: DeviceRecord(
            m.next_device_id + i, node_id, f"new-{i}", capacity_bytes, DEVICE_IN
        )
        for i in range(devices)
    }
    after = replace(
        m,
        nodes={**m.nodes, node_id: node},
        devices={**m.devices, **added},
        next_device_id=m.next_device_id + devices,
    )
    return _plan(f"add node {node_id} ({devices} devices)", m, after, used)


def _plan(what: str, before: ClusterMap, after: ClusterMap, used: Mapping[int, int]) -> Plan:
    cells = Counter(d for t in before.pg_tables.values() for pg in t.members for d in pg)
    devices = placement_devices(after)
    moves: list[Move] = []
    pools: list[PoolChange] = []
    for pool_id, pool in sorted(after.pools.items()):
        current = before.pg_tables.get(pool_id)
        if current is None or len(devices) < pool.k + pool.m:
            continue
        table = place_pool(pool.as_placement(), devices, current.members)
        changed_pgs = 0
        moved = 0
        for pg, (old, new) in enumerate(zip(current.members, table, strict=True)):
            changed_here = False
            for position, (source, target) in enumerate(zip(old, new, strict=True)):
                if source == target:
                    continue
                changed_here = True
                moved += 1
                share = used.get(source, 0) // max(1, cells[source])
                moves.append(Move(pool.name, pg, position, source, target, share))
            changed_pgs += changed_here
        pools.append(PoolChange(pool.name, pool.pg_count, changed_pgs, moved))
    receiving = sorted({after.devices[move.target].node_id for move in moves})
    return Plan(what, tuple(moves), tuple(pools), tuple(receiving))
