"""Meta commands: the changes to the cluster map proposed to Raft group 0, their
encoding, and what applying each one does.

Pure: no I/O, no clock, no randomness. The format (docs/formats/meta.md §1) is an
envelope around a canonical JSON body, for commands and for encoded maps alike:

    magic u8 | version u8 | crc32c u32 LE | body (UTF-8 JSON, keys sorted)

with magic `COMMAND_MAGIC` for a command and `MAP_MAGIC` for a whole map (the meta
state machine's record and snapshot, and each message of the watch stream). The
CRC-32C covers the body. Meta commands are rare (joins, state changes, PG tables), so
a readable body is worth more than a compact one. A committed command that fails to
decode is a damaged log or a newer format: the replica must stop, never skip it.

`apply_command(map, command)` is the whole state transition; every replica computes
the same result, refusals included.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from crc32c import crc32c

from atoll.meta.cluster_map import (
    DEVICE_IN,
    DEVICE_STATES,
    META_GROUP,
    NODE_DRAINING,
    NODE_OUT,
    NODE_STATES,
    NODE_UP,
    Applied,
    BucketRecord,
    ClusterMap,
    Credentials,
    DeviceRecord,
    NodeRecord,
    PgTable,
    PoolRecord,
    RegionRecord,
    canonical_json,
    changed,
    check_pool,
    map_from_json,
    map_to_json,
    placement_digest,
    pool_to_json,
    refuse,
    with_item,
)
from atoll.meta.errors import MapFormatError

COMMAND_MAGIC = 0xB0
MAP_MAGIC = 0xB1
FORMAT_VERSION = 1
HEADER = struct.Struct("<BBI")
BODY_BYTES_MAX = 64 << 20  # a map with large PG tables is a few MiB


@dataclass(frozen=True)
class Bootstrap:
    cluster_id: str
    created_ms: int
    root: Credentials
    pools: tuple[PoolRecord, ...]  # ids are assigned in order, from 1
    region_replicas: tuple[int, ...]  # the initial members


@dataclass(frozen=True)
class RegisterNode:
    node_id: int
    rpc: str
    kv: str
    zone: str
    rack: str
    member: bool


@dataclass(frozen=True)
class RegisterDevice:
    node_id: int
    path: str
    capacity_bytes: int


@dataclass(frozen=True)
class SetNodeState:
    node_id: int
    state: str
    # Applied only if the node is still in this state ("" = any): a leader's decision
    # taken on an older map does not undo a newer one.
    expect: str = ""


@dataclass(frozen=True)
class RemoveNode:
    """Decommission: the node and its devices leave the map. Refused while a PG table
    names one of its devices, while it holds a replica of a Raft group, and unless the
    node is draining or out."""

    node_id: int


@dataclass(frozen=True)
class SetReplicas:
    """Record which nodes hold Raft group `group_id`'s replicas (voters and learners):
    proposed by the group's leader after each membership change, and again whenever
    the map disagrees with the configuration it has (a leader that failed between
    the change and this record). Group 0 is the meta group; the others are regions."""

    group_id: int
    replicas: tuple[int, ...]
    conf_index: int  # the log index of the configuration they are read from


@dataclass(frozen=True)
class SetDeviceState:
    device_id: int
    state: str


@dataclass(frozen=True)
class CreatePool:
    pool: PoolRecord  # its id is ignored: the map assigns the next one


@dataclass(frozen=True)
class SetPgTable:
    pool_id: int
    digest: str  # placement_digest of the map it was computed from
    members: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class CreateBucket:
    name: str
    pool: str
    owner: str
    created_ms: int


@dataclass(frozen=True)
class DeleteBucket:
    name: str


Command: TypeAlias = (
    Bootstrap
    | RegisterNode
    | RegisterDevice
    | SetNodeState
    | RemoveNode
    | SetReplicas
    | SetDeviceState
    | CreatePool
    | SetPgTable
    | CreateBucket
    | DeleteBucket
)

# Body kinds: permanent names (docs/formats/meta.md §1.2).
KINDS: dict[type, str] = {
    Bootstrap: "bootstrap",
    RegisterNode: "register_node",
    RegisterDevice: "register_device",
    SetNodeState: "set_node_state",
    RemoveNode: "remove_node",
    SetReplicas: "set_replicas",
    SetDeviceState: "set_device_state",
    CreatePool: "create_pool",
    SetPgTable: "set_pg_table",
    CreateBucket: "create_bucket",
    DeleteBucket: "delete_bucket",
}


# -- encoding -------------------------------------------------------------------------


def _envelope(magic: int, body: bytes) -> bytes:
    return HEADER.pack(magic, FORMAT_VERSION, crc32c(body)) + body


def _open(magic: int, data: bytes, what: str) -> Any:
    if len(data) < HEADER.size:
        raise MapFormatError(f"{what}: {len(data)} bytes, shorter than the header")
    got_magic, version, crc = HEADER.unpack_from(data)
    if got_magic != magic:
        raise MapFormatError(f"{what}: magic {got_magic:#04x}, expected {magic:#04x}")
    if version != FORMAT_VERSION:
        raise MapFormatError(f"{what}: unsupported version {version}")
    body = data[HEADER.size :]
    if len(body) > BODY_BYTES_MAX:
        raise MapFormatError(f"{what}: body of {len(body)} bytes, over {BODY_BYTES_MAX}")
    actual = crc32c(body)
    if actual != crc:
        raise MapFormatError(f"{what}: crc32c {actual:#010x}, header says {crc:#010x}")
    try:
        return json.loads(body)
    except ValueError as err:
        raise MapFormatError(f"{what}: body is not JSON: {err}") from err


def encode_map(m: ClusterMap) -> bytes:
    return _envelope(MAP_MAGIC, canonical_json(map_to_json(m)))


def decode_map(data: bytes) -> ClusterMap:
    try:
        return map_from_json(_open(MAP_MAGIC, data, "cluster map"))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise MapFormatError(f"cluster map: malformed body: {err!r}") from err


def _fields(command: Command) -> dict[str, Any]:
    if isinstance(command, Bootstrap):
        return {
            "cluster_id": command.cluster_id,
            "created_ms": command.created_ms,
            "root": [command.root.access_key, command.root.secret_key],
            "pools": [pool_to_json(p) for p in command.pools],
            "region_replicas": list(command.region_replicas),
        }
    if isinstance(command, CreatePool):
        return {"pool": pool_to_json(command.pool)}
    if isinstance(command, SetReplicas):
        return {
            "group_id": command.group_id,
            "replicas": list(command.replicas),
            "conf_index": command.conf_index,
        }
    if isinstance(command, SetPgTable):
        return {
            "pool_id": command.pool_id,
            "digest": command.digest,
            "members": [list(pg) for pg in command.members],
        }
    return dict(command.__dict__)


def encode_command(command: Command) -> bytes:
    body = {"kind": KINDS[type(command)], **_fields(command)}
    return _envelope(COMMAND_MAGIC, canonical_json(body))


def _typed(body: dict[str, Any], key: str, kind: type) -> Any:
    """`body[key]`, which must be exactly of `kind` (no coercion: a list where an id
    belongs is a malformed command, not something to apply)."""
    value = body[key]
    ok = type(value) is int if kind is int else isinstance(value, kind)
    if not ok:
        raise TypeError(f"{key} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value: int = _typed(body, key, int)
    if value < 0:
        raise ValueError(f"{key} must not be negative")
    return value


def _str(body: dict[str, Any], key: str) -> str:
    value: str = _typed(body, key, str)
    return value


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, list) or any(type(v) is not int or v < 0 for v in values):
        raise TypeError(f"{what} must be a list of non-negative ints")
    return tuple(values)


def _pool(body: Any) -> PoolRecord:
    if not isinstance(body, dict):
        raise TypeError("a pool must be an object")
    return PoolRecord(
        id=_int(body, "id"),
        name=_str(body, "name"),
        k=_int(body, "k"),
        m=_int(body, "m"),
        pg_count=_int(body, "pg_count"),
        failure_domain=_str(body, "failure_domain"),
        storage_class=_str(body, "storage_class"),
    )


def _decode_body(kind: str, body: dict[str, Any]) -> Command:
    if kind == "bootstrap":
        root = body["root"]
        if not (
            isinstance(root, list) and len(root) == 2 and all(isinstance(x, str) for x in root)
        ):
            raise TypeError("root must be [access_key, secret_key]")
        pools = body["pools"]
        if not isinstance(pools, list):
            raise TypeError("pools must be a list")
        return Bootstrap(
            cluster_id=_str(body, "cluster_id"),
            created_ms=_int(body, "created_ms"),
            root=Credentials(root[0], root[1]),
            pools=tuple(_pool(p) for p in pools),
            region_replicas=_ints(body["region_replicas"], "region_replicas"),
        )
    if kind == "register_node":
        return RegisterNode(
            node_id=_int(body, "node_id"),
            rpc=_str(body, "rpc"),
            kv=_str(body, "kv"),
            zone=_str(body, "zone"),
            rack=_str(body, "rack"),
            member=_typed(body, "member", bool),
        )
    if kind == "register_device":
        return RegisterDevice(
            _int(body, "node_id"), _str(body, "path"), _int(body, "capacity_bytes")
        )
    if kind == "set_node_state":
        return SetNodeState(_int(body, "node_id"), _str(body, "state"), _str(body, "expect"))
    if kind == "remove_node":
        return RemoveNode(_int(body, "node_id"))
    if kind == "set_replicas":
        return SetReplicas(
            _int(body, "group_id"), _ints(body["replicas"], "replicas"), _int(body, "conf_index")
        )
    if kind == "set_device_state":
        return SetDeviceState(_int(body, "device_id"), _str(body, "state"))
    if kind == "create_pool":
        return CreatePool(_pool(body["pool"]))
    if kind == "set_pg_table":
        members = body["members"]
        if not isinstance(members, list):
            raise TypeError("members must be a list")
        return SetPgTable(
            _int(body, "pool_id"),
            _str(body, "digest"),
            tuple(_ints(pg, "a PG's members") for pg in members),
        )
    if kind == "create_bucket":
        return CreateBucket(
            _str(body, "name"), _str(body, "pool"), _str(body, "owner"), _int(body, "created_ms")
        )
    if kind == "delete_bucket":
        return DeleteBucket(_str(body, "name"))
    raise MapFormatError(f"meta command: unknown kind {kind!r}")


def decode_command(data: bytes) -> Command:
    """The command in `data`; `MapFormatError` unless every field has its exact type
    (docs/formats/meta.md §1.2)."""
    body = _open(COMMAND_MAGIC, data, "meta command")
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise MapFormatError("meta command: the body must be an object with a kind")
    kind = body.pop("kind")
    try:
        command = _decode_body(kind, body)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise MapFormatError(f"meta command: malformed {kind} body: {err!r}") from err
    if set(body) != set(_fields(command)):
        extra = sorted(set(body) - set(_fields(command)))
        raise MapFormatError(f"meta command: {kind} with unknown fields {extra}")
    return command


# -- transitions ----------------------------------------------------------------------


def apply_command(m: ClusterMap, command: Command) -> tuple[ClusterMap, Applied]:
    """The map after `command`, and the command's outcome."""
    if isinstance(command, Bootstrap):
        return _bootstrap(m, command)
    if not m.bootstrapped:
        return refuse(m, "the cluster is not bootstrapped")
    if isinstance(command, RegisterNode):
        return _register_node(m, command)
    if isinstance(command, RegisterDevice):
        return _register_device(m, command)
    if isinstance(command, SetNodeState):
        node = m.nodes.get(command.node_id)
        if node is None:
            return refuse(m, f"no node {command.node_id}")
        if command.state not in NODE_STATES:
            return refuse(m, f"unknown node state {command.state!r}")
        if command.expect and node.state != command.expect:
            return refuse(m, f"node {node.id} is {node.state}, not {command.expect}")
        if node.state == command.state:
            return refuse(m, f"node {node.id} is already {node.state}")
        new = replace(node, state=command.state)
        return changed(m, nodes=with_item(m.nodes, node.id, new))
    if isinstance(command, RemoveNode):
        return _remove_node(m, command)
    if isinstance(command, SetReplicas):
        return _set_replicas(m, command)
    if isinstance(command, SetDeviceState):
        device = m.devices.get(command.device_id)
        if device is None:
            return refuse(m, f"no device {command.device_id}")
        if command.state not in DEVICE_STATES:
            return refuse(m, f"unknown device state {command.state!r}")
        if device.state == command.state:
            return refuse(m, f"device {device.id} is already {device.state}")
        return changed(
            m, devices=with_item(m.devices, device.id, replace(device, state=command.state))
        )
    if isinstance(command, CreatePool):
        pool = replace(command.pool, id=m.next_pool_id)
        reason = check_pool(pool)
        if reason:
            return refuse(m, reason)
        if m.pool_named(pool.name) is not None:
            return refuse(m, f"pool {pool.name!r} exists")
        if any(p.storage_class == pool.storage_class for p in m.pools.values()):
            return refuse(m, f"storage class {pool.storage_class!r} is taken")
        return changed(
            m,
            allocated=pool.id,
            pools=with_item(m.pools, pool.id, pool),
            next_pool_id=pool.id + 1,
        )
    if isinstance(command, SetPgTable):
        return _set_pg_table(m, command)
    if isinstance(command, CreateBucket):
        if command.name in m.buckets:
            return refuse(m, f"bucket {command.name!r} exists")
        if m.pool_named(command.pool) is None:
            return refuse(m, f"no pool {command.pool!r}")
        bucket = BucketRecord(command.name, command.pool, command.owner, command.created_ms)
        return changed(m, buckets=with_item(m.buckets, bucket.name, bucket))
    if isinstance(command, DeleteBucket):
        if command.name not in m.buckets:
            return refuse(m, f"no bucket {command.name!r}")
        buckets = dict(m.buckets)
        del buckets[command.name]
        return changed(m, buckets=buckets)
    raise TypeError(f"not a meta command: {command!r}")


def _bootstrap(m: ClusterMap, c: Bootstrap) -> tuple[ClusterMap, Applied]:
    if m.bootstrapped:
        return refuse(m, f"the cluster {m.cluster_id} exists")
    if not c.cluster_id:
        return refuse(m, "a cluster id is required")
    pools: dict[int, PoolRecord] = {}
    for i, pool in enumerate(c.pools, start=1):
        pool = replace(pool, id=i)
        reason = check_pool(pool)
        if reason:
            return refuse(m, f"pool {pool.name!r}: {reason}")
        pools[i] = pool
    founders = tuple(sorted(set(c.region_replicas)))
    if not founders:
        return refuse(m, "a cluster needs at least one member")
    region = RegionRecord(1, b"", b"", founders)
    return changed(
        m,
        cluster_id=c.cluster_id,
        created_ms=c.created_ms,
        root=c.root,
        pools=pools,
        next_pool_id=len(pools) + 1,
        regions={1: region},
        founders=founders,
        meta_replicas=founders,
    )


def _register_node(m: ClusterMap, c: RegisterNode) -> tuple[ClusterMap, Applied]:
    if c.node_id <= 0:
        return refuse(m, f"node id {c.node_id} must be positive")
    old = m.nodes.get(c.node_id)
    if old is not None and old.member != c.member:
        # A misconfigured node reusing an id must not take over (or flap) the record.
        role = "an initial member" if old.member else "a node that joined"
        return refuse(m, f"node {c.node_id} is {role}; its id is taken")
    state = NODE_UP if old is None else old.state
    new = NodeRecord(c.node_id, c.rpc, c.kv, c.zone, c.rack, state, c.member)
    if old == new:
        return refuse(m, f"node {c.node_id} is registered as it is")
    for other in m.nodes.values():
        if other.id != c.node_id and other.rpc == c.rpc:
            return refuse(m, f"address {c.rpc} belongs to node {other.id}")
    return changed(m, nodes=with_item(m.nodes, c.node_id, new))


def _register_device(m: ClusterMap, c: RegisterDevice) -> tuple[ClusterMap, Applied]:
    if c.node_id not in m.nodes:
        return refuse(m, f"no node {c.node_id}")
    if c.capacity_bytes <= 0:
        return refuse(m, f"capacity {c.capacity_bytes} must be positive")
    for d in m.devices.values():
        if d.node_id == c.node_id and d.path == c.path:
            if d.capacity_bytes == c.capacity_bytes:
                return m, Applied(True, m.epoch, "registered as it is", allocated=d.id)
            new = replace(d, capacity_bytes=c.capacity_bytes)
            return changed(m, allocated=d.id, devices=with_item(m.devices, d.id, new))
    device = DeviceRecord(m.next_device_id, c.node_id, c.path, c.capacity_bytes, DEVICE_IN)
    return changed(
        m,
        allocated=device.id,
        devices=with_item(m.devices, device.id, device),
        next_device_id=device.id + 1,
    )


def _remove_node(m: ClusterMap, c: RemoveNode) -> tuple[ClusterMap, Applied]:
    node = m.nodes.get(c.node_id)
    if node is None:
        return refuse(m, f"no node {c.node_id}")
    groups = [0, *sorted(m.regions)]
    held = [g for g in groups if node.id in m.replicas_of(g)]
    if held:
        return refuse(
            m,
            f"node {node.id} holds a replica of Raft group {held[0]}: not removable until"
            " the group has replaced it",
        )
    if node.state not in (NODE_DRAINING, NODE_OUT):
        return refuse(m, f"node {node.id} is {node.state}: drain it first")
    devices = {d.id for d in m.devices_of(node.id)}
    for table in m.pg_tables.values():
        if any(d in devices for members in table.members for d in members):
            return refuse(m, f"node {node.id}'s devices still hold PGs of pool {table.pool_id}")
    nodes = {i: n for i, n in m.nodes.items() if i != node.id}
    kept = {i: d for i, d in m.devices.items() if i not in devices}
    return changed(m, nodes=nodes, devices=kept)


def _set_replicas(m: ClusterMap, c: SetReplicas) -> tuple[ClusterMap, Applied]:
    replicas = tuple(sorted(set(c.replicas)))
    if not replicas:
        return refuse(m, f"group {c.group_id} needs at least one replica")
    unknown = [i for i in replicas if i not in m.nodes]
    if unknown:
        return refuse(m, f"no node {unknown[0]}")
    if c.group_id != META_GROUP and c.group_id not in m.regions:
        return refuse(m, f"no region {c.group_id}")
    recorded = m.replicas_index.get(c.group_id, 0)
    if c.conf_index < recorded:
        return refuse(
            m,
            f"group {c.group_id}: configuration at index {c.conf_index} is older than the"
            f" recorded one at {recorded}",
        )
    if replicas == m.replicas_of(c.group_id):
        return refuse(m, f"group {c.group_id}'s replicas are {list(replicas)} already")
    indexes = with_item(m.replicas_index, c.group_id, c.conf_index)
    if c.group_id == META_GROUP:
        return changed(m, meta_replicas=replicas, replicas_index=indexes)
    region = replace(m.regions[c.group_id], replicas=replicas)
    return changed(m, regions=with_item(m.regions, region.id, region), replicas_index=indexes)


def _set_pg_table(m: ClusterMap, c: SetPgTable) -> tuple[ClusterMap, Applied]:
    pool = m.pools.get(c.pool_id)
    if pool is None:
        return refuse(m, f"no pool {c.pool_id}")
    if c.digest != placement_digest(m, pool):
        return refuse(m, "computed from an older map")
    if len(c.members) != pool.pg_count:
        return refuse(m, f"{len(c.members)} PGs, the pool has {pool.pg_count}")
    width = pool.k + pool.m
    for pg, members in enumerate(c.members):
        if len(members) != width or len(set(members)) != width:
            return refuse(m, f"PG {pg} needs {width} distinct devices, got {list(members)}")
        for device_id in members:
            device = m.devices.get(device_id)
            if device is None or device.state != DEVICE_IN:
                return refuse(m, f"PG {pg}: device {device_id} is not in service")
    table = PgTable(pool.id, m.epoch + 1, c.digest, c.members)
    return changed(m, pg_tables=with_item(m.pg_tables, pool.id, table))
