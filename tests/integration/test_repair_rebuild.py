"""`Repairer.rebuild` against real storage services: three "nodes" in this process,
each a `StorageService` over two device directories under tmp_path behind a real
`RpcServer` on 127.0.0.1, the repairer being node 1's (its own service in process).

A 4+2 part of several read windows (the last stripe short) is put on the six
devices, the shard at position 0 deleted and rebuilt; the file the rebuild wrote
must hold the very bytes the gateway wrote. Once through partial sums alone, once
with a source block of the node that sends a partial sum flipped in the second
window, so that the rebuild goes on from whole shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from atoll.erasure.shard_format import CRC_BYTES, ShardHeader, encode_header
from atoll.erasure.stripe import StripeLayout
from atoll.gateway.datapath import READ_WINDOW_BYTES
from atoll.gateway.repair import PassStats, RepairConfig, Repairer
from atoll.gateway.repair_core import PgListing
from atoll.meta.cluster_map import DEVICE_IN, NODE_UP, ClusterMap, DeviceRecord, NodeRecord
from atoll.rpc import LocalClient, RpcPool, RpcServer
from atoll.storage import (
    DeviceConfig,
    ShardId,
    StorageClient,
    StorageService,
    shard_relative_path,
)
from atoll.storage.messages import DeviceInfo, ShardInfo
from shard_helpers import NoIndex, encode, flip_bit

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOST = "127.0.0.1"
EPOCH = 9
BLOCK = 64 * 1024  # stripe bytes: 16 KiB shard blocks at 4+2
PART = ("bucket", "photos/cat.jpg", "v1", 0)
MEMBERS = (11, 12, 13, 21, 22, 23)  # position i on node i % 3 + 1 (device 10|20 + node)


def shard_id(index: int) -> ShardId:
    return ShardId(1, 7, PART[0], PART[1], PART[2], PART[3], index)


class _NoDevices:
    def device_infos(self) -> list[DeviceInfo]:
        return []

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]:
        return []


@contextlib.asynccontextmanager
async def three_nodes(
    tmp_path: Path,
) -> AsyncIterator[tuple[ClusterMap, dict[int, StorageService]]]:
    services: dict[int, StorageService] = {}
    servers: list[RpcServer] = []
    nodes: dict[int, NodeRecord] = {}
    devices: dict[int, DeviceRecord] = {}
    try:
        for n in (1, 2, 3):
            dirs = {d: tmp_path / f"disk{d}" for d in (10 + n, 20 + n)}
            for path in dirs.values():
                path.mkdir()
            service = StorageService(
                {d: DeviceConfig(str(p), 0) for d, p in dirs.items()},
                check_epoch=lambda epoch, pools: None,
                on_device_failure=lambda device_id, err: None,
            )
            await service.start()
            services[n] = service
            server = RpcServer(
                service.rpc_handlers(),
                HOST,
                0,
                client_stream_handlers=service.rpc_stream_handlers(),
            )
            await server.start()
            servers.append(server)
            nodes[n] = NodeRecord(n, f"{HOST}:{server.port}", "", "", "", NODE_UP, True)
            for d in dirs:
                devices[d] = DeviceRecord(d, n, str(dirs[d]), 1 << 30, DEVICE_IN)
        yield ClusterMap(epoch=EPOCH, nodes=nodes, devices=devices), services
    finally:
        for server in servers:
            await server.stop()
        for service in services.values():
            await service.stop()


@pytest.mark.parametrize("damaged", [False, True])
def test_a_rebuilt_shard_is_the_one_that_was_lost(
    tmp_path: Path, damaged: bool, caplog: pytest.LogCaptureFixture
) -> None:
    layout = StripeLayout(4, 2, BLOCK)
    stripes_per_window = READ_WINDOW_BYTES // BLOCK
    data = random.Random(6).randbytes((2 * stripes_per_window + 3) * BLOCK + 777)
    blocks = encode(data, layout)
    assert len(blocks[0]) > 2 * stripes_per_window  # three windows, a short last stripe

    async def body() -> None:
        async with three_nodes(tmp_path) as (m, services):
            pool = RpcPool()
            infos: dict[int, ShardInfo] = {}
            try:
                for i, device_id in enumerate(MEMBERS):
                    node = m.devices[device_id].node_id
                    client = StorageClient(await pool.get(m.nodes[node].rpc))
                    result = await client.put_shard(
                        device_id,
                        shard_id(i),
                        layout,
                        blocks[i],
                        epoch=EPOCH,
                        data_length=len(data),
                    )
                    infos[i] = result.info
                assert await services[1].local_delete(11, shard_id(0)) is not None
                if damaged:
                    # Shard 4 (node 2, which holds 1 and 4: it sends their partial sum),
                    # first block of the second window.
                    header = encode_header(ShardHeader(*PART, 4, 4, 2, BLOCK, len(data)))
                    stride = layout.full_shard_bytes + CRC_BYTES
                    path = tmp_path / "disk22" / shard_relative_path(shard_id(4))
                    flip_bit(path, len(header) + stripes_per_window * stride + 5)
                local = LocalClient(services[1].rpc_handlers(), services[1].rpc_stream_handlers())
                repairer = Repairer(
                    1,
                    _NoDevices(),
                    local,
                    pool,
                    NoIndex(),
                    lambda: m,
                    clock=asyncio.get_running_loop().time,
                    wall_clock=lambda: 0.0,
                    sleep=asyncio.sleep,
                    config=RepairConfig(bytes_per_s=0),
                )
                held: list[dict[tuple[str, str, str, int], ShardInfo] | None] = [
                    {} if i == 0 else {PART: infos[i]} for i in range(6)
                ]
                listing = PgListing(1, 7, 4, 2, MEMBERS, held)
                stats = PassStats(epoch=EPOCH)
                with caplog.at_level(logging.WARNING, logger="atoll.gateway.repair"):
                    await repairer.rebuild(m, listing, PART, 0, stats)
                rebuilt = StorageClient(local).get_shard(11, shard_id(0), epoch=EPOCH)
                assert b"".join([bytes(p) async for p in rebuilt]) == b"".join(blocks[0])
                assert stats.shards_rebuilt == 1
                fell_back = [r for r in caplog.records if "pre-combined read failed" in r.message]
                assert len(fell_back) == (1 if damaged else 0)
            finally:
                await pool.close()

    asyncio.run(body())
