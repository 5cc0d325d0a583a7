"""The object data path: a part's bytes to and from its shard files on the storage
nodes (issue 5 §1; shared/DESIGN.md §5). Does network I/O (through `StorageClient`)
and runs the erasure coding in worker threads.

Writing (`write_part`): the body is cut into stripes of `block_size` bytes; each
stripe is encoded (and its blocks' CRC-32C computed) in a worker thread, and block
`i` goes to a bounded queue feeding the `put_shard` stream of shard `i` to PG member
`i`. At most `PIPELINE_STRIPES` stripes wait in a queue, so a request holds a few
stripes of memory however large the part. A shard whose device is out of service, or
whose stream fails, is dropped and the write goes on; the caller commits the part
only if at least `W = write_quorum(k, m)` shards ended durable (`WrittenPart.durable`).

Reading (`read_part`): the range is read a window of stripes at a time. The data
shards the window touches are fetched in parallel (each `get_shard` verifies every
block's CRC-32C on the node and on arrival); the bytes are sliced straight out of
them, no copy and no decode. When a shard cannot be read (node down, device failed,
corrupt block), the window is fetched again from enough other shards and decoded in
a worker thread: a degraded read, counted in `DataPath.degraded_stripes`. The next
window is fetched while the current one is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence

import crc32c

from atoll.base import workers
from atoll.base.errors import invariant
from atoll.base.memory import unfilled_bytearray
from atoll.erasure import StripeCodec, StripeLayout
from atoll.gateway.errors import ServiceUnavailable
from atoll.meta.cluster_map import (
    DEVICE_FAILED,
    NODE_DRAINING,
    NODE_UP,
    ClusterMap,
    in_service,
)
from atoll.objects.manifest import write_quorum
from atoll.rpc import RpcCaller, RpcError, RpcPool
from atoll.storage import StorageClient
from atoll.storage.errors import StaleEpoch, StorageError
from atoll.storage.layout import ShardId

log = logging.getLogger("atoll.gateway.datapath")

PIPELINE_STRIPES = 4
"""Stripes encoded ahead of the slowest shard stream (memory per write: about this
many stripes times (k + m) / k)."""

READ_WINDOW_BYTES = 4 * 1024 * 1024
"""Object bytes fetched per window on a read (at least one stripe)."""

MAP_WAIT_S = 2.0
"""Longest a read waits for this node's map to catch up with a storage node's."""
MAP_POLL_S = 0.05

SHARD_TIMEOUT_S = 10.0
"""Longest wait for a storage node (each chunk or window of a shard stream)."""

_SHARD_ERRORS = (RpcError, StorageError, OSError, ValueError)

_Block = tuple[bytes | memoryview, int]  # a block and its CRC-32C
WindowShards = dict[int, list[memoryview]]
"""A read window's shards by index: each its blocks of the window's stripes, in order."""


@dataclasses.dataclass(frozen=True, slots=True)
class PartTarget:
    """Where one part's shard files go or come from: the pool's code, the PG, the
    device of each shard index (`members[i]`), and the names of the files."""

    pool_id: int
    k: int
    m: int
    pg: int
    members: tuple[int, ...]
    epoch: int
    bucket: str
    key: str
    version_id: str
    part_number: int
    block_size: int

    def shard(self, index: int) -> ShardId:
        return ShardId(
            self.pool_id, self.pg, self.bucket, self.key, self.version_id, self.part_number, index
        )

    @property
    def layout(self) -> StripeLayout:
        return StripeLayout(self.k, self.m, self.block_size)


@dataclasses.dataclass(frozen=True, slots=True)
class WrittenPart:
    size: int
    durable: tuple[int, ...]


class _Short(Exception):
    """Fewer than k shards of a window could be read (and whether a node refused the
    routing epoch)."""

    def __init__(self, message: str, stale: bool) -> None:
        super().__init__(message)
        self.message = message
        self.stale = stale


class _Codecs(threading.local):
    """One StripeCodec per (k, m, block size) per worker thread (they are not
    thread-safe and hold buffers)."""

    def __init__(self) -> None:
        self.codecs: dict[tuple[int, int, int], StripeCodec] = {}

    def get(self, layout: StripeLayout) -> StripeCodec:
        key = (layout.k, layout.m, layout.block_size)
        codec = self.codecs.get(key)
        if codec is None:
            codec = self.codecs[key] = StripeCodec(layout)
        return codec


_codecs = _Codecs()


def _encode(layout: StripeLayout, stripe: bytearray, fill: int) -> list[_Block]:
    """The k + m blocks of the stripe's first `fill` bytes with their CRC-32C (worker
    thread). Data blocks are views of `stripe` (which the caller never reuses),
    parity and padded blocks copies (the codec reuses its buffers)."""
    shards = _codecs.get(layout).encode(memoryview(stripe)[:fill])
    out: list[_Block] = []
    for shard in shards:
        block: bytes | memoryview = shard if shard.obj is stripe else bytes(shard)
        out.append((block, crc32c.crc32c(block)))
    return out


async def _offer(
    queue: asyncio.Queue[_Block | None], item: _Block | None, task: asyncio.Task[None]
) -> None:
    """Put `item` in the queue of a shard stream unless that stream has ended (failed):
    a dead stream must not block the others."""
    if task.done():
        return
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait((put, task), return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()


def _decode(layout: StripeLayout, shards: dict[int, memoryview], stripe_length: int) -> bytes:
    """The stripe's bytes from any k of its shards (worker thread)."""
    return b"".join(_codecs.get(layout).decode(shards, stripe_length))


def rebuild_blocks(
    layout: StripeLayout, size: int, window: range, shards: WindowShards, wanted: int
) -> list[bytes]:
    """Shard `wanted`'s blocks of the window's stripes, rebuilt from any k other
    shards' blocks of the window (`DataPath.fetch`): the repair path (worker thread;
    the blocks are fresh copies). No CRC-32C: the repairer writes them to its own
    node, whose storage service computes the one it stores."""
    codec = _codecs.get(layout)
    out: list[bytes] = []
    for n, stripe in enumerate(window):
        stripe_length = layout.stripe_length(size, stripe)
        pieces = {i: blocks[n] for i, blocks in shards.items()}
        out.append(bytes(codec.reconstruct(pieces, stripe_length, (wanted,))[0]))
    return out


class DataPath:
    def __init__(self, pool: RpcPool, cluster_map: Callable[[], ClusterMap]) -> None:
        self._pool = pool
        self._map = cluster_map
        self._local: tuple[int, RpcCaller] | None = None
        self.degraded_stripes = 0
        """Stripes read by decoding from parity since start (the degraded_reads
        counter)."""

    def use_local(self, node_id: int, caller: RpcCaller) -> None:
        """Reach the shard service of node `node_id` (this process's own) through
        `caller` (a `LocalClient`) instead of a connection to itself."""
        self._local = (node_id, caller)

    async def _client(self, device_id: int, *, write: bool) -> tuple[StorageClient, int]:
        """The storage client of the node holding `device_id`, and the map epoch to
        route with. Raises `ServiceUnavailable` when the map says the device cannot
        serve (failed, or its node down; for a write also a node out or draining), so
        its shard is skipped at once instead of after a timeout."""
        m = self._map()
        device = m.devices.get(device_id)
        node = m.nodes.get(device.node_id) if device is not None else None
        if device is None or node is None or device.state == DEVICE_FAILED:
            raise ServiceUnavailable(f"device {device_id} cannot serve")
        usable = (
            in_service(m, device) and node.state == NODE_UP
            if write
            else node.state
            in (
                NODE_UP,
                NODE_DRAINING,
            )
        )
        if not usable:
            raise ServiceUnavailable(f"device {device_id} on node {node.id} ({node.state})")
        local = self._local
        rpc = local[1] if local and local[0] == node.id else await self._pool.get(node.rpc)
        return StorageClient(rpc, timeout_s=SHARD_TIMEOUT_S), m.epoch

    # -- writing ---------------------------------------------------------------------------

    async def write_part(
        self, target: PartTarget, body: AsyncIterable[bytes | memoryview]
    ) -> WrittenPart:
        """Write the body as the part's shard files (module docstring). Returns the
        size and the durable shard indexes (at least W). Raises what the body raises
        (then nothing durable is left behind, best effort) and `ServiceUnavailable`
        when fewer than W shards are durable."""
        layout = target.layout
        width = target.k + target.m
        loop = asyncio.get_running_loop()
        queues: list[asyncio.Queue[_Block | None]] = [
            asyncio.Queue(PIPELINE_STRIPES) for _ in range(width)
        ]
        length: asyncio.Future[int] = loop.create_future()
        failed: dict[int, str] = {}

        async def blocks(index: int) -> AsyncIterator[_Block]:
            queue = queues[index]
            while (item := await queue.get()) is not None:
                yield item

        async def put(index: int) -> None:
            try:
                client, epoch = await self._client(target.members[index], write=True)
                await client.put_shard(
                    target.members[index],
                    target.shard(index),
                    layout,
                    blocks(index),
                    epoch=epoch,
                    data_length=length,
                )
            except (*_SHARD_ERRORS, ServiceUnavailable) as err:
                failed[index] = str(err)
                log.warning("put of %s failed: %s", target.shard(index), err)

        tasks = [asyncio.create_task(put(i), name=f"put-shard-{i}") for i in range(width)]
        size = 0
        try:
            # Only the first `fill` bytes of a stripe buffer are ever read (encoded).
            stripe = unfilled_bytearray(target.block_size)
            fill = 0
            async for piece in body:
                view = memoryview(piece).cast("B")
                while view:
                    take = min(len(view), target.block_size - fill)
                    stripe[fill : fill + take] = view[:take]
                    fill += take
                    view = view[take:]
                    if fill == target.block_size:
                        size += fill
                        await self._send_stripe(layout, stripe, fill, queues, tasks)
                        stripe, fill = unfilled_bytearray(target.block_size), 0
            if fill:
                size += fill
                await self._send_stripe(layout, stripe, fill, queues, tasks)
            length.set_result(size)
            for queue, task in zip(queues, tasks, strict=True):
                await _offer(queue, None, task)
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not length.done():
                length.cancel()
            await self.delete_part(target, range(width))
            raise
        durable = tuple(i for i in range(width) if i not in failed)
        if len(durable) < write_quorum(target.k, target.m):
            await self.delete_part(target, durable)
            raise ServiceUnavailable(
                f"only {len(durable)} of {width} shards could be written (need "
                f"{write_quorum(target.k, target.m)}): {sorted(failed.items())}"
            )
        return WrittenPart(size, durable)

    async def _send_stripe(
        self,
        layout: StripeLayout,
        stripe: bytearray,
        fill: int,
        queues: Sequence[asyncio.Queue[_Block | None]],
        tasks: Sequence[asyncio.Task[None]],
    ) -> None:
        blocks = await workers.shared().run(_encode, layout, stripe, fill)
        for queue, task, block in zip(queues, tasks, blocks, strict=True):
            await _offer(queue, block, task)

    async def delete_part(self, target: PartTarget, indexes: Sequence[int] | range) -> None:
        """Remove the part's shard files of `indexes`, best effort (garbage collection
        finds what this misses)."""

        async def delete(index: int) -> None:
            try:
                client, epoch = await self._client(target.members[index], write=False)
                await client.delete(target.members[index], target.shard(index), epoch=epoch)
            except (*_SHARD_ERRORS, ServiceUnavailable) as err:
                log.info("delete of %s skipped: %s", target.shard(index), err)

        await asyncio.gather(*(delete(i) for i in indexes))

    # -- reading ---------------------------------------------------------------------------

    async def read_part(
        self, target: PartTarget, size: int, first: int, end: int, durable: Sequence[int]
    ) -> AsyncGenerator[memoryview, None]:
        """Bytes `[first, end)` of the part (of `size` bytes), in order, from the shards
        in `durable` (the others missed the write)."""
        if first >= end:
            return
        windows = read_windows(target, target.layout.stripes_for_range(size, first, end - first))
        pending: asyncio.Task[WindowShards] | None = None
        try:
            for n, window in enumerate(windows):
                if pending is None:
                    pending = asyncio.create_task(self.fetch(target, size, window, durable))
                shards = await pending
                pending = None
                if n + 1 < len(windows):
                    pending = asyncio.create_task(self.fetch(target, size, windows[n + 1], durable))
                async for piece in self._assemble(target, size, window, shards, first, end):
                    yield piece
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def _fetch_shard(
        self, target: PartTarget, index: int, offset: int, sizes: list[int]
    ) -> list[memoryview]:
        """Shard `index`'s blocks from shard offset `offset`, one of each size in
        `sizes` (consecutive stripes)."""
        client, epoch = await self._client(target.members[index], write=False)
        stream = client.get_shard(
            target.members[index],
            target.shard(index),
            epoch=epoch,
            offset=offset,
            length=sum(sizes),
        )
        return await collect_blocks(stream, sizes)

    async def fetch(
        self,
        target: PartTarget,
        size: int,
        window: range,
        durable: Sequence[int],
        *,
        follow_map: bool = True,
        prefer_local: bool = False,
    ) -> WindowShards:
        """Shards of the window's stripes (for each, its blocks of the window's
        stripes, in order: `window_blocks`): the first k of `durable` in index order
        (the data shards) if they all read, else any k of `durable`, fetched in rounds
        until k are in hand; shards on devices the map says cannot serve are tried last. With
        `prefer_local` (a rebuild, which decodes anyway), shards on this node's own
        devices come first: fewer bytes cross the network. Raises
        `ServiceUnavailable` when fewer than k can be read.

        A storage node that refuses the routing epoch holds a newer map, in which the
        PG table changed: with `follow_map`, the read waits (up to `MAP_WAIT_S`) for
        this node's map to catch up, takes the PG's members from it, and tries again
        once (shard `i` is still position `i`)."""
        for attempt in (1, 2):
            try:
                return await self._fetch_round(target, size, window, durable, prefer_local)
            except _Short as short:
                if not (follow_map and short.stale and attempt == 1):
                    raise ServiceUnavailable(short.message) from None
                target = await self._retarget(target)
        raise AssertionError("unreachable")

    async def _retarget(self, target: PartTarget) -> PartTarget:
        # The map comes from a callable (the node agent's), without a change event:
        # polled, for at most MAP_WAIT_S.
        deadline = asyncio.get_running_loop().time() + MAP_WAIT_S
        while self._map().epoch <= target.epoch and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(MAP_POLL_S)
        m = self._map()
        table = m.pg_tables.get(target.pool_id)
        if table is None or target.pg >= len(table.members):
            return target
        return dataclasses.replace(target, members=table.members[target.pg], epoch=m.epoch)

    def readable(self, device_id: int) -> bool:
        """Whether the map lets a read go to the device (its node up or draining, the
        device not failed)."""
        m = self._map()
        device = m.devices.get(device_id)
        node = m.nodes.get(device.node_id) if device is not None else None
        return (
            device is not None
            and node is not None
            and device.state != DEVICE_FAILED
            and node.state in (NODE_UP, NODE_DRAINING)
        )

    def _is_local(self, device_id: int) -> bool:
        device = self._map().devices.get(device_id)
        return device is not None and self._local is not None and device.node_id == self._local[0]

    async def _fetch_round(
        self,
        target: PartTarget,
        size: int,
        window: range,
        durable: Sequence[int],
        prefer_local: bool = False,
    ) -> WindowShards:
        layout = target.layout
        offset = window.start * layout.full_shard_bytes
        sizes = window_blocks(layout, size, window)
        got: WindowShards = {}
        errors: dict[int, str] = {}
        stale = False
        candidates = sorted(
            durable,
            key=lambda i: (
                not self.readable(target.members[i]),
                prefer_local and not self._is_local(target.members[i]),
                i,
            ),
        )
        wanted = candidates[: target.k]
        while len(got) < target.k:
            results = await asyncio.gather(
                *(self._fetch_shard(target, i, offset, sizes) for i in wanted),
                return_exceptions=True,
            )
            for i, result in zip(wanted, results, strict=True):
                if isinstance(result, list):
                    got[i] = result
                elif isinstance(result, ServiceUnavailable):
                    errors[i] = str(result)  # the map says so: no need to log each
                elif isinstance(result, _SHARD_ERRORS):
                    errors[i] = str(result)
                    stale = stale or isinstance(result, StaleEpoch)
                    log.warning("read of %s failed: %s", target.shard(i), result)
                elif isinstance(result, BaseException):
                    raise result
            left = [i for i in candidates if i not in got and i not in errors]
            if len(got) + len(left) < target.k:
                raise _Short(
                    f"{target.bucket}/{target.key} part {target.part_number}: only "
                    f"{len(got)} of {target.k} needed shards readable: {sorted(errors.items())}",
                    stale,
                )
            wanted = left[: target.k - len(got)]
        return got

    async def _assemble(
        self,
        target: PartTarget,
        size: int,
        window: range,
        shards: WindowShards,
        first: int,
        end: int,
    ) -> AsyncIterator[memoryview]:
        layout = target.layout
        degraded = any(i not in shards for i in range(target.k))
        for n, stripe in enumerate(window):
            stripe_start = stripe * target.block_size
            stripe_length = layout.stripe_length(size, stripe)
            shard_size = layout.shard_bytes(stripe_length)
            lo = max(first, stripe_start) - stripe_start
            hi = min(end, stripe_start + stripe_length) - stripe_start
            if degraded:
                pieces = {i: blocks[n] for i, blocks in shards.items()}
                data = await workers.shared().run(_decode, layout, pieces, stripe_length)
                self.degraded_stripes += 1
                yield memoryview(data)[lo:hi]
                continue
            while lo < hi:
                shard, shard_offset = divmod(lo, shard_size)
                take = min(hi - lo, shard_size - shard_offset)
                yield shards[shard][n][shard_offset : shard_offset + take]
                lo += take


def window_blocks(layout: StripeLayout, size: int, window: range) -> list[int]:
    """The size of each shard's block of each of the window's stripes, in order."""
    return [layout.shard_bytes(layout.stripe_length(size, s)) for s in window]


async def collect_blocks(
    stream: AsyncGenerator[memoryview, None], sizes: list[int]
) -> list[memoryview]:
    """A stream of shard bytes (`StorageClient.get_shard`, `combine_shards`) as blocks
    of `sizes`: the service sends a whole block per chunk, so the chunks are the
    blocks as received; only chunks cut otherwise are joined and split (a copy)."""
    async with contextlib.aclosing(stream):
        pieces = [piece async for piece in stream]
    if [len(p) for p in pieces] == sizes:
        return pieces
    return split_blocks(memoryview(b"".join(pieces)), sizes)


def split_blocks(data: memoryview, sizes: list[int]) -> list[memoryview]:
    """`data` cut into consecutive views of `sizes` (which must sum to its length)."""
    invariant(sum(sizes) == len(data), f"{len(data)} bytes cut into blocks of {sizes}")
    out = []
    at = 0
    for n in sizes:
        out.append(data[at : at + n])
        at += n
    return out


def read_windows(target: PartTarget, stripes: range) -> list[range]:
    """`stripes` cut into windows of about `READ_WINDOW_BYTES` (at least one stripe)."""
    per_window = max(1, READ_WINDOW_BYTES // target.block_size)
    return [
        range(s, min(s + per_window, stripes.stop))
        for s in range(stripes.start, stripes.stop, per_window)
    ]


__all__ = [
    "PIPELINE_STRIPES",
    "SHARD_TIMEOUT_S",
    "DataPath",
    "PartTarget",
    "WindowShards",
    "WrittenPart",
    "collect_blocks",
    "read_windows",
    "rebuild_blocks",
    "split_blocks",
    "window_blocks",
]
