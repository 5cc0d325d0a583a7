"""The object layer (`atoll.gateway.store.ObjectStore`) on a cluster of real node
processes on 127.0.0.1: buckets, inline and erasure-coded objects in both default
pools, ranged reads, listings, conditional writes, multipart uploads, and degraded
reads with a node killed (issue 5 §1). The store runs in the test process, as a
gateway would, reaching the KV region and the storage nodes over atoll.rpc."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kv_cluster import Cluster

from atoll.gateway.checksums import Algorithm
from atoll.gateway.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidStorageClass,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
)
from atoll.gateway.payload import BodyReader, BodyResult
from atoll.gateway.s3proto import CompletedPart
from atoll.gateway.store import CopySource, ObjectStore
from atoll.kv.rpc_client import KvRpcClient
from atoll.meta.client import MetaClient
from atoll.meta.cluster_map import ClusterMap
from atoll.objects.index import ListQuery
from atoll.objects.manifest import Manifest, ObjectMetadata
from atoll.rpc import RpcPool
from atoll.storage import ShardId, ShardNotFound, StorageClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024


class Bytes:
    """A request body from bytes through the real `BodyReader` (MD5 computed as the
    HTTP shell computes it), fed in pieces of `piece` bytes."""

    def __init__(self, data: bytes, piece: int = 256 * 1024) -> None:
        self.data = data
        self.piece = piece
        self.reader = BodyReader(
            decoder=None,
            expected_length=len(data),
            content_sha256=None,
            header_digests={},
            trailer_algorithm=None,
            digests=(Algorithm.MD5,),
        )
        self._result: BodyResult | None = None

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        for at in range(0, len(self.data), self.piece):
            for piece in self.reader.feed(self.data[at : at + self.piece]):
                yield piece
        self._result = self.reader.finish()

    def result(self) -> BodyResult:
        assert self._result is not None
        return self._result


async def read_all(
    store: ObjectStore, bucket: str, key: str, first: int = 0, end: int | None = None
) -> bytes:
    manifest = await store.head_object(bucket, key)
    out = bytearray()
    async with contextlib.aclosing(store.read_object(manifest, first, end)) as pieces:
        async for piece in pieces:
            out += piece
    return bytes(out)


async def wait_map(address: str, timeout_s: float = 60) -> ClusterMap:
    client = MetaClient([address])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                m = await client.read_map()
                # Every table placed from the final devices: a table recomputed later
                # (one placed while devices were still joining) would move the epoch
                # past the writes this map routes.
                placed = len(m.pg_tables) == len(m.pools) and not m.stale_pools()
                if len(m.devices) == 6 and m.pools and placed:
                    return m
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise AssertionError("the cluster map never placed its pools")


async def wait_collected(store: ObjectStore, pool: RpcPool, m: ClusterMap, old: Manifest) -> None:
    """Wait until no shard file of the version `old` is left on its PG's devices."""
    assert old.layout is not None
    part = old.layout.parts[0]
    members = m.pg_tables[old.layout.pool_id].members[part.pg]
    deadline = time.monotonic() + 30
    while True:
        left = []
        for index, device in enumerate(members):
            node = m.nodes[m.devices[device].node_id]
            client = StorageClient(await pool.get(node.rpc))
            shard = ShardId(
                old.layout.pool_id, part.pg, old.bucket, old.key, old.version_id, 0, index
            )
            with contextlib.suppress(ShardNotFound):
                await client.stat(device, shard, epoch=m.epoch)
                left.append(index)
        if not left:
            return
        assert time.monotonic() < deadline, f"shards {left} of the replaced version are still there"
        await asyncio.sleep(0.1)


def test_object_store_on_a_real_cluster(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, devices_per_node=2, bootstrap=True)
    rng = random.Random(5)
    big = rng.randbytes(3 * MiB + MiB // 2 + 7)  # 4 stripes, the last one short
    small = b"hello, atoll"

    async def body() -> None:
        cluster.start_all()
        m = await wait_map(cluster.nodes[1].rpc)
        pool = RpcPool()
        kv = KvRpcClient(lambda: {n.id: n.rpc for n in m.nodes.values() if n.member}, pool)
        store = ObjectStore(
            kv,
            pool,
            lambda: m,
            clock_ms=lambda: time.time_ns() // 1_000_000,
            entropy=os.urandom,
            collect_delay_s=0.0,
        )
        try:
            await store.create_bucket("photos", "root")
            with pytest.raises(BucketAlreadyOwnedByYou):
                await store.create_bucket("photos", "root")
            assert [b.name for b in await store.list_buckets()] == ["photos"]
            with pytest.raises(NoSuchBucket):
                await store.put_object("nobucket", "k", Bytes(small), metadata=ObjectMetadata())

            meta = ObjectMetadata(content_type="text/plain", user=(("author", "ana"),))
            inline = await store.put_object("photos", "a/small.txt", Bytes(small), metadata=meta)
            assert inline.inline == small and inline.etag == hashlib.md5(small).hexdigest()
            coded = await store.put_object(
                "photos", "a/big.bin", Bytes(big), metadata=ObjectMetadata()
            )
            assert coded.layout is not None and (coded.layout.k, coded.layout.m) == (4, 2)
            assert coded.layout.parts[0].durable == (0, 1, 2, 3, 4, 5)
            assert coded.etag == hashlib.md5(big).hexdigest()
            copies = await store.put_object(
                "photos",
                "b/three.bin",
                Bytes(big[: 2 * MiB]),
                metadata=ObjectMetadata(),
                storage_class="REDUCED_REDUNDANCY",
            )
            assert copies.layout is not None and (copies.layout.k, copies.layout.m) == (1, 2)
            # `atoll bucket set-pool`: new objects go to the bucket's pool.
            await store.set_bucket_pool("photos", "replicated")
            moved = await store.put_object(
                "photos", "e/pool", Bytes(big), metadata=ObjectMetadata()
            )
            assert moved.layout is not None and (moved.layout.k, moved.layout.m) == (1, 2)
            assert moved.storage_class == "REDUCED_REDUNDANCY"
            await store.set_bucket_pool("photos", "standard")
            with pytest.raises(InvalidArgument):
                await store.set_bucket_pool("photos", "no-such-pool")
            with pytest.raises(NoSuchBucket):
                await store.set_bucket_pool("nobucket", "standard")
            await store.delete_object("photos", "e/pool")
            with pytest.raises(InvalidStorageClass):
                await store.put_object(
                    "photos", "x", Bytes(small), metadata=ObjectMetadata(), storage_class="GLACIER"
                )

            assert await read_all(store, "photos", "a/small.txt") == small
            assert (await store.head_object("photos", "a/small.txt")).metadata == meta
            assert await read_all(store, "photos", "a/big.bin") == big
            assert await read_all(store, "photos", "b/three.bin") == big[: 2 * MiB]
            for first, end in (
                (0, 1),
                (MiB - 3, MiB + 5),
                (3 * MiB + 1, len(big)),
                (123, 2 * MiB + 77),
            ):
                assert await read_all(store, "photos", "a/big.bin", first, end) == big[first:end]
            with pytest.raises(NoSuchKey):
                await store.head_object("photos", "missing")

            page = await store.list_objects("photos", ListQuery(delimiter="/"))
            assert page.common_prefixes == ("a/", "b/") and page.contents == ()
            page = await store.list_objects("photos", ListQuery(prefix="a/", max_keys=1))
            assert [k for k, _ in page.contents] == ["a/big.bin"] and page.is_truncated
            assert page.contents[0][1].size == len(big)

            with pytest.raises(PreconditionFailed):
                await store.put_object(
                    "photos",
                    "a/small.txt",
                    Bytes(b"x"),
                    metadata=ObjectMetadata(),
                    conditions={"if-none-match": "*"},
                )
            assert await read_all(store, "photos", "a/small.txt") == small
            await store.put_object(
                "photos",
                "a/small.txt",
                Bytes(b"v2"),
                metadata=ObjectMetadata(),
                conditions={"if-match": f'"{inline.etag}"'},
            )
            assert await read_all(store, "photos", "a/small.txt") == b"v2"

            copied = await store.copy_object(
                CopySource("photos", "a/big.bin", (MiB, 2 * MiB + 9)),
                "photos",
                "c/copy",
                metadata=None,
            )
            assert await read_all(store, "photos", "c/copy") == big[MiB : 2 * MiB + 10]
            assert copied.etag == hashlib.md5(big[MiB : 2 * MiB + 10]).hexdigest()

            part1, part2 = rng.randbytes(5 * MiB), rng.randbytes(MiB + 3)
            upload = await store.create_upload("photos", "mp/obj", metadata=ObjectMetadata())
            p1 = await store.upload_part("photos", "mp/obj", upload.upload_id, 1, Bytes(part1))
            small_part = await store.upload_part(
                "photos", "mp/obj", upload.upload_id, 2, Bytes(b"tiny")
            )
            p3 = await store.upload_part("photos", "mp/obj", upload.upload_id, 3, Bytes(part2))
            _, parts = await store.list_parts(
                "photos", "mp/obj", upload.upload_id, after_part=0, max_parts=10
            )
            assert [n for n, _ in parts.parts] == [1, 2, 3]
            with pytest.raises(InvalidPart):
                await store.complete_upload(
                    "photos", "mp/obj", upload.upload_id, [CompletedPart(1, "0" * 32)]
                )
            with pytest.raises(EntityTooSmall):
                await store.complete_upload(
                    "photos",
                    "mp/obj",
                    upload.upload_id,
                    [CompletedPart(2, small_part.part.etag), CompletedPart(3, p3.part.etag)],
                )
            done = await store.complete_upload(
                "photos",
                "mp/obj",
                upload.upload_id,
                [CompletedPart(1, p1.part.etag), CompletedPart(3, p3.part.etag)],
            )
            expected_etag = hashlib.md5(
                hashlib.md5(part1).digest() + hashlib.md5(part2).digest()
            ).hexdigest()
            assert done.etag == f"{expected_etag}-2"
            assert await read_all(store, "photos", "mp/obj") == part1 + part2
            assert (
                await read_all(store, "photos", "mp/obj", 5 * MiB - 2, 5 * MiB + 2)
                == (part1 + part2)[5 * MiB - 2 : 5 * MiB + 2]
            )
            with pytest.raises(NoSuchUpload):
                await store.upload_part("photos", "mp/obj", upload.upload_id, 4, Bytes(b"late"))
            aborted = await store.create_upload("photos", "mp/gone", metadata=ObjectMetadata())
            await store.upload_part("photos", "mp/gone", aborted.upload_id, 1, Bytes(part2))
            await store.abort_upload("photos", "mp/gone", aborted.upload_id)
            assert (await store.list_uploads("photos", ListQuery())).uploads == ()

            with pytest.raises(BucketNotEmpty):
                await store.delete_bucket("photos")

            # An overwrite leaves the old version's shard files to be collected.
            old = await store.head_object("photos", "b/three.bin")
            await store.put_object("photos", "b/three.bin", Bytes(big), metadata=ObjectMetadata())
            assert await read_all(store, "photos", "b/three.bin") == big
            await wait_collected(store, pool, m, old)

            # Kill a node: every object still reads back (degraded), new writes go on.
            cluster.kill(3)
            before = store.degraded_reads
            assert await read_all(store, "photos", "a/big.bin") == big
            assert await read_all(store, "photos", "mp/obj") == part1 + part2
            assert await read_all(store, "photos", "b/three.bin") == big
            assert store.degraded_reads > before
            after_kill = await store.put_object(
                "photos", "d/new", Bytes(big), metadata=ObjectMetadata()
            )
            assert after_kill.layout is not None and len(after_kill.layout.parts[0].durable) == 4
            assert await read_all(store, "photos", "d/new") == big
            replicated = await store.put_object(
                "photos",
                "d/new3",
                Bytes(big),
                metadata=ObjectMetadata(),
                storage_class="REDUCED_REDUNDANCY",
            )
            assert await read_all(store, "photos", "d/new3") == big
            assert replicated.layout is not None

            for key in (
                "a/small.txt",
                "a/big.bin",
                "b/three.bin",
                "c/copy",
                "mp/obj",
                "d/new",
                "d/new3",
            ):
                await store.delete_object("photos", key)
            with pytest.raises(NoSuchKey):
                await store.head_object("photos", "a/big.bin")
            await store.delete_bucket("photos")
            assert await store.list_buckets() == []
        finally:
            await store.close()
            await pool.close()

    try:
        asyncio.run(body())
    finally:
        cluster.stop_all()
