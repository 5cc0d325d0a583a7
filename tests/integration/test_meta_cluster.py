"""The cluster map over a cluster of real node processes on 127.0.0.1 (issue 4 §1, §5):
bootstrap, joining, PG tables, failure detection. Maps are read over atoll.rpc
(`meta.map`) from the nodes themselves."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kv_cluster import Cluster

from atoll.erasure.stripe import StripeLayout
from atoll.meta.client import MetaClient
from atoll.meta.cluster_map import (
    DEVICE_FAILED,
    NODE_DOWN,
    NODE_UP,
    ClusterMap,
    placement_digest,
)
from atoll.meta.errors import MetaUnavailable
from atoll.rpc import RpcClient
from atoll.storage import ShardId, StaleEpoch, StorageClient, StorageError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SRC = str(Path(__file__).resolve().parents[2] / "src")
DOWN_AFTER_S = 3.0
HEARTBEAT_INTERVAL_S = 0.5


async def read_map(address: str) -> ClusterMap | None:
    """The map `address` holds (after a ReadIndex round), or None if it does not answer."""
    client = MetaClient([address])
    try:
        return await client.read_map()
    except MetaUnavailable:
        return None
    finally:
        await client.close()


async def wait_map(
    cluster: Cluster,
    address: str,
    predicate: Callable[[ClusterMap], bool],
    timeout_s: float,
) -> ClusterMap:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        m = await read_map(address)
        if m is not None:
            last = m
            if predicate(m):
                return m
        await asyncio.sleep(0.1)
    raise AssertionError(f"map never satisfied the condition; last {last}\n{cluster.logs()}")


async def atoll_cli(*args: str) -> tuple[int, str]:
    """Run the real `atoll` command; its exit code and its output (stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atoll.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def storage_round_trip(m: ClusterMap) -> list[int]:
    """Three copies of a part on the members of a replicated PG; the devices used."""
    pool = m.pool_named("replicated")
    assert pool is not None and (pool.k, pool.m) == (1, 2)
    layout = StripeLayout(1, 2, 4096)
    data = bytes(range(256)) * 40  # 10,240 bytes: three blocks, the last short
    blocks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    members = m.pg_tables[pool.id].members[0]
    for index, device_id in enumerate(members):
        shard = ShardId(pool.id, 0, "bucket", "key", "v1", 1, index)
        node = m.nodes[m.devices[device_id].node_id]
        host, _, port = node.rpc.rpartition(":")
        async with await RpcClient.connect(host, int(port)) as rpc:
            client = StorageClient(rpc)
            await client.put_shard(
                device_id, shard, layout, blocks, epoch=m.epoch, data_length=len(data)
            )
            read = b"".join(
                [bytes(b) async for b in client.get_shard(device_id, shard, epoch=m.epoch)]
            )
            assert read == data
            with pytest.raises(StaleEpoch):
                await client.stat(device_id, shard, epoch=1)  # before any PG table
    return list(members)


def replace_by_a_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_bytes(b"not a directory any more")


async def fail_a_device(cluster: Cluster, m: ClusterMap, node_id: int) -> ClusterMap:
    device = m.devices_of(node_id)[0]
    replace_by_a_file(Path(device.path))
    host, _, port = cluster.nodes[node_id].rpc.rpartition(":")
    shard = ShardId(1, 0, "bucket", "gone", "v1", 1, 0)
    async with await RpcClient.connect(host, int(port)) as rpc:
        with pytest.raises(StorageError):
            await StorageClient(rpc).put_shard(
                device.id, shard, StripeLayout(1, 0, 4096), [b"x"], epoch=m.epoch, data_length=1
            )
    return await wait_map(
        cluster,
        cluster.nodes[1].rpc,
        lambda m: m.devices[device.id].state == DEVICE_FAILED,
        30,
    )


def check_tables(m: ClusterMap) -> None:
    """Every pool has a current table: every PG on k+m distinct devices in service,
    at most ceil((k+m)/hosts) shards of a PG per host."""
    hosts = {d.node_id for d in m.devices.values()}
    for pool in m.pools.values():
        table = m.pg_tables[pool.id]
        assert table.digest == placement_digest(m, pool), f"pool {pool.name}: stale table"
        assert len(table.members) == pool.pg_count
        for members in table.members:
            assert len(members) == len(set(members)) == pool.k + pool.m
            per_host = Counter(m.devices[d].node_id for d in members)
            assert max(per_host.values()) <= math.ceil((pool.k + pool.m) / len(hosts))


def test_three_nodes_bootstrap_join_place_and_detect_failures(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        devices_per_node=2,
        bootstrap=True,
        down_after_s=DOWN_AFTER_S,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
    )

    async def body() -> None:
        cluster.start_all()
        address = cluster.nodes[2].rpc

        def placed(m: ClusterMap, nodes: int, devices: int) -> bool:
            return (
                m.bootstrapped
                and len(m.nodes) == nodes
                and all(n.state == NODE_UP for n in m.nodes.values())
                and len(m.devices) == devices
                and len(m.pg_tables) == len(m.pools)
                and not m.stale_pools()
            )

        m = await wait_map(cluster, address, lambda m: placed(m, 3, 6), 60)
        pools = {p.name: (p.k, p.m, p.storage_class) for p in m.pools.values()}
        # 6 devices on 3 hosts: standard is 4+2, replicated three copies.
        assert pools == {"standard": (4, 2, "STANDARD"), "replicated": (1, 2, "REDUCED_REDUNDANCY")}
        assert m.root is not None and m.root.access_key and m.root.secret_key
        assert sorted(d.node_id for d in m.devices.values()) == [1, 1, 2, 2, 3, 3]
        assert m.regions[1].replicas == (1, 2, 3)
        check_tables(m)
        # Every member holds the same map once it has caught up.
        for n in (1, 3):
            other = await wait_map(cluster, cluster.nodes[n].rpc, lambda x: x.epoch >= m.epoch, 10)
            assert other.cluster_id == m.cluster_id

        # Every node serves its devices: three copies of a part go to the members of
        # a replicated PG, routed with the map's epoch, and read back from each.
        round_trip_devices = await storage_round_trip(m)

        # An operator adds a pool with the real command: placed like the others.
        code, out = await atoll_cli(
            "pool", "create", "fast", "--ec", "2+1", "--pgs", "16", "--storage-class", "FAST",
            "--rpc", cluster.nodes[1].rpc,
        )  # fmt: skip
        assert code == 0, out
        m = await wait_map(cluster, address, lambda m: placed(m, 3, 6) and len(m.pools) == 3, 30)
        fast = m.pool_named("fast")
        assert fast is not None and (fast.k, fast.m, fast.pg_count) == (2, 1, 16)
        check_tables(m)
        code, out = await atoll_cli(
            "pool", "create", "fast", "--ec", "1+1", "--storage-class", "OTHER",
            "--rpc", cluster.nodes[2].rpc,
        )  # fmt: skip
        assert code == 1 and "exists" in out, out
        code, out = await atoll_cli("pool", "list", "--rpc", cluster.nodes[3].rpc)
        assert code == 0, out
        assert [line.split()[:2] for line in out.splitlines()[1:]] == [
            ["standard", "4+2"],
            ["replicated", "1+2"],
            ["fast", "2+1"],
        ]

        # A fourth node joins through node 3 and stores data: new tables.
        cluster.add_joiner(4, cluster.nodes[3].rpc)
        cluster.start(4)
        m = await wait_map(cluster, address, lambda m: placed(m, 4, 8), 60)
        assert len(m.pools) == 3
        # A fifth joins through the fourth, which is no meta member: redirected.
        cluster.add_joiner(5, cluster.nodes[4].rpc)
        cluster.start(5)
        m = await wait_map(cluster, address, lambda m: placed(m, 5, 10), 60)
        assert not m.nodes[4].member and m.nodes[1].member
        check_tables(m)
        assert any(m.devices[d].node_id == 4 for pg in m.pg_tables[1].members for d in pg), (
            "the new node's devices hold no shard"
        )

        # A disk of node 2 goes away under the service: the first put to it fails,
        # the device is marked failed in the map, and the tables leave it.
        failed = await fail_a_device(cluster, m, node_id=2)
        m = await wait_map(
            cluster, address, lambda m: m.epoch > failed.epoch and not m.stale_pools(), 30
        )
        check_tables(m)
        assert all(
            failed_id not in pg
            for failed_id in [d.id for d in m.devices.values() if d.state == DEVICE_FAILED]
            for t in m.pg_tables.values()
            for pg in t.members
        )

        # kill -9 of a member and of the joiner: both marked down in time.
        for victim in (3, 4):
            cluster.kill(victim)
            killed = time.monotonic()
            await wait_map(cluster, address, lambda m, v=victim: m.nodes[v].state == NODE_DOWN, 30)
            took = time.monotonic() - killed
            assert took <= DOWN_AFTER_S + 5, f"node {victim} marked down after {took:.1f}s"
        m = await read_map(address)
        assert m is not None and m.nodes[1].state == m.nodes[2].state == NODE_UP
        assert not m.stale_pools()  # down nodes keep their PGs

        # `atoll status --json` (the real command) shows the down nodes and the PGs
        # that lost a member; the heartbeats fill in device usage.
        code, out = await atoll_cli("status", "--endpoint", cluster.nodes[1].rpc, "--json")
        assert code == 0, out
        doc = json.loads(out)
        states = {n["id"]: n["state"] for n in doc["nodes"]}
        assert states == {1: "up", 2: "up", 3: "down", 4: "down", 5: "up"}
        assert doc["degraded_pgs"] > 0 and doc["pgs"] == sum(p["pg_count"] for p in doc["pools"])
        # Usage is the storage service's own: the shards stored by the round trip.
        live = [d for d in doc["devices"] if d["node"] in (1, 2, 5) and d["state"] == "in"]
        assert live and all(0 <= d["used_bytes"] <= d["capacity_bytes"] for d in live)
        stored = {d["id"]: d["used_bytes"] for d in doc["devices"]}
        holders = [d for d in round_trip_devices if m.devices[d].node_id in (1, 2, 5)]
        assert holders and all(10_240 < stored[d] < 1 << 20 for d in holders)
        code, out = await atoll_cli("status", "--endpoint", cluster.nodes[2].rpc)
        assert code == 0 and "degraded:" in out, out
        # Through a node that joined (no meta member): redirected to a member.
        code, out = await atoll_cli("status", "--endpoint", cluster.nodes[5].rpc, "--json")
        assert code == 0 and json.loads(out)["epoch"] >= doc["epoch"], out

        # Node 3 comes back with its data: marked up again.
        cluster.start(3)
        await wait_map(cluster, address, lambda m: m.nodes[3].state == NODE_UP, 30)

    try:
        asyncio.run(body())
    finally:
        cluster.stop_all()


def test_one_node_alone_is_a_cluster(tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        size=1,
        devices_per_node=1,
        bootstrap=True,
        down_after_s=DOWN_AFTER_S,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
    )

    async def body() -> None:
        cluster.start_all()
        m = await wait_map(
            cluster,
            cluster.nodes[1].rpc,
            lambda m: len(m.devices) == 1 and len(m.pg_tables) == len(m.pools) >= 1,
            60,
        )
        # One device: the standard pool is 1+0 and there is no replicated pool.
        assert [(p.name, p.k, p.m) for p in m.pools.values()] == [("standard", 1, 0)]
        check_tables(m)
        assert m.nodes[1].state == NODE_UP and m.regions[1].replicas == (1,)

    try:
        asyncio.run(body())
    finally:
        cluster.stop_all()
