"""Garbage collection of unreferenced shard files (atoll.gateway.gc, docs/gc.md) on a
cluster of real node processes on 127.0.0.1.

An `ObjectStore` in the test process writes objects, and orphans are planted the
ways they arise: shards written with no manifest commit (a gateway crash), an
overwrite and a delete whose old shards were never collected (a gateway restart
before its background deletion), an unused part of a completed upload left behind,
and an upload whose record was removed before its parts (an abort cut short). An
upload in progress keeps its parts. Node 3 is then killed and the collector runs in
the test process over a `StorageService` on node 3's device directories, as the node
runs it in process, reading the object index from the two other nodes. Afterwards
node 3's devices hold exactly the shard files of committed objects and of the upload
in progress, the other nodes still hold their orphans (nothing else removed them),
and once node 3 is back every object reads back byte-identical, without a degraded
read, and the upload completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kv_cluster import Cluster
from test_object_store import Bytes, read_all, wait_map

from atoll.erasure.shard_file import ShardReader
from atoll.gateway.datapath import PartTarget
from atoll.gateway.gc import GcConfig, collect_once
from atoll.gateway.s3proto import CompletedPart
from atoll.gateway.store import ObjectStore
from atoll.kv.rpc_client import KvRpcClient
from atoll.meta.cluster_map import ClusterMap
from atoll.objects.index import make_version_id
from atoll.objects.manifest import Manifest, ObjectMetadata
from atoll.placement.pools import pg_of
from atoll.rpc import RpcPool
from atoll.storage import DeviceConfig, StorageClient, StorageService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024
BUCKET = "photos"
GC_NODE = 3
NODE_BACK_TIMEOUT_S = 60.0

Version = tuple[str, str, str, int]  # bucket, key, version id, part number


class ForgetfulStore(ObjectStore):
    """A gateway that dies before its background deletion of a replaced version's
    shard files runs (what `ObjectStore._collect` would have removed stays)."""

    def _collect(self, manifest: Manifest | None) -> None:
        pass


def shard_files(root: Path, node_id: int) -> dict[Path, Version]:
    """Every shard file on the node's devices, by what its header names."""
    found = {}
    for path in sorted(root.glob(f"dev-{node_id}-*/pgs/*/*.shard")):
        with ShardReader(str(path)) as reader:
            bucket, key, version_id, part, _ = reader.header.identity
        found[path] = (bucket, key, version_id, part)
    return found


def versions(manifest: Manifest) -> set[Version]:
    assert manifest.layout is not None
    return {
        (manifest.bucket, manifest.key, manifest.version_id, p.number)
        for p in manifest.layout.parts
    }


async def plant(
    store: ObjectStore, m: ClusterMap, key: str, version_id: str, part: int, data: bytes
) -> Version:
    """Shard files of (key, version, part) in the default pool, written the way the
    gateway writes them, with nothing committed to the index."""
    pool = m.pool_named("standard")
    assert pool is not None
    pg = pg_of(pool.as_placement(), BUCKET, key, version_id)
    target = PartTarget(
        pool.id,
        pool.k,
        pool.m,
        pg,
        m.pg_tables[pool.id].members[pg],
        m.epoch,
        BUCKET,
        key,
        version_id,
        part,
        store.block_size,
    )

    async def body() -> AsyncIterator[bytes]:
        yield data

    written = await store.data.write_part(target, body())
    assert written.durable == tuple(range(pool.k + pool.m))
    return (BUCKET, key, version_id, part)


async def wait_storage(pool: RpcPool, address: str) -> None:
    """Until the node's storage service answers `storage.devices`."""
    deadline = time.monotonic() + NODE_BACK_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            client = StorageClient(await pool.get(address), timeout_s=2.0)
            if await client.devices():
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the storage service at {address} did not come back")


def test_gc_removes_orphans_and_keeps_every_object(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, devices_per_node=2, bootstrap=True)
    rng = random.Random(7)
    data = {
        "big": rng.randbytes(3 * MiB + 11),
        "three": rng.randbytes(2 * MiB + 5),
        "small": b"inline bytes",
        "over": rng.randbytes(MiB + 1),
    }
    part1, part3, open1 = rng.randbytes(5 * MiB), rng.randbytes(MiB + 3), rng.randbytes(5 * MiB)

    async def body() -> None:
        cluster.start_all()
        m = await wait_map(cluster.nodes[1].rpc)
        pool = RpcPool()
        kv = KvRpcClient(lambda: {n.id: n.rpc for n in m.nodes.values() if n.member}, pool)
        store = ForgetfulStore(
            kv, pool, lambda: m, clock_ms=lambda: time.time_ns() // 1_000_000, entropy=os.urandom
        )
        try:
            await store.create_bucket(BUCKET, "root")
            live: set[Version] = set()
            orphans: set[Version] = set()
            none = ObjectMetadata()

            # Committed objects, in both default pools and inline.
            live |= versions(
                await store.put_object(BUCKET, "big", Bytes(data["big"]), metadata=none)
            )
            three = await store.put_object(
                BUCKET,
                "three",
                Bytes(data["three"]),
                metadata=none,
                storage_class="REDUCED_REDUNDANCY",
            )
            live |= versions(three)
            assert (
                await store.put_object(BUCKET, "small", Bytes(data["small"]), metadata=none)
            ).inline

            # An overwrite and a delete whose old shards were never collected.
            old = await store.put_object(
                BUCKET, "over", Bytes(rng.randbytes(2 * MiB)), metadata=none
            )
            orphans |= versions(old)
            live |= versions(
                await store.put_object(BUCKET, "over", Bytes(data["over"]), metadata=none)
            )
            orphans |= versions(
                await store.put_object(BUCKET, "gone", Bytes(data["big"]), metadata=none)
            )
            await store.delete_object(BUCKET, "gone")

            # A completed upload, and its unused part 2 left behind by a crash.
            done = await store.create_upload(BUCKET, "mp/done", metadata=none)
            p1 = await store.upload_part(BUCKET, "mp/done", done.upload_id, 1, Bytes(part1))
            await store.upload_part(BUCKET, "mp/done", done.upload_id, 2, Bytes(b"unused" * 1000))
            p3 = await store.upload_part(BUCKET, "mp/done", done.upload_id, 3, Bytes(part3))
            completed = await store.complete_upload(
                BUCKET,
                "mp/done",
                done.upload_id,
                [CompletedPart(1, p1.part.etag), CompletedPart(3, p3.part.etag)],
            )
            live |= versions(completed)
            orphans.add(await plant(store, m, "mp/done", done.version_id, 2, rng.randbytes(MiB)))

            # An upload in progress: its parts are referenced by the upload record.
            going = await store.create_upload(BUCKET, "mp/open", metadata=none)
            g1 = await store.upload_part(BUCKET, "mp/open", going.upload_id, 1, Bytes(open1))
            g2 = await store.upload_part(BUCKET, "mp/open", going.upload_id, 2, Bytes(b"tail"))
            live |= {(BUCKET, "mp/open", going.version_id, n) for n in (1, 2)}

            # An abort cut short: the upload record is gone, its part's shards are not.
            cut = await store.create_upload(BUCKET, "mp/cut", metadata=none)
            await store.upload_part(BUCKET, "mp/cut", cut.upload_id, 1, Bytes(part3))
            assert await kv.delete(cut.index_key)
            orphans.add((BUCKET, "mp/cut", cut.version_id, 1))

            # A gateway that crashed between writing the shards and committing.
            crashed = make_version_id(os.urandom(16))
            orphans.add(await plant(store, m, "crashed", crashed, 0, rng.randbytes(2 * MiB)))

            assert not live & orphans
            before = {n: shard_files(tmp_path, n) for n in cluster.nodes}
            on_gc_node = set(before[GC_NODE].values())
            assert orphans <= on_gc_node, "every orphan (4+2 over 6 devices) is on every node"
            assert {v for v in live if v[1] != "three"} <= on_gc_node
            assert on_gc_node <= live | orphans
            for key in ("big", "three", "small", "over", "mp/done"):
                expected = data.get(key, part1 + part3)
                assert await read_all(store, BUCKET, key) == expected
            degraded = store.degraded_reads

            # Node 3 down; its collector runs here over its devices, as the node would.
            cluster.kill(GC_NODE)
            devices = {
                d.id: DeviceConfig(d.path) for d in m.devices.values() if d.node_id == GC_NODE
            }
            assert len(devices) == 2
            service = StorageService(
                devices, check_epoch=lambda epoch, pools: None, on_device_failure=lambda d, e: None
            )
            await service.start()
            try:
                stats = await collect_once(
                    service,
                    kv,
                    clock=time.time,
                    sleep=asyncio.sleep,
                    config=GcConfig(grace_s=0, checks_per_s=1000, page_files=3),
                )
                again = await collect_once(
                    service, kv, clock=time.time, sleep=asyncio.sleep, config=GcConfig()
                )
                used = {i.device_id: i.used_bytes for i in service.device_infos()}
            finally:
                await service.stop()

            after = shard_files(tmp_path, GC_NODE)
            expected_left = {p: v for p, v in before[GC_NODE].items() if v in live}
            assert after == expected_left, "exactly the referenced files are left"
            orphan_files = len(before[GC_NODE]) - len(expected_left)
            assert (stats.deleted, stats.kept, stats.errors) == (orphan_files, len(after), 0)
            assert stats.checked == stats.listed == len(before[GC_NODE])
            assert (again.young, again.checked, again.deleted) == (len(after), 0, 0)
            for device_id, device in devices.items():
                on_disk = sum(
                    p.stat().st_size for p in after if str(p).startswith(device.path + "/")
                )
                assert used[device_id] == on_disk, "the accounting followed the deletes"
            for n in cluster.nodes:
                if n != GC_NODE:
                    assert shard_files(tmp_path, n) == before[n], "only the collector deleted"

            # Node 3 back: every object reads back identical, from the kept shards.
            cluster.start(GC_NODE)
            await wait_storage(pool, cluster.nodes[GC_NODE].rpc)
            for key in ("big", "three", "small", "over", "mp/done"):
                expected = data.get(key, part1 + part3)
                assert await read_all(store, BUCKET, key) == expected
            finished = await store.complete_upload(
                BUCKET,
                "mp/open",
                going.upload_id,
                [CompletedPart(1, g1.part.etag), CompletedPart(2, g2.part.etag)],
            )
            assert finished.size == len(open1) + 4
            assert await read_all(store, BUCKET, "mp/open") == open1 + b"tail"
            assert store.degraded_reads == degraded, "node 3's shards were all there"
        finally:
            await store.close()
            await pool.close()

    try:
        asyncio.run(body())
    finally:
        cluster.stop_all()
