"""The storage node's shard service on `atoll.rpc` (shared/DESIGN.md §4-§5; methods,
messages and error codes in docs/formats/storage.md §4-§5). Does file I/O, always in
its own bounded thread pool, never on the event loop.

Methods (`rpc_handlers()` and `rpc_stream_handlers()`, to be served by the node's
`RpcServer`):

- `storage.put_shard` (client stream): the first chunk's message is a
  `PutShardRequest`; each later chunk's payload is the next block of the shard file,
  with a `PutShardChunk` (its CRC-32C) as message. The blocks go to a temporary file;
  once the last has arrived the file is fsynced, renamed into place and its
  directory fsynced, and only then is the put answered (`PutShardReply`). Capacity
  is reserved before anything is written (`capacity.py`); any failure removes the
  temporary file, so no partial file is ever visible.
- `storage.get_shard` (server stream): bytes of the shard's data, a block (or the
  piece of one a range needs) per chunk, every block's CRC-32C verified before any of
  it is sent. A bad block ends the stream with `shard_corrupt`; the chunks before it
  were good, and no byte of the bad block is sent.
- `storage.combine_shards` (server stream): the linear combination over GF(2^8) of
  several shards of one part on this node's devices, a block (or piece) per chunk,
  every source block verified first and the combination's CRC-32C computed (the
  repair's partial sums; docs/formats/storage.md §4.4).
- `storage.stat_shard`, `storage.list_pg`, `storage.delete_shard`, `storage.devices`.

Every request but `storage.devices` carries the cluster-map epoch it was routed with;
the node's `check_epoch(epoch, pools)` hook returns a reason to refuse it
(`stale_epoch`) or None: `pools` are the pools of the shards the request is about (a
PG table change of another pool does not make its routing stale). A device whose I/O
fails with a device fault (`errors.classify_os_error`) is marked failed, the node's
`on_device_failure(device_id, error)` hook is called once, and the device refuses
every later request with `device_failed`.

Failures reach the caller as atoll.rpc application errors: `HandlerError(code,
ErrorDetail)` with the stable codes of `errors.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import crc32c

from atoll.base.errors import invariant
from atoll.base.tasks import gather_settled
from atoll.erasure.codec import COMBINE_SOURCES_MAX, combine
from atoll.erasure.errors import (
    HeaderFieldError,
)
from atoll.erasure.shard_file import ShardReader, ShardWriter
from atoll.erasure.shard_format import (
    CRC_BYTES,
    DATA_LENGTH_UNFINISHED,
    ShardHeader,
    encode_header,
    file_size,
)
from atoll.proto import storage_pb2
from atoll.rpc import Chunk, ClientStreamHandler, Handler, Reply
from atoll.storage.capacity import Reservation
from atoll.storage.device_io import DeviceIo
from atoll.storage.devices import Device, DeviceConfig, Piece, StoredShard
from atoll.storage.errors import (
    DeviceFailed,
    InvalidArgument,
    StaleEpoch,
    StorageError,
    UnknownDevice,
)
from atoll.storage.layout import ShardId, check_shard_id, shard_file_name
from atoll.storage.messages import (
    DeviceInfo,
    ReadCache,
    device_info_to_proto,
    handler_error,
    info_to_proto,
    parse,
    shard_id_from_proto,
    shard_info,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

METHOD_PUT_SHARD = "storage.put_shard"
METHOD_GET_SHARD = "storage.get_shard"
METHOD_COMBINE_SHARDS = "storage.combine_shards"
METHOD_STAT_SHARD = "storage.stat_shard"
METHOD_LIST_PG = "storage.list_pg"
METHOD_LIST_PGS = "storage.list_pgs"
METHOD_DELETE_SHARD = "storage.delete_shard"
METHOD_DEVICES = "storage.devices"

CheckEpoch = Callable[[int, "frozenset[int]"], "str | None"]
"""`check_epoch(epoch, pools)`: why a request routed with map `epoch` for shards of
`pools` (pool ids; empty for a request about no pool in particular) must be refused,
or None."""
OnDeviceFailure = Callable[[int, OSError], None]


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    """Limits of the service (shared/STYLE.md §6: a limit on everything)."""

    device_io_max: int = 4
    """Blocking calls (a block write, a batch read, an fsync) running at once per device."""
    writers_per_device_max: int = 64
    """Shard files open for writing at once per device; more puts wait."""
    io_threads_max: int = 32
    """Threads of the service's pool (also bounded by devices x device_io_max)."""
    read_batch_bytes: int = 4 * 1024 * 1024
    """Bytes `get_shard` reads and verifies per call into the pool (at least a block)."""
    write_batch_blocks_max: int = 16
    write_batch_bytes_max: int = 4 * 1024 * 1024
    """Blocks of a put gathered while the previous batch is written (one thread
    hand-off per batch); the put stops taking chunks beyond this."""
    list_page_max: int = 1000
    """Most entries in one `list_pg` or `list_pgs` reply."""
    list_pgs_max: int = 4096
    """Most PGs one `list_pgs` request may name."""
    headers_per_device_max: int = 20_000
    """Shard file headers each device remembers (a few hundred bytes each) so that a
    listing reads only the headers of files it has not seen (0: read every time)."""

    def __post_init__(self) -> None:
        for name in (
            "device_io_max",
            "writers_per_device_max",
            "io_threads_max",
            "read_batch_bytes",
            "write_batch_blocks_max",
            "write_batch_bytes_max",
            "list_page_max",
            "list_pgs_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"storage config: {name} must be >= 1")
        if self.headers_per_device_max < 0:
            raise ValueError("storage config: headers_per_device_max must be >= 0")


class StorageService:
    """The shard service over `devices` (device id -> directory and capacity).

    `start()` scans every device (removing temporary files left by a crash) before
    the handlers are served; `stop()` waits for the thread pool. The hooks are the
    node's: `check_epoch(epoch, pools)` returns a reason to refuse a request routed
    with that map epoch for shards of those pools, or None;
    `on_device_failure(device_id, error)` is called once per device whose I/O fails
    (the node marks it failed in the map). Both are called on the event loop and must
    not block.
    """

    def __init__(
        self,
        devices: Mapping[int, DeviceConfig],
        *,
        check_epoch: CheckEpoch,
        on_device_failure: OnDeviceFailure,
        config: StorageConfig | None = None,
    ) -> None:
        config = config or StorageConfig()
        paths = [d.path for d in devices.values()]
        if len(set(paths)) != len(paths):
            raise ValueError(f"storage devices must have distinct directories: {paths}")
        self.config = config
        self._devices = {
            device_id: Device(
                device_id,
                device_config,
                io_max=config.device_io_max,
                writers_max=config.writers_per_device_max,
                headers_max=config.headers_per_device_max,
            )
            for device_id, device_config in sorted(devices.items())
        }
        self._check_epoch = check_epoch
        self._on_device_failure = on_device_failure
        self._dio = DeviceIo(self._device_failed)
        self.temp_files_removed = 0
        """Temporary files of crashed writes removed at start-up (all devices)."""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        threads = min(
            self.config.io_threads_max, max(1, len(self._devices)) * self.config.device_io_max
        )
        self._dio.start(threads)
        await asyncio.gather(*(self._start_device(device) for device in self._devices.values()))

    async def _start_device(self, device: Device) -> None:
        try:
            scan = await self._dio.run(device, device.scan_sync)
        except StorageError as err:
            log.error("storage: device %d (%s) unusable at start: %s", device.id, device.path, err)
            return
        device.start(scan)
        self.temp_files_removed += scan.temp_files_removed
        log.info(
            "storage: device %d (%s): %d shard files, %d bytes of %d; %d temporary files removed",
            device.id,
            device.path,
            len(scan.file_sizes),
            sum(scan.file_sizes),
            scan.capacity_bytes,
            scan.temp_files_removed,
        )

    async def stop(self) -> None:
        await self._dio.stop()

    def rpc_handlers(self) -> dict[str, Handler]:
        return {
            METHOD_GET_SHARD: self._get_shard,
            METHOD_COMBINE_SHARDS: self._combine_shards,
            METHOD_STAT_SHARD: self._answering(self._stat_shard),
            METHOD_LIST_PG: self._answering(self._list_pg),
            METHOD_LIST_PGS: self._answering(self._list_pgs),
            METHOD_DELETE_SHARD: self._answering(self._delete_shard),
            METHOD_DEVICES: self._answering(self._devices_call),
        }

    def rpc_stream_handlers(self) -> dict[str, ClientStreamHandler]:
        return {METHOD_PUT_SHARD: self._put_shard}

    def device_infos(self) -> list[DeviceInfo]:
        """Every device's capacity and usage, for heartbeats and `storage.devices`."""
        infos = []
        for device in self._devices.values():
            ledger = device.ledger if device.started else None
            infos.append(
                DeviceInfo(
                    device_id=device.id,
                    path=device.path,
                    capacity_bytes=ledger.capacity_bytes
                    if ledger
                    else device.config.capacity_bytes,
                    used_bytes=ledger.used_bytes if ledger else 0,
                    reserved_bytes=ledger.reserved_bytes if ledger else 0,
                    shard_files=ledger.shard_files if ledger else 0,
                    failed=device.failure is not None,
                    failure=device.failure or "",
                )
            )
        return infos

    # -- in-process API: the node's own workers (garbage collection) -------------------
    # Not routed through the cluster map, so no epoch: they act on what this node's
    # devices hold. Same thread pool, limits, failure handling and accounting as the
    # handlers.

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]:
        """(pool id, pg) of every PG directory on the device."""
        device = self._usable(device_id)
        return await self._dio.run(device, device.list_pgs_sync)

    async def local_list_pg(
        self, device_id: int, pool_id: int, pg: int, start_after: str, limit: int
    ) -> tuple[list[tuple[str, StoredShard | None, str]], str]:
        """`storage.list_pg` in process, with each file's mtime (`StoredShard`)."""
        device = self._usable(device_id)
        limit = self._page_limit(limit)
        return await self._dio.run(device, device.list_pg_sync, pool_id, pg, start_after, limit)

    async def local_delete(self, device_id: int, shard: ShardId) -> int | None:
        """`storage.delete_shard` in process: the bytes freed, or None if no file."""
        check_shard_id(shard)
        return await self._delete(self._usable(device_id), shard)

    # -- shared --------------------------------------------------------------------------

    @staticmethod
    def _answering(
        call: Callable[[bytes], Awaitable[Chunk]],
    ) -> Handler:
        """A handler answering `StorageError`s with their application error."""

        async def handler(message: bytes, payload: bytes | memoryview) -> Chunk:
            try:
                return await call(message)
            except StorageError as err:
                raise handler_error(err) from err

        return handler

    def _device(self, device_id: int, epoch: int, *pools: int) -> Device:
        """The device a request names, once its epoch is accepted for `pools`."""
        reason = self._check_epoch(epoch, frozenset(pools))
        if reason is not None:
            raise StaleEpoch(f"epoch {epoch} refused: {reason}", epoch=epoch, device_id=device_id)
        return self._usable(device_id)

    def _usable(self, device_id: int) -> Device:
        """The device, if this node has it, it has not failed and it is started."""
        device = self._devices.get(device_id)
        if device is None:
            raise UnknownDevice(
                f"not a device of this node (it has {sorted(self._devices)})", device_id=device_id
            )
        if device.failure is not None:
            raise DeviceFailed(f"failed: {device.failure}", device_id=device_id)
        if not device.started:
            raise StorageError("the storage service is not started", device_id=device_id)
        return device

    def _device_failed(self, device: Device, err: OSError) -> None:
        if not device.mark_failed(err):
            return
        log.error("storage: device %d (%s) failed: %s", device.id, device.path, err)
        try:
            self._on_device_failure(device.id, err)
        except Exception:  # the node's hook; the device is failed either way
            log.exception("storage: on_device_failure hook failed for device %d", device.id)

    # -- put_shard -------------------------------------------------------------------------

    async def _put_shard(self, chunks: AsyncIterator[Reply]) -> Chunk:
        try:
            return await self._put(chunks)
        except StorageError as err:
            raise handler_error(err) from err

    async def _put(self, chunks: AsyncIterator[Reply]) -> Chunk:
        first = await anext(chunks, None)
        if first is None:
            raise InvalidArgument("put_shard: the stream had no request chunk")
        request = parse(storage_pb2.PutShardRequest, first.message, "put_shard request")
        if len(first.payload):
            raise InvalidArgument("put_shard: the request chunk carries no payload")
        shard = shard_id_from_proto(request.shard)
        device = self._device(request.device_id, request.epoch, shard.pool_id)
        header = _put_header(shard, request, device.id)
        header_bytes = len(encode_header(header))
        length_known = header.data_length != DATA_LENGTH_UNFINISHED
        first_bytes = file_size(header, header_bytes) if length_known else header_bytes
        what = f"put of {shard}"
        reservation = device.ledger.reserve(first_bytes, what)
        writer: ShardWriter | None = None
        try:
            async with device.writer_slots:
                writer = await self._dio.run(
                    device, device.open_writer_sync, shard, header, discard=ShardWriter.abort
                )
                data_length = await self._receive_blocks(device, writer, chunks, reservation)
                # The epoch again, now that the blocks are in: a PG table that changed
                # during a long put may have given this shard to another device, whose
                # repairer would not know of it. Refused, it counts as missed (and gets
                # a repair record) rather than landing where no one looks.
                self._device(request.device_id, request.epoch, shard.pool_id)
                async with device.name_lock(shard_file_name(shard)):
                    file_bytes, replaced = await self._dio.run(
                        device, device.commit_writer_sync, writer, data_length
                    )
                    writer = None  # durable: nothing to abort
                    device.ledger.commit(reservation, file_bytes, replaced)
        finally:
            if writer is not None:
                await self._dio.cleanup(device, writer.abort, f"abort of {what}")
            reservation.release()
        info = shard_info(
            shard.pool_id,
            shard.pg,
            header.finished(data_length),
            file_bytes,
            shard_file_name(shard),
        )
        reply = storage_pb2.PutShardReply(info=info_to_proto(info), replaced=replaced is not None)
        return reply.SerializeToString(), None

    async def _receive_blocks(
        self,
        device: Device,
        writer: ShardWriter,
        chunks: AsyncIterator[Reply],
        reservation: Reservation,
    ) -> int:
        """Write every block chunk; the part's data length (from the request or the
        trailing chunk)."""
        header = writer.header
        length_known = header.data_length != DATA_LENGTH_UNFINISHED
        full = header.layout.full_shard_bytes
        trailer: int | None = None
        batches = _WriteBehind(self, device, writer)
        try:
            async for chunk in chunks:
                message = parse(storage_pb2.PutShardChunk, chunk.message, "put_shard chunk")
                size = len(chunk.payload)
                if trailer is not None:
                    raise InvalidArgument(f"{writer.path}: a chunk after the data length")
                if message.HasField("data_length"):
                    if length_known or size:
                        raise InvalidArgument(
                            f"{writer.path}: a data length chunk must have no payload, and "
                            "only when the request had none"
                        )
                    trailer = message.data_length
                    continue
                if not 0 < size <= full:
                    raise InvalidArgument(
                        f"{writer.path}: a block of {size} bytes, outside 1..{full}"
                    )
                if not length_known:
                    reservation.grow(size + CRC_BYTES)
                crc = message.crc32c if message.HasField("crc32c") else None
                await batches.add(chunk.payload, crc)
            await batches.flush()
        finally:
            await batches.settle()
        if length_known:
            return header.data_length
        if trailer is None:
            raise InvalidArgument(f"{writer.path}: the stream ended without the data length")
        return trailer

    # -- get_shard -------------------------------------------------------------------------

    async def _get_shard(self, message: bytes, payload: bytes | memoryview) -> AsyncIterator[Chunk]:
        try:
            request = parse(storage_pb2.GetShardRequest, message, "get_shard request")
            shard = _checked_shard(request.shard)
            device = self._device(request.device_id, request.epoch, shard.pool_id)
        except StorageError as err:
            raise handler_error(err) from err
        length = request.length if request.HasField("length") else None
        try:
            cache = ReadCache(request.cache)
        except ValueError as err:
            raise handler_error(
                InvalidArgument(f"get_shard: unknown cache mode {request.cache}")
            ) from err
        return self._get_stream(device, shard, request.offset, length, cache)

    async def _get_stream(
        self, device: Device, shard: ShardId, offset: int, length: int | None, cache: ReadCache
    ) -> AsyncIterator[Chunk]:
        try:
            bypass = cache is ReadCache.BYPASS
            reader = await self._dio.run(
                device, device.open_reader_sync, shard, bypass, discard=ShardReader.close
            )
            try:
                async for chunk in self._read_range(device, reader, offset, length):
                    yield chunk
                if cache is not ReadCache.KEEP:
                    await self._dio.run(device, reader.drop_cache)
            finally:
                reader.close()
        except StorageError as err:
            raise handler_error(err) from err

    async def _read_range(
        self, device: Device, reader: ShardReader, offset: int, length: int | None
    ) -> AsyncIterator[Chunk]:
        start, stop, batches = self._read_plan(
            device, reader, offset, length, self.config.read_batch_bytes
        )
        for batch, end in batches:
            pieces = await self._dio.run(
                device, device.read_pieces_sync, reader, batch, end, start, stop
            )
            for piece in pieces:
                yield _piece_chunk(piece)

    @staticmethod
    def _read_plan(
        device: Device, reader: ShardReader, offset: int, length: int | None, batch_bytes: int
    ) -> tuple[int, int, list[tuple[int, int]]]:
        """The shard data range `[start, stop)` a read of `length` bytes (None: to the
        end) from `offset` covers, and the block ranges `[batch, end)` it reads, about
        `batch_bytes` each (at least a block); `invalid_argument` past the shard's
        data."""
        layout = reader.layout
        total = layout.shard_data_bytes(reader.header.data_length)
        if length is None:
            length = max(0, total - offset)
        if offset + length > total:
            raise InvalidArgument(
                f"{reader.path}: range [{offset}, {offset + length}) outside the shard's "
                f"{total} bytes",
                device_id=device.id,
            )
        if length == 0:
            return offset, offset, []
        full = layout.full_shard_bytes
        per_batch = max(1, batch_bytes // (full + CRC_BYTES))
        first, last = offset // full, (offset + length - 1) // full
        batches = [
            (batch, min(last + 1, batch + per_batch)) for batch in range(first, last + 1, per_batch)
        ]
        return offset, offset + length, batches

    # -- combine_shards --------------------------------------------------------------------

    async def _combine_shards(
        self, message: bytes, payload: bytes | memoryview
    ) -> AsyncIterator[Chunk]:
        try:
            request = parse(storage_pb2.CombineShardsRequest, message, "combine_shards request")
            sources = self._combine_sources(request)
        except StorageError as err:
            raise handler_error(err) from err
        return self._combine_stream(sources, request.offset, request.length)

    def _combine_sources(
        self, request: storage_pb2.CombineShardsRequest
    ) -> list[tuple[Device, ShardId, int]]:
        """The request's (device, shard, coefficient)s, checked: 1 to
        `COMBINE_SOURCES_MAX` distinct shards of one part, coefficients 1..255, every
        device this node's and the epoch accepted for the part's pool."""
        count = len(request.sources)
        if not 1 <= count <= COMBINE_SOURCES_MAX:
            raise InvalidArgument(f"combine_shards: {count} sources (1..{COMBINE_SOURCES_MAX})")
        parsed: list[tuple[int, ShardId, int]] = []
        for source in request.sources:
            shard = _checked_shard(source.shard)
            if not 1 <= source.coefficient <= 255:
                raise InvalidArgument(
                    f"combine_shards: coefficient {source.coefficient} of {shard} not in 1..255",
                    device_id=source.device_id,
                )
            parsed.append((source.device_id, shard, source.coefficient))
        parts = {dataclasses.replace(shard, shard_index=0) for _, shard, _ in parsed}
        if len(parts) != 1 or len({shard.shard_index for _, shard, _ in parsed}) != count:
            names = ", ".join(str(shard) for _, shard, _ in parsed)
            raise InvalidArgument(
                f"combine_shards: the sources are not distinct shards of one part: {names}"
            )
        return [
            (self._device(device_id, request.epoch, shard.pool_id), shard, coefficient)
            for device_id, shard, coefficient in parsed
        ]

    async def _combine_stream(
        self, sources: list[tuple[Device, ShardId, int]], offset: int, length: int
    ) -> AsyncIterator[Chunk]:
        readers: list[ShardReader] = []
        try:
            try:
                for device, shard, _ in sources:
                    readers.append(
                        await self._dio.run(
                            device, device.open_reader_sync, shard, discard=ShardReader.close
                        )
                    )
                first = readers[0]
                for reader in readers[1:]:
                    if (
                        reader.layout != first.layout
                        or reader.header.data_length != first.header.data_length
                    ):
                        raise InvalidArgument(
                            f"combine_shards: {reader.path} and {first.path} differ in layout"
                            " or data length: not shards of one upload",
                            device_id=sources[0][0].id,
                        )
                # `read_batch_bytes` over all the sources, not per source.
                start, stop, batches = self._read_plan(
                    sources[0][0],
                    first,
                    offset,
                    length,
                    self.config.read_batch_bytes // len(sources),
                )
                coefficients = bytes(c for _, _, c in sources)
                for batch, end in batches:
                    # Settled: no read may outlive its reader.
                    results = await gather_settled(
                        *(
                            self._dio.run(
                                device, device.read_pieces_sync, r, batch, end, start, stop
                            )
                            for (device, _, _), r in zip(sources, readers, strict=True)
                        )
                    )
                    combined = await self._dio.compute(_combine_pieces, coefficients, results)
                    del results  # held no longer than the combination needs them
                    for piece in combined:
                        yield _piece_chunk(piece)
            finally:
                for reader in readers:
                    reader.close()
        except StorageError as err:
            raise handler_error(err) from err

    # -- stat, list, delete, devices -----------------------------------------------------

    async def _stat_shard(self, message: bytes) -> Chunk:
        request = parse(storage_pb2.StatShardRequest, message, "stat_shard request")
        shard = _checked_shard(request.shard)
        device = self._device(request.device_id, request.epoch, shard.pool_id)
        reader = await self._dio.run(
            device, device.open_reader_sync, shard, discard=ShardReader.close
        )
        try:
            size = file_size(reader.header, reader.header_length)
            info = shard_info(shard.pool_id, shard.pg, reader.header, size, shard_file_name(shard))
        finally:
            reader.close()
        return storage_pb2.StatShardReply(info=info_to_proto(info)).SerializeToString(), None

    async def _list_pg(self, message: bytes) -> Chunk:
        request = parse(storage_pb2.ListPgRequest, message, "list_pg request")
        device = self._device(request.device_id, request.epoch, request.pool_id)
        limit = self._page_limit(request.limit)
        entries, next_start_after = await self._dio.run(
            device, device.list_pg_sync, request.pool_id, request.pg, request.start_after, limit
        )
        reply = storage_pb2.ListPgReply(next_start_after=next_start_after)
        _add_listed(reply.shards, request.pool_id, request.pg, entries)
        return reply.SerializeToString(), None

    def _page_limit(self, requested: int) -> int:
        """Entries of one listing page: `requested`, at most `list_page_max` (0 or
        less: the page size)."""
        page_max = self.config.list_page_max
        return min(requested, page_max) if requested > 0 else page_max

    async def _list_pgs(self, message: bytes) -> Chunk:
        request = parse(storage_pb2.ListPgsRequest, message, "list_pgs request")
        device = self._device(request.device_id, request.epoch, *{p.pool_id for p in request.pgs})
        if len(request.pgs) > self.config.list_pgs_max:
            raise InvalidArgument(
                f"list_pgs of {len(request.pgs)} PGs; at most {self.config.list_pgs_max}",
                device_id=device.id,
            )
        limit = self._page_limit(request.limit)
        pgs = [(p.pool_id, p.pg) for p in request.pgs]
        listed, next_index, next_start_after = await self._dio.run(
            device, device.list_pgs_page_sync, pgs, request.start_index, request.start_after, limit
        )
        reply = storage_pb2.ListPgsReply(next_index=next_index, next_start_after=next_start_after)
        for index, entries in listed:
            pool_id, pg = pgs[index]
            _add_listed(reply.pgs.add(index=index).shards, pool_id, pg, entries)
        return reply.SerializeToString(), None

    async def _delete_shard(self, message: bytes) -> Chunk:
        request = parse(storage_pb2.DeleteShardRequest, message, "delete_shard request")
        shard = _checked_shard(request.shard)
        freed = await self._delete(
            self._device(request.device_id, request.epoch, shard.pool_id), shard
        )
        reply = storage_pb2.DeleteShardReply(deleted=freed is not None, freed_bytes=freed or 0)
        return reply.SerializeToString(), None

    async def _delete(self, device: Device, shard: ShardId) -> int | None:
        async with device.name_lock(shard_file_name(shard)):
            freed = await self._dio.run(device, device.delete_sync, shard)
            if freed is not None:
                device.ledger.remove(freed)
        return freed

    async def _devices_call(self, message: bytes) -> Chunk:
        parse(storage_pb2.DevicesRequest, message, "devices request")
        reply = storage_pb2.DevicesReply(
            devices=[device_info_to_proto(info) for info in self.device_infos()]
        )
        return reply.SerializeToString(), None


class _WriteBehind:
    """A put's blocks, written in batches: while one batch is written in the pool, the
    blocks that arrive meanwhile gather into the next, up to `write_batch_blocks_max`
    blocks or `write_batch_bytes_max` bytes (then the put waits, and the atoll.rpc
    window holds the sender back). A put so pays one thread hand-off per batch, not
    per block, and a fast sender gets larger batches. Errors of a batch surface at
    the next `add` or at `flush`; `settle` waits out a batch still running (always
    call it before the writer is aborted)."""

    def __init__(self, service: StorageService, device: Device, writer: ShardWriter) -> None:
        self._service = service
        self._device = device
        self._writer = writer
        self._blocks_max = service.config.write_batch_blocks_max
        self._bytes_max = service.config.write_batch_bytes_max
        self._pending: list[tuple[memoryview | bytes, int | None]] = []
        self._pending_bytes = 0
        self._running: asyncio.Task[None] | None = None

    async def add(self, payload: memoryview | bytes, crc: int | None) -> None:
        self._pending.append((payload, crc))
        self._pending_bytes += len(payload)
        running = self._running
        full = len(self._pending) >= self._blocks_max or self._pending_bytes >= self._bytes_max
        if running is not None and not running.done() and not full:
            return
        await self._wait()
        self._start()

    async def flush(self) -> None:
        await self._wait()
        if self._pending:
            self._start()
            await self._wait()

    def _start(self) -> None:
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        device = self._device
        self._running = asyncio.ensure_future(
            self._service._dio.run(device, device.write_blocks_sync, self._writer, batch)
        )

    async def _wait(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running

    async def settle(self) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        while not running.done():
            # Held back only until the batch's thread returns; the caller's own
            # exception or cancellation is what propagates.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([running])
        if not running.cancelled():
            running.exception()  # retrieved: an earlier error is being raised


def _piece_chunk(piece: Piece) -> Chunk:
    chunk = storage_pb2.GetShardChunk(offset=piece.offset, crc32c=piece.crc32c)
    return chunk.SerializeToString(), piece.data


def _combine_pieces(coefficients: bytes, sources: list[list[Piece]]) -> list[Piece]:
    """Piece by piece, the combination of the sources' pieces (of equal offsets and
    lengths: shards of one part read over one range), with its CRC-32C (thread)."""
    out = []
    invariant(len({len(pieces) for pieces in sources}) == 1, "sources cut into unequal pieces")
    for pieces in zip(*sources, strict=True):
        invariant(
            len({(p.offset, len(p.data)) for p in pieces}) == 1,
            f"pieces at {[(p.offset, len(p.data)) for p in pieces]} combined",
        )
        data = combine(coefficients, [p.data for p in pieces])
        out.append(Piece(pieces[0].offset, memoryview(data), crc32c.crc32c(data)))
    return out


def _add_listed(
    into: Any, pool_id: int, pg: int, entries: list[tuple[str, StoredShard | None, str]]
) -> None:
    """Listing entries of the PG into `into` (a repeated `ListedShard` field)."""
    for name, stored, error in entries:
        listed = into.add(file_name=name, error=error)
        if stored is not None:
            info = shard_info(pool_id, pg, stored.header, stored.file_bytes, name)
            listed.info.CopyFrom(info_to_proto(info))


def _checked_shard(pb: storage_pb2.ShardId) -> ShardId:
    shard = shard_id_from_proto(pb)
    check_shard_id(shard)
    return shard


def _put_header(
    shard: ShardId, request: storage_pb2.PutShardRequest, device_id: int
) -> ShardHeader:
    """The shard file header a put will write; `InvalidArgument` if it cannot be."""
    check_shard_id(shard)
    if request.HasField("data_length") and request.data_length == DATA_LENGTH_UNFINISHED:
        raise InvalidArgument(f"put of {shard}: data length {DATA_LENGTH_UNFINISHED} is reserved")
    header = ShardHeader(
        bucket=shard.bucket,
        key=shard.key,
        version_id=shard.version_id,
        part_number=shard.part_number,
        shard_index=shard.shard_index,
        k=request.k,
        m=request.m,
        block_size=request.block_size,
        data_length=request.data_length
        if request.HasField("data_length")
        else DATA_LENGTH_UNFINISHED,
    )
    try:
        encode_header(header)  # checks the profile, the shard index and every field
    except HeaderFieldError as err:
        raise InvalidArgument(f"put of {shard}: {err}", device_id=device_id) from err
    return header
