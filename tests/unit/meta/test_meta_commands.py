"""The cluster map's pure core (src/atoll/meta/cluster_map.py, commands.py;
docs/formats/meta.md): command and map encodings, and every transition."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from crc32c import crc32c

from atoll.meta import cluster_map
from atoll.meta.cluster_map import (
    NODE_DOWN,
    NODE_OUT,
    NODE_UP,
    ClusterMap,
    Credentials,
    PoolRecord,
    placement_devices,
    placement_digest,
)
from atoll.meta.commands import (
    COMMAND_MAGIC,
    MAP_MAGIC,
    Bootstrap,
    Command,
    CreateBucket,
    CreatePool,
    DeleteBucket,
    RegisterDevice,
    RegisterNode,
    RemoveNode,
    SetDeviceState,
    SetNodeState,
    SetPgTable,
    SetReplicas,
    apply_command,
    decode_command,
    decode_map,
    encode_command,
    encode_map,
)
from atoll.meta.errors import MapFormatError

STANDARD = PoolRecord(0, "standard", 2, 1, 8, "host", "STANDARD")
REPLICATED = PoolRecord(0, "replicated", 1, 2, 4, "host", "REDUCED_REDUNDANCY")
BOOT = Bootstrap("c0ffee", 1_700_000_000_000, Credentials("AK1", "s3cr3t"), (STANDARD,), (1, 2, 3))

EVERY_KIND: list[Command] = [
    BOOT,
    RegisterNode(4, "127.0.0.1:7004", "", "z1", "r1", False),
    RegisterDevice(4, "/data/d0", 1 << 40),
    SetNodeState(4, NODE_DOWN, expect=NODE_UP),
    RemoveNode(4),
    SetReplicas(1, (1, 3, 4), 17),
    SetDeviceState(7, "failed"),
    CreatePool(REPLICATED),
    SetPgTable(1, "ab" * 16, ((1, 2, 3), (3, 2, 1))),
    CreateBucket("photos", "standard", "root", 5),
    DeleteBucket("photos"),
]


def run(m: ClusterMap, *commands: Command) -> ClusterMap:
    for command in commands:
        m, result = apply_command(m, command)
        assert result.ok, (command, result.reason)
    return m


def cluster(hosts: int = 3, devices_per_host: int = 2) -> ClusterMap:
    m = run(ClusterMap(), BOOT)
    for h in range(1, hosts + 1):
        m = run(m, RegisterNode(h, f"127.0.0.1:{7000 + h}", f"127.0.0.1:{7100 + h}", "", "", True))
        for d in range(devices_per_host):
            m = run(m, RegisterDevice(h, f"/n{h}/d{d}", 1 << 40))
    return m


@pytest.mark.parametrize("command", EVERY_KIND, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command: Command) -> None:
    data = encode_command(command)
    assert data[0] == COMMAND_MAGIC and data[1] == 1
    assert decode_command(data) == command


def test_damaged_or_foreign_bytes_are_refused() -> None:
    data = bytearray(encode_command(BOOT))
    data[-2] ^= 0x01
    with pytest.raises(MapFormatError, match="crc32c"):
        decode_command(bytes(data))
    with pytest.raises(MapFormatError, match="magic"):
        decode_command(encode_map(ClusterMap()))
    newer = bytes([COMMAND_MAGIC, 2]) + encode_command(BOOT)[2:]
    with pytest.raises(MapFormatError, match="version 2"):
        decode_command(newer)
    with pytest.raises(MapFormatError, match="shorter"):
        decode_command(b"\xb0")
    body = b'{"kind":"teleport"}'
    with pytest.raises(MapFormatError, match="unknown kind"):
        decode_command(struct.pack("<BBI", COMMAND_MAGIC, 1, crc32c(body)) + body)
    body = b'{"kind":"register_device","node_id":1}'
    with pytest.raises(MapFormatError, match="malformed"):
        decode_command(struct.pack("<BBI", COMMAND_MAGIC, 1, crc32c(body)) + body)


def test_map_round_trips_with_every_part_filled() -> None:
    m = cluster()
    pool = m.pools[1]
    digest = placement_digest(m, pool)
    members = tuple(tuple((pg + i) % 6 + 1 for i in range(3)) for pg in range(8))
    m = run(
        m,
        SetPgTable(1, digest, members),
        CreateBucket("b", "standard", "root", 9),
        SetNodeState(2, NODE_DOWN),
        RegisterNode(4, "127.0.0.1:7004", "", "", "", False),
        SetReplicas(0, (1, 3, 4), 12),
        SetReplicas(1, (4, 1, 3), 9),
    )
    assert m.founders == (1, 2, 3) and m.meta_replicas == (1, 3, 4)
    data = encode_map(m)
    assert data[0] == MAP_MAGIC
    assert decode_map(data) == m
    assert encode_map(decode_map(data)) == data


def test_bootstrap_once_then_everything_else() -> None:
    m0 = ClusterMap()
    same, refused = apply_command(m0, RegisterNode(1, "a:1", "", "", "", True))
    assert not refused.ok and "not bootstrapped" in refused.reason and same is m0
    m1, result = apply_command(m0, BOOT)
    assert result.ok and result.epoch == 1 == m1.epoch
    assert m1.cluster_id == "c0ffee" and m1.root == Credentials("AK1", "s3cr3t")
    assert [(p.id, p.name, p.k, p.m) for p in m1.pools.values()] == [(1, "standard", 2, 1)]
    assert m1.regions[1].replicas == (1, 2, 3)
    again, refused = apply_command(m1, replace(BOOT, cluster_id="other"))
    assert not refused.ok and again is m1 and refused.epoch == 1


def test_devices_get_sequential_ids_and_reregistering_is_idempotent() -> None:
    m = cluster(hosts=2, devices_per_host=2)
    assert sorted(m.devices) == [1, 2, 3, 4]
    assert [(d.node_id, d.path) for d in m.devices_of(2)] == [(2, "/n2/d0"), (2, "/n2/d1")]
    same, result = apply_command(m, RegisterDevice(2, "/n2/d1", 1 << 40))
    assert result.ok and result.allocated == 4 and same is m
    bigger, result = apply_command(m, RegisterDevice(2, "/n2/d1", 2 << 40))
    assert result.ok and result.allocated == 4 and bigger.epoch == m.epoch + 1
    assert bigger.devices[4].weight == 2.0
    _, refused = apply_command(m, RegisterDevice(9, "/x", 1))
    assert not refused.ok and "no node 9" in refused.reason
    _, refused = apply_command(m, RegisterNode(3, "127.0.0.1:7001", "", "", "", False))
    assert not refused.ok and "belongs to node 1" in refused.reason


def test_node_state_changes_respect_expect() -> None:
    m = cluster()
    down = run(m, SetNodeState(2, NODE_DOWN, expect=NODE_UP))
    assert down.nodes[2].state == NODE_DOWN and down.epoch == m.epoch + 1
    _, refused = apply_command(down, SetNodeState(2, NODE_DOWN, expect=NODE_UP))
    assert not refused.ok
    _, refused = apply_command(down, SetNodeState(2, "asleep"))
    assert not refused.ok and "unknown node state" in refused.reason
    # Re-registering a down node keeps it down: only a heartbeat brings it up.
    again = run(down, RegisterNode(2, "127.0.0.1:7102", "", "", "", True))
    assert again.nodes[2].state == NODE_DOWN


def test_pg_tables_are_refused_when_stale_or_malformed() -> None:
    m = cluster()
    pool = m.pools[1]
    assert m.stale_pools() == [pool]
    digest = placement_digest(m, pool)
    good = tuple(tuple((pg + i) % 6 + 1 for i in range(3)) for pg in range(8))
    cases = [
        (SetPgTable(1, "0" * 32, good), "older map"),
        (SetPgTable(1, digest, good[:7]), "7 PGs"),
        (SetPgTable(1, digest, ((1, 1, 2), *good[1:])), "distinct"),
        (SetPgTable(1, digest, ((1, 2, 99), *good[1:])), "not in service"),
        (SetPgTable(5, digest, good), "no pool 5"),
    ]
    for command, reason in cases:
        same, result = apply_command(m, command)
        assert not result.ok and reason in result.reason and same is m
    placed = run(m, SetPgTable(1, digest, good))
    assert placed.pg_tables[1].members == good and placed.pg_tables[1].epoch == placed.epoch
    assert placed.stale_pools() == []
    # A new device, or a node leaving, makes the table stale again; a node going
    # down does not (its shards are degraded, not moved).
    assert run(placed, SetNodeState(3, NODE_DOWN)).stale_pools() == []
    assert run(placed, RegisterDevice(3, "/n3/d2", 1 << 40)).stale_pools() == [pool]
    left = run(placed, SetNodeState(3, NODE_OUT))
    assert left.stale_pools() == [pool]
    assert {d.node_id for d in placement_devices(left)} == {1, 2}


def test_pools_need_enough_devices_to_be_placed() -> None:
    m = cluster(hosts=1, devices_per_host=2)  # 2 devices, the pool is 2+1
    assert m.stale_pools() == []


def test_pool_and_bucket_commands() -> None:
    m = cluster()
    m2, result = apply_command(m, CreatePool(REPLICATED))
    assert result.ok and result.allocated == 2 and m2.pool_named("replicated") is not None
    for bad, reason in [
        (replace(REPLICATED, name="x", storage_class="X", pg_count=6), "power of two"),
        (replace(REPLICATED, name="x", storage_class="X", failure_domain="planet"), "domain"),
        (replace(REPLICATED, name="x", storage_class="X", k=0), "k >= 1"),
        (replace(REPLICATED, storage_class="Y"), "exists"),
        (replace(REPLICATED, name="y"), "storage class"),
    ]:
        _, refused = apply_command(m2, CreatePool(bad))
        assert not refused.ok and reason in refused.reason, (bad, refused.reason)
    m3 = run(m2, CreateBucket("photos", "replicated", "root", 1))
    _, refused = apply_command(m3, CreateBucket("photos", "standard", "root", 2))
    assert not refused.ok
    _, refused = apply_command(m3, CreateBucket("docs", "nope", "root", 2))
    assert not refused.ok and "no pool" in refused.reason
    assert "photos" not in run(m3, DeleteBucket("photos")).buckets


def test_decommission_removes_a_drained_data_node_only() -> None:
    m = run(cluster(), RegisterNode(4, "127.0.0.1:7004", "", "", "", False))
    m = run(m, RegisterDevice(4, "/n4/d0", 1 << 40))
    device = max(m.devices)
    _, refused = apply_command(m, RemoveNode(4))
    assert not refused.ok and "drain it first" in refused.reason
    _, refused = apply_command(run(m, SetNodeState(1, "draining")), RemoveNode(1))
    assert not refused.ok and "replica of Raft group 0" in refused.reason
    # A founder that no longer holds any replica may go, like any drained node.
    replaced = run(m, SetReplicas(0, (2, 3, 4), 5), SetReplicas(1, (2, 3, 4), 5))
    replaced = run(replaced, SetNodeState(1, "out"), RemoveNode(1))
    assert 1 not in replaced.nodes and replaced.founders == (1, 2, 3)
    _, refused = apply_command(
        run(m, SetReplicas(0, (2, 3, 4), 5), SetNodeState(1, "out")), RemoveNode(1)
    )
    assert not refused.ok and "replica of Raft group 1" in refused.reason
    draining = run(m, SetNodeState(4, "draining"))
    held = replace(
        draining,
        pg_tables={1: cluster_map.PgTable(1, draining.epoch, "x", ((1, 3, device),))},
    )
    _, refused = apply_command(held, RemoveNode(4))
    assert not refused.ok and "still hold PGs" in refused.reason
    gone = run(draining, RemoveNode(4))
    assert 4 not in gone.nodes and device not in gone.devices and gone.epoch == draining.epoch + 1
    _, refused = apply_command(gone, RemoveNode(4))
    assert not refused.ok and "no node 4" in refused.reason


def test_set_replicas_records_each_groups_replicas() -> None:
    m = run(cluster(), RegisterNode(4, "127.0.0.1:7004", "", "", "", False))
    assert m.replicas_of(0) == m.replicas_of(1) == m.founders == (1, 2, 3)
    moved = run(m, SetReplicas(1, (4, 3, 1, 4), 20))
    assert moved.replicas_of(1) == (1, 3, 4) and moved.replicas_of(0) == (1, 2, 3)
    assert moved.replicas_index == {1: 20}
    assert moved.epoch == m.epoch + 1
    assert moved.rpc_addresses(moved.replicas_of(1)) == {
        1: "127.0.0.1:7001",
        3: "127.0.0.1:7003",
        4: "127.0.0.1:7004",
    }
    for bad, reason in [
        (SetReplicas(1, (), 30), "at least one"),
        (SetReplicas(1, (1, 9), 30), "no node 9"),
        (SetReplicas(7, (1, 2), 30), "no region 7"),
        (SetReplicas(1, (3, 1, 4), 30), "already"),
        # A deposed leader's record, from a configuration older than the recorded one.
        (SetReplicas(1, (1, 2, 3), 19), "older than the recorded one at 20"),
    ]:
        _, refused = apply_command(moved, bad)
        assert not refused.ok and reason in refused.reason, (bad, refused.reason)


def test_a_map_from_before_the_replicas_were_recorded_reads_its_founders() -> None:
    m = cluster()
    body = cluster_map.map_to_json(m)
    assert "founders" not in body and "meta_replicas" not in body  # as before them
    old = cluster_map.map_from_json(body)
    assert old == m and old.founders == old.meta_replicas == (1, 2, 3)
    moved = run(m, SetReplicas(0, (1, 2), 4))
    assert cluster_map.map_to_json(moved)["meta_replicas"] == [1, 2]
    assert cluster_map.map_to_json(moved)["replicas_index"] == [[0, 4]]
    assert decode_map(encode_map(moved)) == moved
