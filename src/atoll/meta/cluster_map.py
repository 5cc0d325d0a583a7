"""The cluster map: what the meta group (Raft group 0) agrees on, and how each
committed command changes it.

Pure: no I/O, no clock, no randomness (a command carries any time or random value it
needs, chosen by the proposer). Owns the records (`NodeRecord`, `DeviceRecord`,
`PoolRecord`, `PgTable`, `RegionRecord`, `BucketRecord`, `ClusterMap`), the
transition `apply_command(map, command) -> (map, result)`, and the map's encoding
(the meta state machine's persisted record and snapshot, and what the watch stream
sends): docs/formats/meta.md §2.

Every command that changes the map raises its `epoch` by one; a refused command
changes nothing (the refusal is its result, the same on every replica). A map is
immutable: a transition returns a new one, so a reader holding the old map sees a
consistent picture.

Placement. A pool's PG table is computed by the meta leader (`atoll.placement`) from
the devices in service and committed with `SetPgTable`, stamped with the digest of the
placement inputs it was computed from (`placement_digest`). A table whose digest no
longer matches the map is stale; the leader computes a new one. A `SetPgTable` whose
digest does not match when it is applied was computed from an older map and is
refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from atoll.placement import Device, Pool

# Node states (issue 4 §1; what each means for data: shared/DESIGN.md §8).
NODE_UP = "up"
NODE_DOWN = "down"  # silent past down_after_s: reads avoid it, it keeps its PGs
NODE_OUT = "out"  # left the PG tables
NODE_DRAINING = "draining"
NODE_STATES = (NODE_UP, NODE_DOWN, NODE_OUT, NODE_DRAINING)

DEVICE_IN = "in"
DEVICE_FAILED = "failed"  # I/O errors: takes no data, its shards are to be rebuilt
DEVICE_OUT = "out"
DEVICE_STATES = (DEVICE_IN, DEVICE_FAILED, DEVICE_OUT)

FAILURE_DOMAINS = ("zone", "host", "device")

# The most cells (PGs x shards per PG) of one pool's PG table: bounds the map's size
# (about 6 bytes a cell encoded) and the leader's placement time.
PG_CELLS_MAX = 1 << 18

# Capacity to placement weight: weights are in TiB (any unit would do; it is only
# ever compared with other weights).
WEIGHT_UNIT_BYTES = 1 << 40

META_GROUP = 0  # the Raft group id of the meta group; regions are 1..n


@dataclass(frozen=True)
class NodeRecord:
    id: int
    rpc: str  # atoll.rpc address, host:port
    kv: str  # public gRPC KV address ("" if none)
    zone: str
    rack: str
    state: str
    # One of the initial members (the founders): the first voters of the meta group
    # and of the KV region. Fixed for the node's life; which nodes hold the groups'
    # replicas now is `ClusterMap.meta_replicas` and the regions' `replicas`.
    member: bool


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    node_id: int
    path: str
    capacity_bytes: int
    state: str

    @property
    def weight(self) -> float:
        return self.capacity_bytes / WEIGHT_UNIT_BYTES


@dataclass(frozen=True)
class PoolRecord:
    id: int
    name: str
    k: int
    m: int
    pg_count: int
    failure_domain: str
    storage_class: str

    def as_placement(self) -> Pool:
        return Pool(
            id=self.id,
            name=self.name,
            k=self.k,
            m=self.m,
            pg_count=self.pg_count,
            failure_domain=self.failure_domain,
            storage_class=self.storage_class,
        )


@dataclass(frozen=True)
class PgTable:
    pool_id: int
    epoch: int  # the map epoch that committed it
    digest: str  # placement_digest of the inputs it was computed from
    members: tuple[tuple[int, ...], ...]  # pg -> device ids, shard i on members[i]


@dataclass(frozen=True)
class RegionRecord:
    id: int
    start: bytes
    end: bytes  # b"" = the end of the key space
    replicas: tuple[int, ...]


@dataclass(frozen=True)
class BucketRecord:
    name: str
    pool: str
    owner: str
    created_ms: int


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class ClusterMap:
    cluster_id: str = ""  # "" until bootstrapped
    epoch: int = 0
    created_ms: int = 0
    root: Credentials | None = None
    nodes: dict[int, NodeRecord] = field(default_factory=dict)
    devices: dict[int, DeviceRecord] = field(default_factory=dict)
    pools: dict[int, PoolRecord] = field(default_factory=dict)
    pg_tables: dict[int, PgTable] = field(default_factory=dict)
    regions: dict[int, RegionRecord] = field(default_factory=dict)
    buckets: dict[str, BucketRecord] = field(default_factory=dict)
    next_device_id: int = 1
    next_pool_id: int = 1
    # The first configuration of every Raft group (the bootstrap's members): a node
    # that comes to hold a replica later starts its log from it, as the founders did.
    founders: tuple[int, ...] = ()
    # The meta group's replicas (voters and learners) as its leader last recorded them.
    meta_replicas: tuple[int, ...] = ()
    # Per Raft group, the log index of the configuration its replicas were recorded
    # from: a record from an older configuration (a deposed leader's) is refused.
    replicas_index: dict[int, int] = field(default_factory=dict)

    @property
    def bootstrapped(self) -> bool:
        return bool(self.cluster_id)

    def pool_named(self, name: str) -> PoolRecord | None:
        for pool in self.pools.values():
            if pool.name == name:
                return pool
        return None

    def replicas_of(self, group_id: int) -> tuple[int, ...]:
        """The nodes holding a replica of Raft group `group_id` (0: the meta group; a
        region otherwise), as recorded; () for an unknown group."""
        if group_id == META_GROUP:
            return self.meta_replicas
        region = self.regions.get(group_id)
        return region.replicas if region is not None else ()

    def rpc_addresses(self, node_ids: Iterable[int]) -> dict[int, str]:
        """The atoll.rpc addresses of those of `node_ids` in the map."""
        return {i: self.nodes[i].rpc for i in node_ids if i in self.nodes}

    def kv_addresses(self) -> dict[int, str]:
        """The public KV addresses of the nodes that have one."""
        return {n.id: n.kv for n in self.nodes.values() if n.kv}

    def devices_of(self, node_id: int) -> list[DeviceRecord]:
        return sorted(
            (d for d in self.devices.values() if d.node_id == node_id), key=lambda d: d.id
        )

    def stale_pools(self) -> list[PoolRecord]:
        """Pools whose PG table is missing or was computed from other inputs, and
        that have enough devices in service to place."""
        out = []
        for pool in sorted(self.pools.values(), key=lambda p: p.id):
            table = self.pg_tables.get(pool.id)
            if table is not None and table.digest == placement_digest(self, pool):
                continue
            if len(placement_devices(self)) >= pool.k + pool.m:
                out.append(pool)
        return out


def in_service(m: ClusterMap, device: DeviceRecord) -> bool:
    """Whether placement puts PG shards on a device: its own state is `in` and its node
    is neither out nor draining (a down node keeps its PGs: its shards are degraded,
    not moved; a draining node's PGs move away while it stays readable)."""
    node = m.nodes.get(device.node_id)
    return (
        device.state == DEVICE_IN
        and node is not None
        and node.state not in (NODE_OUT, NODE_DRAINING)
    )


def placement_devices(m: ClusterMap) -> list[Device]:
    """The devices placement may use, as `atoll.placement` takes them."""
    out = []
    for d in sorted(m.devices.values(), key=lambda d: d.id):
        if not in_service(m, d):
            continue
        node = m.nodes[d.node_id]
        out.append(
            Device(
                id=d.id,
                node_id=d.node_id,
                zone=node.zone,
                rack=node.rack,
                weight=d.weight,
                in_service=True,
            )
        )
    return out


def placement_digest(m: ClusterMap, pool: PoolRecord) -> str:
    """A digest of everything placement reads for `pool`: equal digests, equal tables."""
    inputs = {
        "pool": pool_to_json(pool),
        "devices": [
            [d.id, d.node_id, d.zone, d.rack, repr(d.weight)] for d in placement_devices(m)
        ],
    }
    return hashlib.sha256(canonical_json(inputs)).hexdigest()[:32]


# -- transitions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """A command's outcome: `ok`, the map epoch after it, a refusal reason, and the
    id the command allocated (a device id, a pool id), if any."""

    ok: bool
    epoch: int
    reason: str = ""
    allocated: int = 0


def refuse(m: ClusterMap, reason: str) -> tuple[ClusterMap, Applied]:
    return m, Applied(False, m.epoch, reason)


def changed(m: ClusterMap, allocated: int = 0, **fields: Any) -> tuple[ClusterMap, Applied]:
    new = replace(m, epoch=m.epoch + 1, **fields)
    return new, Applied(True, new.epoch, allocated=allocated)


def with_item(mapping: dict[Any, Any], key: Any, value: Any) -> dict[Any, Any]:
    out = dict(mapping)
    out[key] = value
    return out


def check_pool(pool: PoolRecord) -> str:
    """Why a pool definition is invalid, or ""."""
    if not pool.name or len(pool.name) > 63:
        return "a pool name must be 1..63 characters"
    if pool.k < 1 or pool.m < 0 or pool.k + pool.m > 32:
        return f"k+m = {pool.k}+{pool.m}: need k >= 1, m >= 0, k+m <= 32"
    if pool.pg_count < 1 or pool.pg_count & (pool.pg_count - 1) or pool.pg_count > 1 << 16:
        return f"pg_count {pool.pg_count} must be a power of two up to 65536"
    if pool.pg_count * (pool.k + pool.m) > PG_CELLS_MAX:
        return f"{pool.pg_count} PGs x {pool.k + pool.m} shards is over {PG_CELLS_MAX} table cells"
    if pool.failure_domain not in FAILURE_DOMAINS:
        return f"failure domain {pool.failure_domain!r} is not one of {FAILURE_DOMAINS}"
    if not pool.storage_class:
        return "a pool needs a storage-class name"
    return ""


# -- encoding (docs/formats/meta.md §2) ---------------------------------------------


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def pool_to_json(p: PoolRecord) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "k": p.k,
        "m": p.m,
        "pg_count": p.pg_count,
        "failure_domain": p.failure_domain,
        "storage_class": p.storage_class,
    }


def pool_from_json(d: dict[str, Any]) -> PoolRecord:
    return PoolRecord(
        id=int(d["id"]),
        name=str(d["name"]),
        k=int(d["k"]),
        m=int(d["m"]),
        pg_count=int(d["pg_count"]),
        failure_domain=str(d["failure_domain"]),
        storage_class=str(d["storage_class"]),
    )


def map_to_json(m: ClusterMap) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cluster_id": m.cluster_id,
        "epoch": m.epoch,
        "created_ms": m.created_ms,
        "root": None if m.root is None else [m.root.access_key, m.root.secret_key],
        "nodes": [
            [n.id, n.rpc, n.kv, n.zone, n.rack, n.state, n.member]
            for n in sorted(m.nodes.values(), key=lambda n: n.id)
        ],
        "devices": [
            [d.id, d.node_id, d.path, d.capacity_bytes, d.state]
            for d in sorted(m.devices.values(), key=lambda d: d.id)
        ],
        "pools": [pool_to_json(p) for p in sorted(m.pools.values(), key=lambda p: p.id)],
        "pg_tables": [
            [t.pool_id, t.epoch, t.digest, [list(pg) for pg in t.members]]
            for t in sorted(m.pg_tables.values(), key=lambda t: t.pool_id)
        ],
        "regions": [
            [r.id, r.start.hex(), r.end.hex(), list(r.replicas)]
            for r in sorted(m.regions.values(), key=lambda r: r.id)
        ],
        "buckets": [
            [b.name, b.pool, b.owner, b.created_ms]
            for b in sorted(m.buckets.values(), key=lambda b: b.name)
        ],
        "next_device_id": m.next_device_id,
        "next_pool_id": m.next_pool_id,
    }
    # Written only when they differ from what a reader derives without them (maps
    # from before these keys existed): such maps keep their exact bytes.
    founders = tuple(sorted(n.id for n in m.nodes.values() if n.member))
    if m.founders != founders:
        out["founders"] = list(m.founders)
    if m.meta_replicas != m.founders:
        out["meta_replicas"] = list(m.meta_replicas)
    if m.replicas_index:
        out["replicas_index"] = [[g, i] for g, i in sorted(m.replicas_index.items())]
    return out


def map_from_json(d: dict[str, Any]) -> ClusterMap:
    root = d["root"]
    # Maps written before the replicas were recorded: the founders are the members,
    # and they still hold the meta group.
    members = sorted(int(n[0]) for n in d["nodes"] if bool(n[6]))
    founders = tuple(int(i) for i in d.get("founders", members))
    return ClusterMap(
        cluster_id=str(d["cluster_id"]),
        epoch=int(d["epoch"]),
        created_ms=int(d["created_ms"]),
        root=None if root is None else Credentials(str(root[0]), str(root[1])),
        nodes={
            int(n[0]): NodeRecord(
                int(n[0]), str(n[1]), str(n[2]), str(n[3]), str(n[4]), str(n[5]), bool(n[6])
            )
            for n in d["nodes"]
        },
        devices={
            int(x[0]): DeviceRecord(int(x[0]), int(x[1]), str(x[2]), int(x[3]), str(x[4]))
            for x in d["devices"]
        },
        pools={int(p["id"]): pool_from_json(p) for p in d["pools"]},
        pg_tables={
            int(t[0]): PgTable(
                int(t[0]), int(t[1]), str(t[2]), tuple(tuple(int(i) for i in pg) for pg in t[3])
            )
            for t in d["pg_tables"]
        },
        regions={
            int(r[0]): RegionRecord(
                int(r[0]), bytes.fromhex(r[1]), bytes.fromhex(r[2]), tuple(int(i) for i in r[3])
            )
            for r in d["regions"]
        },
        buckets={
            str(b[0]): BucketRecord(str(b[0]), str(b[1]), str(b[2]), int(b[3]))
            for b in d["buckets"]
        },
        next_device_id=int(d["next_device_id"]),
        next_pool_id=int(d["next_pool_id"]),
        founders=founders,
        meta_replicas=tuple(int(i) for i in d.get("meta_replicas", founders)),
        replicas_index={int(g): int(i) for g, i in d.get("replicas_index", [])},
    )


def canonical_map_bytes(m: ClusterMap) -> bytes:
    return canonical_json(map_to_json(m))
