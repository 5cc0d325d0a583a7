"""`StorageClient`: calls to one storage node's shard service over an atoll.rpc
connection, for the gateway and the repairer. Does network I/O (through `RpcClient`).

The service's application errors come back as the same typed errors the service
raised (`errors.py`, mapped from their codes); transport failures stay `RpcError`s
(`ConnectionLost`, `RpcTimeout`, `RpcRemoteError` for a transport code such as
`too_many_streams`). `get_shard` and `combine_shards` check every chunk's CRC-32C
and offset as it arrives: what `get_shard` yields went from the disk to the caller
verified end to end; what `combine_shards` yields was verified from the service's
combination on (the service verified the source blocks it combined).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Iterable, Sequence
from typing import NoReturn, TypeVar

import crc32c
from google.protobuf.message import DecodeError, Message

from atoll.erasure.stripe import ReadableBuffer, StripeLayout
from atoll.proto import storage_pb2
from atoll.rpc import CALL_TIMEOUT_S, Chunk, LocalClient, RpcCaller, RpcRemoteError
from atoll.storage.errors import ProtocolError, ShardCorrupt
from atoll.storage.layout import ShardId
from atoll.storage.messages import (
    DeviceInfo,
    ListPage,
    PgsPage,
    ReadCache,
    ShardInfo,
    device_info_from_proto,
    error_from_wire,
    info_from_proto,
    list_page_from_proto,
    pgs_page_from_proto,
    shard_id_to_proto,
)
from atoll.storage.service import (
    METHOD_COMBINE_SHARDS,
    METHOD_DELETE_SHARD,
    METHOD_DEVICES,
    METHOD_GET_SHARD,
    METHOD_LIST_PG,
    METHOD_LIST_PGS,
    METHOD_PUT_SHARD,
    METHOD_STAT_SHARD,
)

M = TypeVar("M", bound=Message)

Block = ReadableBuffer | tuple[ReadableBuffer, int]
"""A block to put: its bytes, or its bytes and their CRC-32C computed by the caller
(where the block was made, say in the thread that encoded it, which keeps the
checksum off the event loop)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PutResult:
    info: ShardInfo
    replaced: bool
    """A file of the same shard was there and was replaced."""


def _raise_remote(err: RpcRemoteError) -> NoReturn:
    typed = error_from_wire(err.code, err.detail)
    if typed is None:
        raise err
    raise typed from err


def _parse_reply(cls: type[M], data: bytes) -> M:
    """A reply message; `ProtocolError` if it does not parse."""
    try:
        return cls.FromString(data)
    except DecodeError as err:
        raise ProtocolError(f"a reply that is not a {cls.__name__}: {err}") from err


class StorageClient:
    """The shard service of the node at the other end of `rpc` (which the caller
    owns and closes; an `RpcClient`, or a `LocalClient` for this process's own). `timeout_s` bounds every wait for the peer (atoll.rpc's
    `timeout_s`: for a stream, each wait for a chunk or for window room)."""

    def __init__(self, rpc: RpcCaller, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.rpc = rpc
        self.timeout_s = timeout_s
        self.in_process = isinstance(rpc, LocalClient)
        """The service is this process's own, so no byte crosses a network:
        `get_shard` does not check again the CRC-32Cs the service checked as it read,
        and `put_shard` sends bare blocks without one (the service computes it)."""

    async def _call(self, method: str, message: bytes) -> bytes:
        try:
            reply = await self.rpc.call(method, message, timeout_s=self.timeout_s)
        except RpcRemoteError as err:
            _raise_remote(err)
        return reply.message

    async def put_shard(
        self,
        device_id: int,
        shard: ShardId,
        layout: StripeLayout,
        blocks: AsyncIterable[Block] | Iterable[Block],
        *,
        epoch: int,
        data_length: int | Awaitable[int],
    ) -> PutResult:
        """Store shard file `shard` on `device_id`: block j is shard `shard_index` of
        stripe j of the part (`layout` says the sizes). Returns once the file is
        durable. `data_length` is the part's length, or an awaitable of it when it is
        known only after the last block (then the service reserves capacity block by
        block). A block's buffer must not change until this returns."""
        request = storage_pb2.PutShardRequest(
            epoch=epoch,
            device_id=device_id,
            shard=shard_id_to_proto(shard),
            k=layout.k,
            m=layout.m,
            block_size=layout.block_size,
        )
        if isinstance(data_length, int):
            request.data_length = data_length
        chunks = _put_chunks(request.SerializeToString(), blocks, data_length, self.in_process)
        try:
            reply = await self.rpc.call_stream(METHOD_PUT_SHARD, chunks, timeout_s=self.timeout_s)
        except RpcRemoteError as err:
            _raise_remote(err)
        finally:
            await chunks.aclose()
        pb = _parse_reply(storage_pb2.PutShardReply, reply.message)
        return PutResult(info_from_proto(pb.info), pb.replaced)

    async def get_shard(
        self,
        device_id: int,
        shard: ShardId,
        *,
        epoch: int,
        offset: int = 0,
        length: int | None = None,
        cache: ReadCache = ReadCache.KEEP,
    ) -> AsyncGenerator[memoryview, None]:
        """Bytes `[offset, offset + length)` of the shard's data (to its end if
        `length` is None), in order, as pieces of at most one block, each checked
        against the CRC-32C the service sent with it. A corrupt block on the device
        raises `ShardCorrupt` after the good pieces before it, and no byte of it is
        yielded. Wrap in `contextlib.aclosing` to stop early promptly. `cache`: what
        the read does with the node's page cache (`ReadCache`)."""
        request = storage_pb2.GetShardRequest(
            epoch=epoch,
            device_id=device_id,
            shard=shard_id_to_proto(shard),
            offset=offset,
            cache=cache.value,
        )
        if length is not None:
            request.length = length
        stream = self._checked_stream(
            METHOD_GET_SHARD,
            request.SerializeToString(),
            f"get_shard of {shard}",
            device_id,
            offset,
            length,
        )
        async with contextlib.aclosing(stream):  # closed at once if this one is
            async for data in stream:
                yield data

    async def combine_shards(
        self,
        sources: Sequence[tuple[int, ShardId, int]],
        *,
        epoch: int,
        offset: int,
        length: int,
    ) -> AsyncGenerator[memoryview, None]:
        """Bytes `[offset, offset + length)` of the linear combination over GF(2^8) of
        shards of one part on this node's devices (`sources`: (device id, shard,
        coefficient 1..255) each): byte by byte, the sum of coefficient times shard
        byte (`atoll.erasure.combine`). In order, as pieces of at most one block, each
        checked against the CRC-32C the service computed for it; the service verified
        every source block it used. A corrupt source block raises `ShardCorrupt`."""
        request = storage_pb2.CombineShardsRequest(
            epoch=epoch,
            sources=[
                storage_pb2.CombineSource(
                    device_id=device_id, shard=shard_id_to_proto(shard), coefficient=coefficient
                )
                for device_id, shard, coefficient in sources
            ],
            offset=offset,
            length=length,
        )
        what = "combine_shards of " + ", ".join(str(shard) for _, shard, _ in sources)
        device_id = sources[0][0] if sources else 0
        stream = self._checked_stream(
            METHOD_COMBINE_SHARDS, request.SerializeToString(), what, device_id, offset, length
        )
        async with contextlib.aclosing(stream):  # closed at once if this one is
            async for data in stream:
                yield data

    async def _checked_stream(
        self,
        method: str,
        request: bytes,
        what: str,
        device_id: int,
        offset: int,
        length: int | None,
    ) -> AsyncGenerator[memoryview, None]:
        """The payloads of a stream of `GetShardChunk`s from `offset`, each checked for
        its offset (consecutive, none empty) and, across a network, its CRC-32C; the
        stream must cover `length` bytes (when given)."""
        expected = offset
        stream = self.rpc.stream(method, request, timeout_s=self.timeout_s)
        try:
            async with contextlib.aclosing(stream):
                async for reply in stream:
                    chunk = _parse_reply(storage_pb2.GetShardChunk, reply.message)
                    data = memoryview(reply.payload).cast("B")
                    if chunk.offset != expected or not data:
                        raise ProtocolError(
                            f"{what}: a chunk of {len(data)} bytes at offset "
                            f"{chunk.offset}, expected one at {expected}",
                            device_id=device_id,
                        )
                    actual = chunk.crc32c if self.in_process else crc32c.crc32c(data)
                    if actual != chunk.crc32c:
                        raise ShardCorrupt(
                            f"{what}: bytes received at shard offset "
                            f"{chunk.offset} fail their CRC-32C (damaged in transit)",
                            file=f"<stream from device {device_id}>",
                            offset=chunk.offset,
                            expected=chunk.crc32c,
                            actual=actual,
                            device_id=device_id,
                        )
                    expected += len(data)
                    yield data
        except RpcRemoteError as err:
            _raise_remote(err)
        if length is not None and expected != offset + length:
            raise ProtocolError(
                f"{what}: the stream ended at offset {expected}, expected {offset + length}",
                device_id=device_id,
            )

    async def stat(self, device_id: int, shard: ShardId, *, epoch: int) -> ShardInfo:
        request = storage_pb2.StatShardRequest(
            epoch=epoch, device_id=device_id, shard=shard_id_to_proto(shard)
        )
        data = await self._call(METHOD_STAT_SHARD, request.SerializeToString())
        return info_from_proto(_parse_reply(storage_pb2.StatShardReply, data).info)

    async def list_pg(
        self,
        device_id: int,
        pool_id: int,
        pg: int,
        *,
        epoch: int,
        start_after: str = "",
        limit: int = 0,
    ) -> ListPage:
        """One page of the PG's shard files on the device (`limit` 0: the server's
        page size); continue with `start_after=page.next_start_after` until it is
        empty."""
        request = storage_pb2.ListPgRequest(
            epoch=epoch,
            device_id=device_id,
            pool_id=pool_id,
            pg=pg,
            start_after=start_after,
            limit=limit,
        )
        data = await self._call(METHOD_LIST_PG, request.SerializeToString())
        return list_page_from_proto(_parse_reply(storage_pb2.ListPgReply, data))

    async def list_pgs(
        self,
        device_id: int,
        pgs: Sequence[tuple[int, int]],
        *,
        epoch: int,
        start_index: int = 0,
        start_after: str = "",
        limit: int = 0,
    ) -> PgsPage:
        """One page of the shard files of the PGs `pgs` ((pool id, pg) each) on the
        device, PG after PG (`limit` 0: the server's page size); continue with
        `start_index=page.next_index, start_after=page.next_start_after` until
        `page.next_index == len(pgs)`."""
        request = storage_pb2.ListPgsRequest(
            epoch=epoch,
            device_id=device_id,
            pgs=[storage_pb2.PgRef(pool_id=pool_id, pg=pg) for pool_id, pg in pgs],
            start_index=start_index,
            start_after=start_after,
            limit=limit,
        )
        data = await self._call(METHOD_LIST_PGS, request.SerializeToString())
        return pgs_page_from_proto(_parse_reply(storage_pb2.ListPgsReply, data))

    async def delete(self, device_id: int, shard: ShardId, *, epoch: int) -> bool:
        """Remove the shard's file; False if there was none."""
        request = storage_pb2.DeleteShardRequest(
            epoch=epoch, device_id=device_id, shard=shard_id_to_proto(shard)
        )
        data = await self._call(METHOD_DELETE_SHARD, request.SerializeToString())
        return _parse_reply(storage_pb2.DeleteShardReply, data).deleted

    async def devices(self) -> list[DeviceInfo]:
        data = await self._call(METHOD_DEVICES, storage_pb2.DevicesRequest().SerializeToString())
        return [
            device_info_from_proto(d) for d in _parse_reply(storage_pb2.DevicesReply, data).devices
        ]


async def _put_chunks(
    request: bytes,
    blocks: AsyncIterable[Block] | Iterable[Block],
    data_length: int | Awaitable[int],
    in_process: bool,
) -> AsyncGenerator[Chunk, None]:
    yield request, None
    if isinstance(blocks, AsyncIterable):
        async for block in blocks:
            yield _block_chunk(block, in_process)
    else:
        for block in blocks:
            yield _block_chunk(block, in_process)
    if not isinstance(data_length, int):
        trailer = storage_pb2.PutShardChunk(data_length=await data_length)
        yield trailer.SerializeToString(), None


def _block_chunk(block: Block, in_process: bool) -> Chunk:
    """A block with its CRC-32C (computed here if the block came without one). In
    process the bytes cross no network: a bare block goes without, and the service
    computes the CRC-32C it stores (one pass over the bytes, not two)."""
    if isinstance(block, tuple):
        payload, crc = block
    elif in_process:
        return _NO_CRC_CHUNK, block
    else:
        payload, crc = block, crc32c.crc32c(block)
    return storage_pb2.PutShardChunk(crc32c=crc).SerializeToString(), payload


_NO_CRC_CHUNK = storage_pb2.PutShardChunk().SerializeToString()


__all__ = ["Block", "PutResult", "StorageClient"]
