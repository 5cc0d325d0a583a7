"""The storage service against real files: a real `RpcServer` on 127.0.0.1 serving
`StorageService` over device directories under tmp_path, driven by `StorageClient`.

Shards are made by the real codec (`StripeCodec`), read back through the service and
decoded again; corruption, full devices, crashes (leftover temporary files) and failed
devices are made by acting on the files and directories themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import random
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import crc32c
import pytest

from atoll.erasure.codec import Codec, StripeCodec
from atoll.erasure.shard_file import ShardWriter, is_temp_name
from atoll.erasure.shard_format import CRC_BYTES, ShardHeader, encode_header
from atoll.erasure.stripe import StripeLayout
from atoll.proto import storage_pb2
from atoll.rpc import Chunk, RpcClient, RpcRemoteError, RpcServer
from atoll.rpc.local import LocalClient
from atoll.storage import (
    METHOD_GET_SHARD,
    DeviceConfig,
    DeviceFailed,
    DeviceFull,
    InvalidArgument,
    ProtocolError,
    ReadCache,
    ShardCorrupt,
    ShardId,
    ShardNotFound,
    StaleEpoch,
    StorageClient,
    StorageConfig,
    StorageService,
    UnknownDevice,
    shard_file_name,
    shard_relative_path,
)
from atoll.storage.devices import Device
from atoll.storage.messages import shard_id_to_proto
from page_cache import droppable_dir, resident_pages
from shard_helpers import encode, flip_bit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOST = "127.0.0.1"
EPOCH = 5
WAIT_S = 10.0


@dataclasses.dataclass
class Node:
    service: StorageService
    server: RpcServer
    client: StorageClient
    devices: dict[int, Path]
    failures: list[tuple[int, OSError]]
    epochs_seen: list[int]
    pools_seen: list[frozenset[int]]


@contextlib.asynccontextmanager
async def storage_node(
    devices: dict[int, Path],
    *,
    capacity_bytes: dict[int, int] | None = None,
    min_epoch: int = 0,
    config: StorageConfig | None = None,
    create: bool = True,
) -> AsyncIterator[Node]:
    """A storage service on `devices` behind a real RpcServer, and a client."""
    if create:
        for path in devices.values():
            path.mkdir(parents=True, exist_ok=True)
    capacity_bytes = capacity_bytes or {}
    failures: list[tuple[int, OSError]] = []
    epochs: list[int] = []
    pools_seen: list[frozenset[int]] = []

    def check_epoch(epoch: int, pools: frozenset[int]) -> str | None:
        epochs.append(epoch)
        pools_seen.append(pools)
        return f"the node's map is at epoch {min_epoch}" if epoch < min_epoch else None

    service = StorageService(
        {i: DeviceConfig(str(p), capacity_bytes.get(i, 0)) for i, p in devices.items()},
        check_epoch=check_epoch,
        on_device_failure=lambda device_id, err: failures.append((device_id, err)),
        config=config,
    )
    await service.start()
    server = RpcServer(
        service.rpc_handlers(), HOST, 0, client_stream_handlers=service.rpc_stream_handlers()
    )
    await server.start()
    rpc = await RpcClient.connect(HOST, server.port)
    try:
        yield Node(service, server, StorageClient(rpc), devices, failures, epochs, pools_seen)
    finally:
        await rpc.close()
        await server.stop()
        await service.stop()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def device_dirs(tmp_path: Path, count: int) -> dict[int, Path]:
    return {i: tmp_path / f"disk{i}" for i in range(count)}


def decode(shards: dict[int, bytes], layout: StripeLayout, data_length: int) -> bytes:
    """The part from any k whole shards (each its blocks end to end)."""
    codec = StripeCodec(layout)
    out = bytearray()
    at = 0
    for stripe in range(layout.stripe_count(data_length)):
        size = layout.block_bytes(data_length, stripe)
        pieces = codec.decode(
            {i: shard[at : at + size] for i, shard in shards.items()},
            layout.stripe_length(data_length, stripe),
        )
        for piece in pieces:
            out += piece
        at += size
    return bytes(out)


def shard_id(index: int, *, key: str = "photos/cat.jpg", pg: int = 7) -> ShardId:
    return ShardId(1, pg, "bucket", key, "v1", 0, index)


async def read_all(
    node: Node, device_id: int, shard: ShardId, *, offset: int = 0, length: int | None = None
) -> bytes:
    stream = node.client.get_shard(device_id, shard, epoch=EPOCH, offset=offset, length=length)
    return b"".join([bytes(piece) async for piece in stream])


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds (a wait for a state, not a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# -- put and get -------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "m"), [(1, 0), (1, 2), (2, 1), (4, 2), (8, 3)])
def test_put_then_get_whole_and_ranges_then_decode(tmp_path: Path, k: int, m: int) -> None:
    layout = StripeLayout(k, m, 8 * 1024)
    data = random.Random(k * 10 + m).randbytes(3 * layout.block_size + 1234)
    blocks = encode(data, layout)
    shard_data = [b"".join(b) for b in blocks]

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, layout.n)) as node:
            results = await asyncio.gather(
                *(
                    node.client.put_shard(
                        i, shard_id(i), layout, blocks[i], epoch=EPOCH, data_length=len(data)
                    )
                    for i in range(layout.n)
                )
            )
            for i, result in enumerate(results):
                path = node.devices[i] / shard_relative_path(shard_id(i))
                assert result.info.file_bytes == path.stat().st_size
                assert result.info.shard_bytes == len(shard_data[i])
                assert (result.info.data_length, result.replaced) == (len(data), False)
                assert await read_all(node, i, shard_id(i)) == shard_data[i]
            # Any k shards decode: here the last k, so parity is used wherever m > 0.
            last_k = {i: await read_all(node, i, shard_id(i)) for i in range(m, layout.n)}
            assert decode(last_k, layout, len(data)) == data
            full = layout.full_shard_bytes
            total = len(shard_data[0])
            for offset, length in [
                (0, 1),
                (full - 3, 7),  # across a block boundary
                (full, full),  # exactly one block
                (5, 2 * full + 10),
                (total - 1, 1),
                (total, 0),
                (17, None),  # to the end
            ]:
                expected = shard_data[0][offset : None if length is None else offset + length]
                got = await read_all(node, 0, shard_id(0), offset=offset, length=length)
                assert got == expected, (offset, length)

    run(body)


def test_put_with_the_length_known_only_at_the_end(tmp_path: Path) -> None:
    layout = StripeLayout(4, 2, 4096)
    data = random.Random(1).randbytes(5 * 4096 + 99)
    blocks = encode(data, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            length: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            async def stream() -> AsyncIterator[bytes]:
                for block in blocks[5]:
                    yield block
                length.set_result(len(data))  # as a chunked upload learns it at the end

            result = await node.client.put_shard(
                0, shard_id(5), layout, stream(), epoch=EPOCH, data_length=length
            )
            assert result.info.data_length == len(data)
            assert await read_all(node, 0, shard_id(5)) == b"".join(blocks[5])
            devices = await node.client.devices()
            assert devices[0].used_bytes == result.info.file_bytes
            assert devices[0].reserved_bytes == 0

    run(body)


def test_get_shard_keeps_drops_or_bypasses_the_page_cache_as_asked(tmp_path: Path) -> None:
    layout = StripeLayout(4, 2, 64 * 1024)
    data = random.Random(2).randbytes(20 * layout.block_size)
    blocks = encode(data, layout)
    want = b"".join(blocks[0])

    async def body() -> None:
        with droppable_dir(tmp_path) as directory:
            async with storage_node(device_dirs(directory, 1)) as node:
                await node.client.put_shard(
                    0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=len(data)
                )
                path = node.devices[0] / shard_relative_path(shard_id(0))

                async def read(cache: ReadCache) -> bytes:
                    stream = node.client.get_shard(0, shard_id(0), epoch=EPOCH, cache=cache)
                    return b"".join([bytes(piece) async for piece in stream])

                assert await read(ReadCache.KEEP) == want
                resident, pages = resident_pages(path)
                assert pages > 64 and resident == pages
                assert await read(ReadCache.DROP) == want
                assert resident_pages(path) == (0, pages)
                assert await read(ReadCache.KEEP) == want
                assert resident_pages(path) == (pages, pages)
                assert await read(ReadCache.BYPASS) == want
                assert resident_pages(path) == (0, pages)
                # An unknown mode (a newer sender) is refused, not read as KEEP.
                request = storage_pb2.GetShardRequest(
                    epoch=EPOCH, device_id=0, shard=shard_id_to_proto(shard_id(0)), cache=7
                )
                with pytest.raises(RpcRemoteError, match="unknown cache mode 7"):
                    stream = node.client.rpc.stream(METHOD_GET_SHARD, request.SerializeToString())
                    async for _ in stream:
                        pass

    run(body)


def test_a_second_put_replaces_the_shard_and_counts_once(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    first, second = encode(b"a" * 10_000, layout), encode(b"b" * 3000, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            await node.client.put_shard(
                0, shard_id(0), layout, first[0], epoch=EPOCH, data_length=10_000
            )
            result = await node.client.put_shard(
                0, shard_id(0), layout, second[0], epoch=EPOCH, data_length=3000
            )
            assert result.replaced
            assert await read_all(node, 0, shard_id(0)) == b"".join(second[0])
            (device,) = await node.client.devices()
            assert (device.used_bytes, device.shard_files) == (result.info.file_bytes, 1)

    run(body)


# -- crash leftovers ---------------------------------------------------------------------------


def test_leftover_temp_files_are_not_listed_and_are_removed_at_start_up(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"x" * 9000, layout)
    disk = tmp_path / "disk0"

    async def put_one() -> int:
        async with storage_node({0: disk}) as node:
            result = await node.client.put_shard(
                0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=9000
            )
            return result.info.file_bytes

    async def body() -> None:
        file_bytes = await put_one()
        pg_dir = disk / "pgs" / "1.7"
        # A crash in the middle of a write: the writer's temporary file, never finished.
        header = ShardHeader("bucket", "other", "", 0, 1, 2, 1, 4096, 9000)
        crashed = ShardWriter(str(pg_dir), "0" * 32 + ".0.1.shard", header)
        crashed.write_block(blocks[1][0])
        leftover = Path(crashed.temp_path)
        assert files_under(pg_dir) == sorted([shard_file_name(shard_id(0)), leftover.name])
        assert is_temp_name(leftover.name)
        async with storage_node({0: disk}) as node:
            assert files_under(pg_dir) == [shard_file_name(shard_id(0))]
            assert node.service.temp_files_removed == 1
            page = await node.client.list_pg(0, 1, 7, epoch=EPOCH)
            assert [s.info.shard if s.info else None for s in page.shards] == [shard_id(0)]
            (device,) = await node.client.devices()
            assert (device.used_bytes, device.shard_files) == (file_bytes, 1)
            # One that appears while the service runs (a write in flight) is not listed.
            (pg_dir / f".{'1' * 32}.0.2.shard.abcdef.tmp").write_bytes(b"partial")
            page = await node.client.list_pg(0, 1, 7, epoch=EPOCH)
            assert len(page.shards) == 1
        crashed.abort()  # the test's own descriptor; the file is already gone

    run(body)


# -- combine_shards ------------------------------------------------------------------------------


async def combined(
    node: Node,
    sources: list[tuple[int, ShardId, int]],
    *,
    offset: int,
    length: int,
    epoch: int = EPOCH,
) -> bytes:
    stream = node.client.combine_shards(sources, epoch=epoch, offset=offset, length=length)
    return b"".join([bytes(piece) async for piece in stream])


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


@pytest.mark.parametrize("batch_bytes", [1, 4 * 1024 * 1024])
def test_combine_shards_partials_sum_to_a_lost_shard(tmp_path: Path, batch_bytes: int) -> None:
    """Shard 1 of a 4+2 part rebuilt as a repair does it: shards 0 and 2 combined by
    their decode coefficients on one call, 3 and 4 on another, the results summed;
    whole and over a range that starts and ends inside blocks (one block per read
    batch, and several)."""
    layout = StripeLayout(4, 2, 4 * 4096)
    data = random.Random(9).randbytes(3 * layout.block_size + 1234)
    blocks = encode(data, layout)
    lost = b"".join(blocks[1])
    row = Codec(4, 2).decode_rows((0, 2, 3, 4), (1,))
    coefficient = dict(zip((0, 2, 3, 4), row, strict=True))
    config = StorageConfig(read_batch_bytes=batch_bytes)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, layout.n), config=config) as node:
            for i in range(layout.n):
                await node.client.put_shard(
                    i, shard_id(i), layout, blocks[i], epoch=EPOCH, data_length=len(data)
                )
            for offset, length in ((0, len(lost)), (1000, len(lost) - 1500), (5, 1)):
                halves = [
                    await combined(
                        node,
                        [(i, shard_id(i), coefficient[i]) for i in group],
                        offset=offset,
                        length=length,
                    )
                    for group in ((0, 2), (3, 4))
                ]
                assert xor(*halves) == lost[offset : offset + length], (offset, length)
            # One source of coefficient 1 is the shard itself.
            assert (
                await combined(node, [(5, shard_id(5), 1)], offset=0, length=100)
                == b"".join(blocks[5])[:100]
            )

    run(body)


def test_combine_shards_refuses_bad_sources_and_corrupt_blocks(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    data = random.Random(3).randbytes(3 * 4096)
    blocks = encode(data, layout)
    other = encode(data[:5000], layout)
    config = StorageConfig(read_batch_bytes=1)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 3), config=config, min_epoch=3) as node:
            for i in range(2):
                await node.client.put_shard(
                    i, shard_id(i), layout, blocks[i], epoch=EPOCH, data_length=len(data)
                )
            # Shard 2 of the same part name, but of an upload of another length.
            await node.client.put_shard(
                2, shard_id(2), layout, other[2], epoch=EPOCH, data_length=5000
            )
            good = [(0, shard_id(0), 1), (1, shard_id(1), 7)]
            assert len(await combined(node, good, offset=0, length=100)) == 100
            bad_sources: list[list[tuple[int, ShardId, int]]] = [
                [],
                [(0, shard_id(0), 0)],
                [(0, shard_id(0), 256)],
                [(0, shard_id(0), 1), (1, shard_id(0), 2)],  # the same index twice
                [(0, shard_id(0), 1), (1, shard_id(1, key="other"), 2)],  # two parts
                [(0, shard_id(0), 1), (2, shard_id(2), 2)],  # two uploads
            ]
            for sources in bad_sources:
                with pytest.raises(InvalidArgument):
                    await combined(node, sources, offset=0, length=100)
            with pytest.raises(InvalidArgument):  # past the shard's data
                await combined(node, good, offset=0, length=len(b"".join(blocks[0])) + 1)
            with pytest.raises(UnknownDevice):
                await combined(node, [(9, shard_id(0), 1)], offset=0, length=10)
            with pytest.raises(StaleEpoch):
                await combined(node, good, offset=0, length=10, epoch=2)
            with pytest.raises(ShardNotFound):
                await combined(node, [(0, shard_id(1), 1)], offset=0, length=10)
            # A flipped bit in block 1 of shard 1: block 0 is served, then the stream
            # fails; no byte of the bad block goes out.
            header_bytes = len(
                encode_header(ShardHeader("bucket", "photos/cat.jpg", "v1", 0, 1, 2, 1, 4096, 1))
            )
            path = node.devices[1] / shard_relative_path(shard_id(1))
            flip_bit(path, header_bytes + layout.full_shard_bytes + CRC_BYTES + 10)
            received = bytearray()
            with pytest.raises(ShardCorrupt) as caught:
                async for piece in node.client.combine_shards(
                    good, epoch=EPOCH, offset=0, length=len(b"".join(blocks[0]))
                ):
                    received += piece
            assert caught.value.block == 1 and caught.value.device_id == 1
            assert len(received) == layout.full_shard_bytes

    run(body)


# -- corruption --------------------------------------------------------------------------------


def test_a_flipped_bit_is_shard_corrupt_and_no_bad_byte_is_delivered(tmp_path: Path) -> None:
    layout = StripeLayout(4, 2, 4 * 4096)
    data = random.Random(2).randbytes(4 * layout.block_size)
    blocks = encode(data, layout)
    full = layout.full_shard_bytes
    header_bytes = len(
        encode_header(
            ShardHeader("bucket", "photos/cat.jpg", "v1", 0, 3, 4, 2, 4 * 4096, len(data))
        )
    )
    # One block per read, so the good blocks before the bad one are sent.
    config = StorageConfig(read_batch_bytes=1)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1), config=config) as node:
            await node.client.put_shard(
                0, shard_id(3), layout, blocks[3], epoch=EPOCH, data_length=len(data)
            )
            path = node.devices[0] / shard_relative_path(shard_id(3))
            flip_bit(path, header_bytes + 2 * (full + CRC_BYTES) + 100)  # in block 2
            received = bytearray()
            with pytest.raises(ShardCorrupt) as caught:
                async for piece in node.client.get_shard(0, shard_id(3), epoch=EPOCH):
                    received += piece
            assert caught.value.block == 2
            assert caught.value.device_id == 0
            assert caught.value.expected != caught.value.actual
            assert bytes(received) == blocks[3][0] + blocks[3][1]
            # A range in the bad block fails; one beside it is served.
            with pytest.raises(ShardCorrupt):
                await read_all(node, 0, shard_id(3), offset=2 * full + 50, length=10)
            assert (
                await read_all(node, 0, shard_id(3), offset=3 * full, length=full) == blocks[3][3]
            )
            # The header is intact: stat still works. Break it and stat fails too.
            assert (await node.client.stat(0, shard_id(3), epoch=EPOCH)).data_length == len(data)
            flip_bit(path, 20)
            with pytest.raises(ShardCorrupt):
                await node.client.stat(0, shard_id(3), epoch=EPOCH)
            page = await node.client.list_pg(0, 1, 7, epoch=EPOCH)
            assert [(s.info, bool(s.error)) for s in page.shards] == [(None, True)]
            # A corrupt file can still be deleted (the repairer rewrites the shard).
            assert await node.client.delete(0, shard_id(3), epoch=EPOCH)

    run(body)


def test_a_file_holding_another_shard_is_corrupt_not_served(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"y" * 5000, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            await node.client.put_shard(
                0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=5000
            )
            disk = node.devices[0]
            # Misplaced: the file of shard 0 under the name of shard 1.
            (disk / shard_relative_path(shard_id(0))).rename(
                disk / shard_relative_path(shard_id(1))
            )
            with pytest.raises(ShardCorrupt):
                await read_all(node, 0, shard_id(1))
            with pytest.raises(ShardCorrupt):
                await node.client.delete(0, shard_id(1), epoch=EPOCH)
            assert (disk / shard_relative_path(shard_id(1))).exists()

    run(body)


# -- capacity ----------------------------------------------------------------------------------


def test_a_tiny_device_is_full_and_keeps_no_file(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    data = b"z" * 20_000
    blocks = encode(data, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1), capacity_bytes={0: 3000}) as node:
            with pytest.raises(DeviceFull) as caught:
                await node.client.put_shard(
                    0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=len(data)
                )
            assert caught.value.free_bytes == 3000
            assert caught.value.needed_bytes > 3000
            # Length unknown up front: refused part way, once the blocks outgrow it.
            length: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            length.set_result(len(data))
            with pytest.raises(DeviceFull):
                await node.client.put_shard(
                    0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=length
                )
            assert files_under(node.devices[0]) == []  # no shard file, no temporary file
            (device,) = await node.client.devices()
            assert (device.used_bytes, device.reserved_bytes, device.capacity_bytes) == (0, 0, 3000)

    run(body)


def test_concurrent_puts_on_one_device_do_not_overcommit(tmp_path: Path) -> None:
    layout = StripeLayout(1, 0, 4096)
    data = random.Random(3).randbytes(3 * 4096)
    (blocks,) = encode(data, layout)
    file_bytes = (
        len(encode_header(ShardHeader("bucket", "k0", "v1", 0, 0, 1, 0, 4096, len(data))))
        + len(data)
        + 3 * CRC_BYTES
    )
    capacity = 3 * file_bytes + file_bytes // 2  # room for three and a half files

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1), capacity_bytes={0: capacity}) as node:
            release = asyncio.Event()

            async def gated() -> AsyncIterator[bytes]:
                await release.wait()  # the request (and its reservation) is already sent
                for block in blocks:
                    yield block

            puts = [
                asyncio.create_task(
                    node.client.put_shard(
                        0,
                        shard_id(0, key=f"k{i}"),
                        layout,
                        gated(),
                        epoch=EPOCH,
                        data_length=len(data),
                    )
                )
                for i in range(6)
            ]

            async def three_reserved() -> bool:
                (device,) = await node.client.devices()
                return device.reserved_bytes == 3 * file_bytes

            await wait_for(three_reserved, "three puts holding reservations at once")
            release.set()
            outcomes = await asyncio.gather(*puts, return_exceptions=True)
            done = [o for o in outcomes if not isinstance(o, BaseException)]
            full = [o for o in outcomes if isinstance(o, DeviceFull)]
            assert (len(done), len(full)) == (3, 3), outcomes
            (device,) = await node.client.devices()
            assert (device.used_bytes, device.reserved_bytes) == (3 * file_bytes, 0)
            assert device.used_bytes <= capacity
            assert len(files_under(node.devices[0])) == 3

    run(body)


def test_concurrent_puts_of_unknown_length_do_not_overcommit(tmp_path: Path) -> None:
    layout = StripeLayout(1, 0, 4096)
    data = random.Random(4).randbytes(8 * 4096)
    (blocks,) = encode(data, layout)
    capacity = int(2.5 * len(data))

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1), capacity_bytes={0: capacity}) as node:
            loop = asyncio.get_running_loop()

            async def put(i: int) -> object:
                length = loop.create_future()
                length.set_result(len(data))
                return await node.client.put_shard(
                    0, shard_id(0, key=f"k{i}"), layout, blocks, epoch=EPOCH, data_length=length
                )

            outcomes = await asyncio.gather(*(put(i) for i in range(5)), return_exceptions=True)
            assert all(
                isinstance(o, DeviceFull) or not isinstance(o, BaseException) for o in outcomes
            ), outcomes
            done = [o for o in outcomes if not isinstance(o, BaseException)]
            # At most two fit. (Possibly none: puts refused at once may all fail before
            # any of them has given its reservation back.)
            assert len(done) <= 2
            (device,) = await node.client.devices()
            assert device.reserved_bytes == 0
            assert device.used_bytes <= capacity
            assert (
                sum(p.stat().st_size for p in node.devices[0].rglob("*") if p.is_file())
                == device.used_bytes
            )
            assert not [p for p in node.devices[0].rglob("*") if is_temp_name(p.name)]

    run(body)


def test_a_cancelled_put_leaves_no_file_and_no_reservation(tmp_path: Path) -> None:
    layout = StripeLayout(1, 0, 4096)
    (blocks,) = encode(b"c" * 4 * 4096, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            sent_one = asyncio.Event()

            async def stalls() -> AsyncIterator[bytes]:
                yield blocks[0]
                sent_one.set()
                await asyncio.Event().wait()  # never sends the rest
                yield blocks[1]

            put = asyncio.create_task(
                node.client.put_shard(
                    0, shard_id(0), layout, stalls(), epoch=EPOCH, data_length=4 * 4096
                )
            )
            await sent_one.wait()

            async def writing() -> bool:
                return (await node.client.devices())[0].reserved_bytes > 0 and any(
                    is_temp_name(p.name) for p in node.devices[0].rglob("*")
                )

            await wait_for(writing, "the put's temporary file")
            put.cancel()
            with pytest.raises(asyncio.CancelledError):
                await put

            async def cleaned() -> bool:
                (device,) = await node.client.devices()
                return device.reserved_bytes == 0 and files_under(node.devices[0]) == []

            await wait_for(cleaned, "the cancelled put's cleanup")

    run(body)


class HeldOpen:
    """`Device.<method>` (opening a shard file: the real method, on the real files)
    made to wait, once the file is open, until the test lets it return: a caller can
    be cancelled while its open runs. Only the timing is patched, nothing it does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
        self.opening = threading.Event()
        self.release = threading.Event()
        self.opened: list[Any] = []
        real = getattr(Device, method)

        def held(device: Device, *args: Any) -> Any:
            result = real(device, *args)
            self.opened.append(result)
            self.opening.set()
            self.release.wait(WAIT_S)
            return result

        monkeypatch.setattr(Device, method, held)

    async def cancel_while_opening(self, task: asyncio.Task[Any]) -> None:
        await asyncio.to_thread(self.opening.wait, WAIT_S)
        assert self.opening.is_set(), "the open never started"
        task.cancel()  # delivered before the thread's return, which comes after it
        self.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_read_cancelled_while_its_file_opens_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `LocalClient` (as the repairer's own reads go), cancelling the caller
    cancels the handler at once, inside the open: what the open returns after that is
    closed, not leaked."""
    layout = StripeLayout(1, 0, 4096)
    (blocks,) = encode(b"o" * 4096, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            await node.client.put_shard(
                0, shard_id(0), layout, blocks, epoch=EPOCH, data_length=4096
            )
            held = HeldOpen(monkeypatch, "open_reader_sync")
            local = StorageClient(
                LocalClient(node.service.rpc_handlers(), node.service.rpc_stream_handlers())
            )

            async def read() -> None:
                async for _ in local.get_shard(0, shard_id(0), epoch=EPOCH):
                    raise AssertionError("the read was to be cancelled before any byte")

            await held.cancel_while_opening(asyncio.create_task(read()))
            (reader,) = held.opened

            async def closed() -> bool:
                return bool(reader.closed)

            await wait_for(closed, "the abandoned reader's close")

    run(body)


def test_a_put_cancelled_while_its_file_opens_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = StripeLayout(1, 0, 4096)
    (blocks,) = encode(b"w" * 4096, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            held = HeldOpen(monkeypatch, "open_writer_sync")
            local = StorageClient(
                LocalClient(node.service.rpc_handlers(), node.service.rpc_stream_handlers())
            )
            put = asyncio.create_task(
                local.put_shard(0, shard_id(0), layout, blocks, epoch=EPOCH, data_length=4096)
            )
            await held.cancel_while_opening(put)
            assert len(held.opened) == 1

            async def cleaned() -> bool:
                (device,) = await node.client.devices()
                return device.reserved_bytes == 0 and files_under(node.devices[0]) == []

            await wait_for(cleaned, "the abandoned writer's temporary file removed")

    run(body)


# -- list, stat, delete --------------------------------------------------------------------------


def test_list_stat_and_delete(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"l" * 6000, layout)
    shards = [shard_id(0, key=f"key-{i}") for i in range(5)] + [shard_id(0, key="elsewhere", pg=8)]

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            for shard in shards:
                await node.client.put_shard(
                    0, shard, layout, blocks[0], epoch=EPOCH, data_length=6000
                )
            listed = []
            start_after = ""
            while True:
                page = await node.client.list_pg(
                    0, 1, 7, epoch=EPOCH, start_after=start_after, limit=2
                )
                assert len(page.shards) <= 2
                listed += page.shards
                if not page.next_start_after:
                    break
                start_after = page.next_start_after
            names = [s.file_name for s in listed]
            assert names == sorted(names)
            assert {s.info.shard for s in listed if s.info} == set(shards[:5])
            (other,) = (await node.client.list_pg(0, 1, 8, epoch=EPOCH)).shards
            assert other.info is not None and other.info.shard == shards[5]
            assert (await node.client.list_pg(0, 2, 7, epoch=EPOCH)).shards == []
            info = await node.client.stat(0, shards[2], epoch=EPOCH)
            path = node.devices[0] / shard_relative_path(shards[2])
            assert (info.shard, info.file_bytes, info.k, info.m) == (
                shards[2],
                path.stat().st_size,
                2,
                1,
            )
            before = (await node.client.devices())[0]
            assert await node.client.delete(0, shards[2], epoch=EPOCH)
            assert not path.exists()
            after = (await node.client.devices())[0]
            assert after.used_bytes == before.used_bytes - info.file_bytes
            assert after.shard_files == before.shard_files - 1
            assert not await node.client.delete(0, shards[2], epoch=EPOCH)  # idempotent
            with pytest.raises(ShardNotFound):
                await node.client.stat(0, shards[2], epoch=EPOCH)
            with pytest.raises(ShardNotFound):
                await read_all(node, 0, shards[2])

    run(body)


def test_listings_reread_a_header_only_when_the_file_changed(tmp_path: Path) -> None:
    """The device remembers headers by (inode, size, mtime): a file changed in any of
    them is read again; one changed behind the service's back with all three kept is
    not (which is why scrub reads whole files, headers included)."""
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"h" * 6000, layout)
    shards = [shard_id(0, key=f"key-{i}") for i in range(3)]

    def damage(paths: list[Path]) -> None:
        # key-0: the header's magic overwritten in place, inode, size and mtime kept.
        before = paths[0].stat()
        with open(paths[0], "r+b") as file:
            file.write(b"XXXX")
        os.utime(paths[0], ns=(before.st_atime_ns, before.st_mtime_ns))
        # key-1: truncated by a byte; key-2: the same damage as key-0's with a new mtime.
        with open(paths[1], "r+b") as file:
            file.truncate(before.st_size - 1)
        with open(paths[2], "r+b") as file:
            file.write(b"XXXX")
        os.utime(paths[2], ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))

    async def listed(node: Node) -> dict[str, bool]:
        page = await node.client.list_pg(0, 1, 7, epoch=EPOCH)
        return {
            s.info.shard.key if s.info else s.file_name: s.info is not None for s in page.shards
        }

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            for shard in shards:
                await node.client.put_shard(
                    0, shard, layout, blocks[0], epoch=EPOCH, data_length=6000
                )
            assert await listed(node) == {"key-0": True, "key-1": True, "key-2": True}
            paths = [node.devices[0] / shard_relative_path(s) for s in shards]
            damage(paths)
            now = await listed(node)
            assert now["key-0"] is True  # remembered: the listing did not open it
            assert sorted(k for k, ok in now.items() if not ok) == sorted(p.name for p in paths[1:])
            # Reading key-0 checks its header from the file: the damage is found there.
            with pytest.raises(ShardCorrupt):
                await read_all(node, 0, shards[0])

    run(body)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 0])
def test_list_pgs_pages_through_many_pgs_like_list_pg_one_by_one(
    tmp_path: Path, limit: int
) -> None:
    """Several PGs in one `list_pgs`, resumed page after page (pages end inside a PG
    and between PGs): the same entries, corrupt files included, as `list_pg` of each
    PG; PGs without files (or without a directory) contribute nothing."""
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"p" * 6000, layout)
    files = {7: 3, 8: 0, 9: 1, 11: 4}  # pg -> shard files
    pgs = [(1, 9), (1, 7), (1, 8), (2, 7), (1, 11)]  # (1, 8) and (2, 7): none

    async def body() -> None:
        config = StorageConfig(list_pgs_max=len(pgs))
        async with storage_node(device_dirs(tmp_path, 1), config=config) as node:
            for pg, count in files.items():
                for i in range(count):
                    shard = shard_id(0, key=f"k{i}", pg=pg)
                    await node.client.put_shard(
                        0, shard, layout, blocks[0], epoch=EPOCH, data_length=6000
                    )
            bad = node.devices[0] / shard_relative_path(shard_id(0, key="k2", pg=11))
            bad.write_bytes(b"\0" * 64)  # no longer a shard file: listed with an error
            empty = node.devices[0] / shard_relative_path(shard_id(0, pg=8))
            empty.parent.mkdir(parents=True, exist_ok=True)  # a PG directory, no file

            got: dict[int, list[tuple[str, ShardId | None, bool]]] = {}
            index, start_after, pages = 0, "", 0
            while index < len(pgs):
                page = await node.client.list_pgs(
                    0, pgs, epoch=EPOCH, start_index=index, start_after=start_after, limit=limit
                )
                pages += 1
                assert sum(len(entries) for _, entries in page.pgs) <= (limit or 1000)
                assert (page.next_index, page.next_start_after) > (index, start_after)
                for n, entries in page.pgs:
                    assert entries and index <= n < len(pgs)
                    got.setdefault(n, []).extend(
                        (e.file_name, e.info.shard if e.info else None, bool(e.error))
                        for e in entries
                    )
                index, start_after = page.next_index, page.next_start_after
            assert pages < 20
            expected: dict[int, list[tuple[str, ShardId | None, bool]]] = {}
            for n, (pool_id, pg) in enumerate(pgs):
                one = (await node.client.list_pg(0, pool_id, pg, epoch=EPOCH)).shards
                if one:
                    expected[n] = [
                        (e.file_name, e.info.shard if e.info else None, bool(e.error)) for e in one
                    ]
            assert got == expected
            assert sorted(got) == [0, 1, 4]
            assert [len(got[n]) for n in (0, 1, 4)] == [1, 3, 4]
            assert [e for e in got[4] if e[2]] == [(bad.name, None, True)]

            with pytest.raises(InvalidArgument):
                await node.client.list_pgs(0, [*pgs, (1, 12)], epoch=EPOCH)
            with pytest.raises(UnknownDevice):
                await node.client.list_pgs(9, pgs, epoch=EPOCH)

    run(body)


# -- refusals ------------------------------------------------------------------------------------


def test_unknown_device_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"u" * 5000, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1)) as node:
            client = node.client
            with pytest.raises(UnknownDevice):
                await client.put_shard(
                    9, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=5000
                )
            with pytest.raises(UnknownDevice):
                await read_all(node, 9, shard_id(0))
            with pytest.raises(UnknownDevice):
                await client.stat(9, shard_id(0), epoch=EPOCH)
            with pytest.raises(UnknownDevice):
                await client.list_pg(9, 1, 7, epoch=EPOCH)
            # A block whose CRC-32C does not match what was sent with it.
            with pytest.raises(InvalidArgument):
                await client.put_shard(
                    0,
                    shard_id(0),
                    layout,
                    [(blocks[0][0], 1234), blocks[0][1]],
                    epoch=EPOCH,
                    data_length=5000,
                )
            # More blocks than the declared length has; a shard index past k + m.
            with pytest.raises(InvalidArgument):
                await client.put_shard(
                    0, shard_id(0), layout, blocks[0] * 2, epoch=EPOCH, data_length=5000
                )
            with pytest.raises(InvalidArgument):
                await client.put_shard(
                    0, shard_id(3), layout, blocks[0], epoch=EPOCH, data_length=5000
                )
            assert files_under(node.devices[0]) == []
            await client.put_shard(0, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=5000)
            with pytest.raises(InvalidArgument):
                await read_all(node, 0, shard_id(0), offset=2000, length=2000)

    run(body)


def test_a_stale_epoch_is_refused_through_the_hook(tmp_path: Path) -> None:
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"e" * 5000, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 1), min_epoch=7) as node:
            client = node.client
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: client.put_shard(
                    0, shard_id(0), layout, blocks[0], epoch=6, data_length=5000
                ),
                lambda: read_all_at(node, 6),
                lambda: client.stat(0, shard_id(0), epoch=6),
                lambda: client.list_pg(0, 1, 7, epoch=6),
                lambda: client.list_pgs(0, [(1, 7), (1, 8)], epoch=6),
                lambda: client.delete(0, shard_id(0), epoch=6),
            ]
            for call in calls:
                with pytest.raises(StaleEpoch) as caught:
                    await call()
                assert caught.value.epoch == 6
                assert "epoch 7" in str(caught.value)
            assert node.epochs_seen == [6] * len(calls)
            # The hook learns the pools of the shards asked about (the node refuses
            # only when one of their PG tables changed since the routing epoch).
            assert node.pools_seen == [frozenset({1})] * len(calls)
            assert files_under(node.devices[0]) == []
            await client.put_shard(0, shard_id(0), layout, blocks[0], epoch=7, data_length=5000)

    async def read_all_at(node: Node, epoch: int) -> bytes:
        return b"".join(
            [bytes(p) async for p in node.client.get_shard(0, shard_id(0), epoch=epoch)]
        )

    run(body)


# -- failed devices ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["replaced_by_a_file", "removed"])
def test_a_failed_device_is_reported_once_and_refuses_requests(tmp_path: Path, how: str) -> None:
    """The device directory is replaced by a file (every path under it then fails with
    ENOTDIR, as on a disk whose file system is gone) or removed (the service sees its
    directory is not the one found at start-up). Running as root, permissions cannot
    make a directory unwritable, and a read-only bind mount needs CAP_SYS_ADMIN, so
    the directory itself is what the test breaks."""
    layout = StripeLayout(2, 1, 4096)
    blocks = encode(b"f" * 5000, layout)

    async def body() -> None:
        async with storage_node(device_dirs(tmp_path, 2)) as node:
            client = node.client
            for device_id in (0, 1):
                await client.put_shard(
                    device_id, shard_id(0), layout, blocks[0], epoch=EPOCH, data_length=5000
                )
            broken = node.devices[0]
            shutil.rmtree(broken)
            if how == "replaced_by_a_file":
                broken.write_bytes(b"not a directory")
                with pytest.raises(DeviceFailed):
                    await read_all(node, 0, shard_id(0))
            else:
                with pytest.raises(DeviceFailed):
                    await client.put_shard(
                        0, shard_id(1), layout, blocks[1], epoch=EPOCH, data_length=5000
                    )
            assert [device_id for device_id, _ in node.failures] == [0]
            expected = errno.ENOTDIR if how == "replaced_by_a_file" else errno.ENODEV
            assert node.failures[0][1].errno == expected
            # Refused from now on, without touching the disk or telling the node again.
            with pytest.raises(DeviceFailed):
                await client.put_shard(
                    0, shard_id(1), layout, blocks[1], epoch=EPOCH, data_length=5000
                )
            with pytest.raises(DeviceFailed):
                await client.stat(0, shard_id(0), epoch=EPOCH)
            assert len(node.failures) == 1
            devices = {d.device_id: d for d in await client.devices()}
            assert devices[0].failed and devices[0].failure
            assert not devices[1].failed
            assert await read_all(node, 1, shard_id(0)) == b"".join(blocks[0])
            if how == "removed":
                assert not broken.exists()  # a put must not recreate a vanished device

    run(body)


def test_a_device_missing_at_start_up_is_failed(tmp_path: Path) -> None:
    async def body() -> None:
        devices = device_dirs(tmp_path, 2)
        devices[1].mkdir()
        async with storage_node(devices, create=False) as node:
            assert [device_id for device_id, _ in node.failures] == [0]
            with pytest.raises(DeviceFailed):
                await node.client.stat(0, shard_id(0), epoch=EPOCH)
            with pytest.raises(ShardNotFound):
                await node.client.stat(1, shard_id(0), epoch=EPOCH)

    run(body)


# -- the client's own checks ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["bad_crc", "gap", "short"])
def test_the_client_refuses_a_damaged_or_broken_get_stream(damage: str) -> None:
    """A fake peer (a plain handler, not the service) sends chunks that the service
    would never send; the client must not hand those bytes on."""
    good, second = b"first block", b"second block"

    async def handler(message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        yield (
            storage_pb2.GetShardChunk(offset=0, crc32c=crc32c.crc32c(good)).SerializeToString(),
            good,
        )
        if damage == "short":
            return
        offset = len(good) + (5 if damage == "gap" else 0)
        crc = crc32c.crc32c(second) ^ (1 if damage == "bad_crc" else 0)
        yield storage_pb2.GetShardChunk(offset=offset, crc32c=crc).SerializeToString(), second

    async def body() -> None:
        server = RpcServer({METHOD_GET_SHARD: handler}, HOST, 0)
        await server.start()
        rpc = await RpcClient.connect(HOST, server.port)
        try:
            client = StorageClient(rpc)
            received = bytearray()
            expected_error = ShardCorrupt if damage == "bad_crc" else ProtocolError
            with pytest.raises(expected_error):
                async for piece in client.get_shard(
                    0, shard_id(0), epoch=EPOCH, length=len(good) + len(second)
                ):
                    received += piece
            assert received == good
        finally:
            await rpc.close()
            await server.stop()

    run(body)
