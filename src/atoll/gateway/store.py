"""`ObjectStore`: the object layer behind the S3 API (issue 5 §1; shared/DESIGN.md §5).
Does network I/O: the object index lives in the KV space (`KvRpcClient`), object data
in shard files on the storage nodes (`atoll.gateway.datapath`).

Every method takes names as the S3 request gave them, checks them (InvalidBucketName,
KeyTooLongError, ...) and raises `S3Error`s (atoll.gateway.errors) for everything a
client should see; anything else escaping is a bug or an outage (the HTTP shell
answers InternalError / ServiceUnavailable).

Bodies: `Body` is what the HTTP shell hands over for PutObject and UploadPart: an
async iterator of the payload's bytes that raises an `S3Error` if the request turns
out bad (BadDigest, SignatureDoesNotMatch, IncompleteBody, ...), at the latest when
the last piece has been taken; once iteration has ended cleanly, `result()` is the
verified `BodyResult` (length, MD5 for the ETag, the verified `x-amz-checksum-*`).
The store commits nothing before iteration ended cleanly, so a bad body leaves no
object behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Protocol

from atoll.base.errors import invariant
from atoll.erasure.stripe import BLOCK_SIZE_DEFAULT_BYTES
from atoll.gateway.checksums import Algorithm
from atoll.gateway.datapath import DataPath, PartTarget
from atoll.gateway.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidArgument,
    InvalidBucketName,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    InvalidStorageClass,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    S3Error,
    ServiceUnavailable,
)
from atoll.gateway.payload import BodyResult
from atoll.gateway.s3proto import (
    CompletedPart,
    Condition,
    evaluate_read_conditions,
    evaluate_write_conditions,
)
from atoll.kv.errors import KvClientError, KvTimeout
from atoll.kv.rpc_client import KvOutcomeUnknown, KvRpcClient
from atoll.meta.cluster_map import ClusterMap, PoolRecord
from atoll.objects import errors as objects_errors
from atoll.objects.index import (
    ListQuery,
    ObjectListing,
    ObjectPage,
    PartPage,
    UploadListing,
    UploadPage,
    bucket_key,
    buckets_range,
    check_bucket_name,
    check_key,
    check_part_number,
    check_upload_id,
    make_upload_id,
    make_version_id,
    object_key,
    objects_range,
    page_parts,
    part_key,
    parts_range,
    upload_key,
    uploads_range,
)
from atoll.objects.manifest import (
    INLINE_BYTES_MAX,
    INLINE_THRESHOLD_DEFAULT_BYTES,
    BucketRecord,
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    Layout,
    Manifest,
    ManifestSummary,
    ObjectMetadata,
    Part,
    PartRecord,
    RepairRecord,
    UploadRecord,
    decode_bucket_record,
    decode_manifest,
    decode_manifest_summary,
    decode_part_record,
    decode_upload_record,
    encode_record,
)
from atoll.placement.pools import pg_of
from atoll.proto import kv_pb2
from atoll.rpc import RpcCaller, RpcPool


class Body(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes | memoryview]: ...

    def result(self) -> BodyResult: ...


@dataclass(frozen=True, slots=True)
class CopySource:
    """The object (or part of it) a CopyObject / UploadPartCopy reads: `byte_range`
    is `(first, last)` inclusive (x-amz-copy-source-range) or None for all of it;
    `conditions` the `x-amz-copy-source-if-*` headers, renamed to the plain
    conditional header names (`if-match`, ...), evaluated against the source."""

    bucket: str
    key: str
    byte_range: tuple[int, int] | None = None
    conditions: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    key: str
    error_code: str = ""  # "" when deleted (or absent: S3 reports both as deleted)
    error_message: str = ""


log = logging.getLogger("atoll.gateway.store")

INLINE_THRESHOLD_BYTES = INLINE_THRESHOLD_DEFAULT_BYTES
PART_BYTES_MIN = 5 * 1024 * 1024  # S3: every part of a completed upload but the last
SCAN_PAGE = 1000
DELETE_BATCH = 500  # keys per Txn when cleaning up an upload's part records
GC_TASKS_MAX = 64  # background deletions of superseded shard files running at once
GC_PENDING_MAX = 4096  # superseded versions waiting; past that, garbage collection's job
COLLECT_DELAY_S = 30.0  # reads of the replaced version that are in flight may finish
BUCKET_CACHE_S = 2.0  # a bucket's record (its pool) is reused this long for writes
BUCKET_CACHE_MAX = 10_000
SET_POOL_ATTEMPTS = 8
DEFAULT_POOL = "standard"


@contextlib.contextmanager
def _client_errors() -> Iterator[None]:
    """The object layer's and the KV client's errors as the S3 errors clients see."""
    try:
        yield
    except objects_errors.InvalidBucketName as err:
        raise InvalidBucketName(str(err)) from err
    except objects_errors.KeyTooLong as err:
        raise KeyTooLongError(str(err)) from err
    except objects_errors.MetadataTooLarge as err:
        raise MetadataTooLarge(str(err)) from err
    except objects_errors.InvalidUploadId as err:
        raise NoSuchUpload() from err
    except objects_errors.ObjectsError as err:
        raise InvalidArgument(str(err)) from err
    except KvClientError as err:
        raise ServiceUnavailable(f"the object index is unavailable: {err}") from err


def _checksum_of(result: BodyResult) -> Checksum | None:
    if result.checksum is None:
        return None
    algorithm, digest = result.checksum
    return Checksum(ChecksumAlgorithm[algorithm.name], digest)


class _Resumed:
    """`body` again after its first bytes (`head`) were taken from `rest`, its
    iteration, to decide inline or not; `result()` is `body`'s."""

    def __init__(self, head: bytes, rest: AsyncIterator[bytes | memoryview], body: Body) -> None:
        self._head = head
        self._rest = rest
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        if self._head:
            yield self._head
        async for piece in self._rest:
            yield piece

    def result(self) -> BodyResult:
        return self._body.result()


class _CopyBody:
    """The bytes of a source object as a `Body` (CopyObject, UploadPartCopy)."""

    def __init__(self, pieces: AsyncGenerator[memoryview, None]) -> None:
        self._pieces = pieces
        self._md5 = hashlib.md5()
        self._length = 0
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        async with contextlib.aclosing(self._pieces) as pieces:
            async for piece in pieces:
                self._md5.update(piece)
                self._length += len(piece)
                yield piece
        self._done = True

    def result(self) -> BodyResult:
        invariant(self._done, "result() of a copy body before its end")
        return BodyResult(self._length, {Algorithm.MD5: self._md5.digest()}, None, {})


class ObjectStore:
    def __init__(
        self,
        kv: KvRpcClient,
        pool: RpcPool,
        cluster_map: Callable[[], ClusterMap],
        *,
        clock_ms: Callable[[], int],
        entropy: Callable[[int], bytes],
        inline_threshold: int = INLINE_THRESHOLD_BYTES,
        block_size: int = BLOCK_SIZE_DEFAULT_BYTES,
        collect_delay_s: float = COLLECT_DELAY_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 <= inline_threshold <= INLINE_BYTES_MAX:
            raise ValueError(f"inline_threshold must be 0..{INLINE_BYTES_MAX}")
        self.kv = kv
        self.data = DataPath(pool, cluster_map)
        self._map = cluster_map
        self._clock_ms = clock_ms
        self._entropy = entropy
        self.inline_threshold = inline_threshold
        self.block_size = block_size
        self.collect_delay_s = collect_delay_s
        self._sleep = sleep
        self._buckets: dict[str, tuple[int, BucketRecord]] = {}  # name -> (read at ms, record)
        self._gc_slots = asyncio.Semaphore(GC_TASKS_MAX)
        self._gc_tasks: set[asyncio.Task[None]] = set()

    def use_local_storage(self, node_id: int, caller: RpcCaller) -> None:
        """Reach this node's own shard service in process (`DataPath.use_local`)."""
        self.data.use_local(node_id, caller)

    @property
    def degraded_reads(self) -> int:
        """Stripes this gateway decoded from parity since it started."""
        return self.data.degraded_stripes

    async def close(self) -> None:
        for task in list(self._gc_tasks):
            task.cancel()
        await asyncio.gather(*self._gc_tasks, return_exceptions=True)

    # -- helpers -------------------------------------------------------------------------

    async def _scan_all(self, start: bytes, end: bytes) -> AsyncIterator[tuple[bytes, bytes]]:
        while True:
            with _client_errors():
                entries, more = await self.kv.scan(start, end, SCAN_PAGE)
            for entry in entries:
                yield entry
            if not more or not entries:
                return
            start = entries[-1][0] + b"\x00"

    def _pool(self, record: BucketRecord, storage_class: str | None) -> PoolRecord:
        m = self._map()
        if storage_class:
            for pool in sorted(m.pools.values(), key=lambda p: p.id):
                if pool.storage_class == storage_class:
                    return pool
            raise InvalidStorageClass(f"No pool has storage class {storage_class!r}.")
        default = m.pool_named(record.pool) or m.pool_named(DEFAULT_POOL)
        if default is None:
            raise ServiceUnavailable(f"pool {record.pool!r} of the bucket does not exist")
        return default

    def _target(
        self, pool_id: int, bucket: str, key: str, version_id: str, part_number: int, pg: int | None
    ) -> PartTarget:
        m = self._map()
        pool = m.pools.get(pool_id)
        table = m.pg_tables.get(pool_id)
        if pool is None or table is None:
            raise ServiceUnavailable(f"pool {pool_id} has no placement")
        if pg is None:
            pg = pg_of(pool.as_placement(), bucket, key, version_id)
        if pg >= len(table.members):
            raise ServiceUnavailable(f"pool {pool_id} has no PG {pg}")
        return PartTarget(
            pool.id,
            pool.k,
            pool.m,
            pg,
            table.members[pg],
            m.epoch,
            bucket,
            key,
            version_id,
            part_number,
            self.block_size,
        )

    def _repair_ops(self, target: PartTarget, durable: Sequence[int]) -> list[kv_pb2.TxnOp]:
        missed = tuple(i for i in range(target.k + target.m) if i not in durable)
        if not missed:
            return []
        record = RepairRecord(
            pool_id=target.pool_id,
            pg=target.pg,
            bucket=target.bucket,
            key=target.key,
            version_id=target.version_id,
            part_number=target.part_number,
            epoch=target.epoch,
            k=target.k,
            m=target.m,
            missed=missed,
        )
        return [_put_op(record.index_key, encode_record(record))]

    async def _write(
        self, target: PartTarget, body: Body
    ) -> tuple[Part, BodyResult, list[kv_pb2.TxnOp]]:
        """Write a part's data; its Part entry, the verified body and the repair
        record ops to commit with it."""
        written = await self.data.write_part(target, aiter(body))
        result = body.result()
        part = Part(
            number=target.part_number,
            size=written.size,
            etag=result.digests[Algorithm.MD5].hex(),
            pg=target.pg,
            block_size=target.block_size,
            epoch=target.epoch,
            durable=written.durable,
        )
        return part, result, self._repair_ops(target, written.durable)

    def _collect(self, manifest: Manifest | None) -> None:
        """Delete the shard files of a version no manifest references any more, in
        the background (garbage collection finds what this misses)."""
        if manifest is None or manifest.layout is None:
            return
        layout = manifest.layout

        if len(self._gc_tasks) >= GC_PENDING_MAX:
            log.warning("%d versions wait for collection: left to GC", len(self._gc_tasks))
            return

        async def run() -> None:
            await self._sleep(self.collect_delay_s)
            async with self._gc_slots:
                for part in layout.parts:
                    try:
                        target = self._target(
                            layout.pool_id,
                            manifest.bucket,
                            manifest.key,
                            manifest.version_id,
                            part.number,
                            part.pg,
                        )
                    except ServiceUnavailable:
                        return
                    await self.data.delete_part(target, part.durable)

        task = asyncio.create_task(run(), name="gc-version")
        self._gc_tasks.add(task)
        task.add_done_callback(self._gc_tasks.discard)

    async def _drive(self, listing: ObjectListing[bytes] | UploadListing[bytes]) -> None:
        """Feed a listing the KV scans it asks for until its page is complete."""
        while (rng := listing.scan_range()) is not None:
            entries, more = await self.kv.scan(rng.start, rng.end, listing.scan_limit())
            listing.feed(entries, exhausted=not more)

    async def _commit(
        self,
        compares: list[kv_pb2.Compare],
        ops: list[kv_pb2.TxnOp],
    ) -> kv_pb2.TxnResponse:
        with _client_errors():
            return await self.kv.txn(kv_pb2.TxnRequest(compares=compares, success=ops))

    # -- buckets -------------------------------------------------------------------------

    async def list_buckets(self) -> list[BucketRecord]:
        start, end = buckets_range()
        with _client_errors():
            return [decode_bucket_record(v) async for _, v in self._scan_all(start, end)]

    async def create_bucket(self, bucket: str, owner: str) -> BucketRecord:
        with _client_errors():
            check_bucket_name(bucket)
            m = self._map()
            pool = m.pool_named(DEFAULT_POOL) or min(
                m.pools.values(), key=lambda p: p.id, default=None
            )
            if pool is None:
                raise ServiceUnavailable("the cluster has no pools yet")
            record = BucketRecord(bucket, pool.name, owner, self._clock_ms())
            if not await self.kv.cas(record.index_key, None, encode_record(record)):
                raise BucketAlreadyOwnedByYou(BucketName=bucket)
        return record

    async def head_bucket(self, bucket: str) -> BucketRecord:
        with _client_errors():
            check_bucket_name(bucket)
            value = await self.kv.get(bucket_key(bucket))
            if value is None:
                raise NoSuchBucket(BucketName=bucket)
            return decode_bucket_record(value)

    async def set_bucket_pool(self, bucket: str, pool_name: str) -> BucketRecord:
        """Make `pool_name` the pool new objects of the bucket go to (`atoll bucket
        set-pool`); objects already written stay where they are. NoSuchBucket;
        InvalidArgument for a pool the cluster map does not have."""
        if self._map().pool_named(pool_name) is None:
            raise InvalidArgument(f"There is no pool named {pool_name!r}.")
        for _ in range(SET_POOL_ATTEMPTS):
            with _client_errors():
                check_bucket_name(bucket)
                value = await self.kv.get(bucket_key(bucket))
                if value is None:
                    raise NoSuchBucket(BucketName=bucket)
                record = dataclasses.replace(decode_bucket_record(value), pool=pool_name)
                if await self.kv.cas(record.index_key, value, encode_record(record)):
                    self._buckets.pop(bucket, None)
                    return record
        raise ServiceUnavailable(f"bucket {bucket} kept changing; try again")

    async def _bucket_for_write(self, bucket: str) -> BucketRecord:
        """The bucket's record, reused for `BUCKET_CACHE_S`: a write only takes its pool
        from it, and commits with a compare that the bucket still exists."""
        now = self._clock_ms()
        cached = self._buckets.get(bucket)
        if cached is not None and now - cached[0] < BUCKET_CACHE_S * 1000:
            return cached[1]
        record = await self.head_bucket(bucket)
        if len(self._buckets) >= BUCKET_CACHE_MAX:
            self._buckets.clear()
        self._buckets[bucket] = (now, record)
        return record

    async def delete_bucket(self, bucket: str) -> None:
        await self.head_bucket(bucket)
        with _client_errors():
            for start, end in (objects_range(bucket), uploads_range(bucket)):
                entries, _ = await self.kv.scan(start, end, 1)
                if entries:
                    raise BucketNotEmpty(BucketName=bucket)
            await self.kv.delete(bucket_key(bucket))
        self._buckets.pop(bucket, None)

    # -- objects -------------------------------------------------------------------------

    async def _current(self, bucket: str, key: str) -> tuple[bytes | None, Manifest | None]:
        with _client_errors():
            value = await self.kv.get(object_key(bucket, key))
            return value, (decode_manifest(value) if value is not None else None)

    async def _check_write_conditions(
        self, bucket: str, key: str, conditions: Mapping[str, str] | None
    ) -> list[kv_pb2.Compare]:
        """The compares that make a conditional write atomic (none if unconditional)."""
        if not conditions or ("if-match" not in conditions and "if-none-match" not in conditions):
            return []
        value, current = await self._current(bucket, key)
        if evaluate_write_conditions(conditions, current.etag if current else None) is not (
            Condition.PROCEED
        ):
            raise PreconditionFailed(
                Condition="If-Match" if "if-match" in conditions else "If-None-Match"
            )
        return [_same_value(object_key(bucket, key), value)]

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        metadata: ObjectMetadata,
        storage_class: str | None = None,
        conditions: Mapping[str, str] | None = None,
    ) -> Manifest:
        with _client_errors():
            check_key(key)
        record = await self._bucket_for_write(bucket)
        pool = self._pool(record, storage_class)
        compares = await self._check_write_conditions(bucket, key, conditions)
        version_id = make_version_id(self._entropy(16))
        pieces = aiter(body)
        head = bytearray()
        async for piece in pieces:
            head += piece
            if len(head) > self.inline_threshold:
                break
        now = self._clock_ms()
        if len(head) <= self.inline_threshold:
            result = body.result()
            manifest = self._manifest(
                bucket,
                key,
                version_id,
                len(head),
                result.digests[Algorithm.MD5].hex(),
                now,
                pool,
                metadata,
                _checksum_of(result),
                inline=bytes(head),
            )
            ops: list[kv_pb2.TxnOp] = []
            target = None
        else:
            target = self._target(pool.id, bucket, key, version_id, 0, None)
            part, result, ops = await self._write(target, _Resumed(bytes(head), pieces, body))
            layout = Layout(pool.id, pool.k, pool.m, [part])
            manifest = self._manifest(
                bucket,
                key,
                version_id,
                part.size,
                part.etag,
                now,
                pool,
                metadata,
                _checksum_of(result),
                layout=layout,
            )
        await self._commit_manifest(manifest, compares, ops, target)
        return manifest

    def _manifest(
        self,
        bucket: str,
        key: str,
        version_id: str,
        size: int,
        etag: str,
        now: int,
        pool: PoolRecord,
        metadata: ObjectMetadata,
        checksum: Checksum | None,
        *,
        inline: bytes | None = None,
        layout: Layout | None = None,
    ) -> Manifest:
        with _client_errors():
            return Manifest(
                bucket=bucket,
                key=key,
                version_id=version_id,
                size=size,
                etag=etag,
                last_modified_ms=now,
                storage_class=pool.storage_class,
                metadata=metadata,
                checksum=checksum,
                inline=inline,
                layout=layout,
            )

    async def _commit_manifest(
        self,
        manifest: Manifest,
        compares: list[kv_pb2.Compare],
        ops: list[kv_pb2.TxnOp],
        target: PartTarget | None,
        extra: Sequence[kv_pb2.TxnOp] = (),
    ) -> None:
        """Commit the manifest (with its repair records and `extra` ops) if the bucket
        still exists and `compares` hold; collect the version it replaces."""
        key = manifest.index_key
        put = kv_pb2.TxnOp(
            put=kv_pb2.PutRequest(key=key, value=encode_record(manifest), prev_kv=True)
        )
        exists = _exists(bucket_key(manifest.bucket))
        try:
            response = await self._commit([exists, *compares], [put, *ops, *extra])
        except BaseException as err:
            if target is not None and not _maybe_applied(err):
                await self.data.delete_part(target, range(target.k + target.m))
            raise
        if not response.succeeded:
            if target is not None:
                await self.data.delete_part(target, range(target.k + target.m))
            if (await self._commit([exists], [])).succeeded:
                raise PreconditionFailed()
            self._buckets.pop(manifest.bucket, None)
            raise NoSuchBucket(BucketName=manifest.bucket)
        previous = response.results[0].put.prev_kv
        if previous.key:
            self._collect(decode_manifest(previous.value))

    async def head_object(self, bucket: str, key: str) -> Manifest:
        with _client_errors():
            check_bucket_name(bucket)
            check_key(key)
        _, manifest = await self._current(bucket, key)
        if manifest is None:
            await self.head_bucket(bucket)
            raise NoSuchKey(Key=key)
        return manifest

    async def read_object(
        self, manifest: Manifest, first: int = 0, end: int | None = None
    ) -> AsyncGenerator[memoryview, None]:
        end = manifest.size if end is None else min(end, manifest.size)
        if manifest.inline is not None:
            if first < end:
                yield memoryview(manifest.inline)[first:end]
            return
        layout = manifest.layout
        invariant(layout is not None, "a manifest without inline data has a layout")
        assert layout is not None
        at = 0
        for part in layout.parts:
            lo, hi = max(first, at), min(end, at + part.size)
            if lo < hi:
                target = self._target(
                    layout.pool_id,
                    manifest.bucket,
                    manifest.key,
                    manifest.version_id,
                    part.number,
                    part.pg,
                )
                target = dataclasses.replace(target, block_size=part.block_size)
                reader = self.data.read_part(target, part.size, lo - at, hi - at, part.durable)
                async with contextlib.aclosing(reader) as pieces:
                    async for piece in pieces:
                        yield piece
            at += part.size
            if at >= end:
                return

    async def delete_object(self, bucket: str, key: str) -> None:
        await self.head_bucket(bucket)
        await self._delete(bucket, key)

    async def _delete(self, bucket: str, key: str) -> None:
        """Remove the object of an existing bucket, if there is one."""
        with _client_errors():
            check_key(key)
            response = await self.kv.call(
                "Delete",
                kv_pb2.DeleteRequest(key=object_key(bucket, key), prev_kv=True),
                kv_pb2.DeleteResponse,
                read=False,
            )
        if response.deleted:
            self._collect(decode_manifest(response.prev_kv.value))

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> list[DeleteOutcome]:
        await self.head_bucket(bucket)
        outcomes = []
        for key in keys:
            try:
                await self._delete(bucket, key)  # the bucket was read once, above
                outcomes.append(DeleteOutcome(key))
            except S3Error as err:
                outcomes.append(DeleteOutcome(key, err.code, err.message))
        return outcomes

    async def _source(self, source: CopySource) -> tuple[Manifest, int, int]:
        manifest = await self.head_object(source.bucket, source.key)
        if source.conditions:
            condition = evaluate_read_conditions(
                source.conditions, manifest.etag, manifest.last_modified_ms // 1000
            )
            if condition is not Condition.PROCEED:
                raise PreconditionFailed(Condition="x-amz-copy-source-If-*")
        if source.byte_range is None:
            return manifest, 0, manifest.size
        first, last = source.byte_range
        if not 0 <= first <= last < manifest.size:
            raise InvalidRange(
                f"The range {first}-{last} is not within the source's {manifest.size} bytes.",
                ActualObjectSize=str(manifest.size),
            )
        return manifest, first, last + 1

    async def copy_object(
        self,
        source: CopySource,
        bucket: str,
        key: str,
        *,
        metadata: ObjectMetadata | None,
        storage_class: str | None = None,
    ) -> Manifest:
        src, first, end = await self._source(source)
        if (
            (source.bucket, source.key) == (bucket, key)
            and metadata is None
            and storage_class in (None, src.storage_class)
        ):
            raise InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes."
            )
        body = _CopyBody(self.read_object(src, first, end))
        return await self.put_object(
            bucket,
            key,
            body,
            metadata=src.metadata if metadata is None else metadata,
            storage_class=storage_class,
        )

    async def list_objects(self, bucket: str, query: ListQuery) -> ObjectPage[ManifestSummary]:
        await self.head_bucket(bucket)
        with _client_errors():
            listing: ObjectListing[bytes] = ObjectListing(bucket, query)
            await self._drive(listing)
            page = listing.page()
            contents = tuple((k, decode_manifest_summary(v)) for k, v in page.contents)
        return ObjectPage(contents, page.common_prefixes, page.is_truncated, page.next_marker)

    # -- multipart uploads ---------------------------------------------------------------

    async def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        metadata: ObjectMetadata,
        storage_class: str | None = None,
        checksum_algorithm: ChecksumAlgorithm | None = None,
    ) -> UploadRecord:
        with _client_errors():
            check_key(key)
        record = await self.head_bucket(bucket)
        pool = self._pool(record, storage_class)
        now = self._clock_ms()
        with _client_errors():
            upload = UploadRecord(
                bucket=bucket,
                key=key,
                upload_id=make_upload_id(now, self._entropy(8)),
                version_id=make_version_id(self._entropy(16)),
                initiated_ms=now,
                pool_id=pool.id,
                storage_class=pool.storage_class,
                metadata=metadata,
                checksum_algorithm=checksum_algorithm,
                checksum_type=None if checksum_algorithm is None else ChecksumType.COMPOSITE,
            )
        put = _put_op(upload.index_key, encode_record(upload))
        if not (await self._commit([_exists(bucket_key(bucket))], [put])).succeeded:
            raise NoSuchBucket(BucketName=bucket)
        return upload

    async def _upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        with _client_errors():
            check_bucket_name(bucket)
            check_key(key)
            check_upload_id(upload_id)
            value = await self.kv.get(upload_key(bucket, key, upload_id))
            if value is None:
                raise NoSuchUpload(UploadId=upload_id)
            return decode_upload_record(value)

    async def _store_part(self, upload: UploadRecord, part_number: int, body: Body) -> PartRecord:
        with _client_errors():
            check_part_number(part_number)
        target = self._target(
            upload.pool_id, upload.bucket, upload.key, upload.version_id, part_number, None
        )
        part, _, ops = await self._write(target, body)
        with _client_errors():
            record = PartRecord(
                part=part, k=target.k, m=target.m, last_modified_ms=self._clock_ms()
            )
        key = part_key(upload.bucket, upload.key, upload.upload_id, part_number)
        put = _put_op(key, encode_record(record))
        try:
            response = await self._commit([_exists(upload.index_key)], [put, *ops])
        except BaseException as err:
            if not _maybe_applied(err):
                await self.data.delete_part(target, range(target.k + target.m))
            raise
        if not response.succeeded:
            await self.data.delete_part(target, range(target.k + target.m))
            raise NoSuchUpload(UploadId=upload.upload_id)
        return record

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body
    ) -> PartRecord:
        upload = await self._upload(bucket, key, upload_id)
        return await self._store_part(upload, part_number, body)

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, part_number: int, source: CopySource
    ) -> PartRecord:
        upload = await self._upload(bucket, key, upload_id)
        src, first, end = await self._source(source)
        return await self._store_part(
            upload, part_number, _CopyBody(self.read_object(src, first, end))
        )

    async def _parts(self, upload: UploadRecord) -> dict[int, tuple[bytes, PartRecord]]:
        start, end = parts_range(upload.bucket, upload.key, upload.upload_id)
        out = {}
        with _client_errors():
            async for k, v in self._scan_all(start, end):
                record = decode_part_record(v)
                out[record.part.number] = (k, record)
        return out

    async def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        conditions: Mapping[str, str] | None = None,
    ) -> Manifest:
        upload = await self._upload(bucket, key, upload_id)
        uploaded = await self._parts(upload)
        if not parts:
            raise MalformedXML("The CompleteMultipartUpload body lists no parts.")
        chosen: list[Part] = []
        for n, wanted in enumerate(parts):
            if n and wanted.part_number <= parts[n - 1].part_number:
                raise InvalidPartOrder()
            found = uploaded.get(wanted.part_number)
            if found is None or found[1].part.etag != wanted.etag.strip('"').lower():
                raise InvalidPart(PartNumber=str(wanted.part_number), ETag=wanted.etag)
            chosen.append(found[1].part)
        for part in chosen[:-1]:
            if part.size < PART_BYTES_MIN:
                raise EntityTooSmall(
                    ProposedSize=str(part.size),
                    MinSizeAllowed=str(PART_BYTES_MIN),
                    PartNumber=str(part.number),
                )
        compares = await self._check_write_conditions(bucket, key, conditions)
        digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in chosen)).hexdigest()
        first = uploaded[chosen[0].number][1]
        pool = self._map().pools.get(upload.pool_id)
        storage_class = pool.storage_class if pool else upload.storage_class
        with _client_errors():
            manifest = Manifest(
                bucket=bucket,
                key=key,
                version_id=upload.version_id,
                size=sum(p.size for p in chosen),
                etag=f"{digest}-{len(chosen)}",
                last_modified_ms=self._clock_ms(),
                storage_class=storage_class,
                metadata=upload.metadata,
                layout=Layout(upload.pool_id, first.k, first.m, chosen),
            )
        remove_upload = kv_pb2.TxnOp(delete=kv_pb2.DeleteRequest(key=upload.index_key))
        await self._commit_manifest(
            manifest, [_exists(upload.index_key), *compares], [], None, [remove_upload]
        )
        used = {p.number for p in chosen}
        await self._drop_parts(upload, uploaded, unused_only=used)
        return manifest

    async def _drop_parts(
        self,
        upload: UploadRecord,
        uploaded: Mapping[int, tuple[bytes, PartRecord]],
        unused_only: set[int] | None = None,
    ) -> None:
        """Delete the part records; and the shard files of the parts not in
        `unused_only` (all of them if None)."""
        keys = [k for k, _ in uploaded.values()]
        for i in range(0, len(keys), DELETE_BATCH):
            ops = [
                kv_pb2.TxnOp(delete=kv_pb2.DeleteRequest(key=k)) for k in keys[i : i + DELETE_BATCH]
            ]
            await self._commit([], ops)
        keep = unused_only or set()
        for number, (_, record) in uploaded.items():
            if number in keep:
                continue
            target = self._target(
                upload.pool_id, upload.bucket, upload.key, upload.version_id, number, record.part.pg
            )
            await self.data.delete_part(target, record.part.durable)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        upload = await self._upload(bucket, key, upload_id)
        with _client_errors():
            if not await self.kv.delete(upload.index_key):
                raise NoSuchUpload(UploadId=upload_id)
        await self._drop_parts(upload, await self._parts(upload))

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after_part: int, max_parts: int
    ) -> tuple[UploadRecord, PartPage[PartRecord]]:
        upload = await self._upload(bucket, key, upload_id)
        with _client_errors():
            start, end = parts_range(bucket, key, upload_id, after_part)
            entries, _ = await self.kv.scan(start, end, max_parts + 1)
            page = page_parts(entries, max_parts)
            parts = tuple((n, decode_part_record(v)) for n, v in page.parts)
        return upload, PartPage(parts, page.is_truncated, page.next_part_number_marker)

    async def list_uploads(
        self, bucket: str, query: ListQuery, upload_id_marker: str = ""
    ) -> UploadPage[UploadRecord]:
        await self.head_bucket(bucket)
        with _client_errors():
            listing: UploadListing[bytes] = UploadListing(bucket, query, upload_id_marker)
            await self._drive(listing)
            page = listing.page()
            uploads = tuple((k, u, decode_upload_record(v)) for k, u, v in page.uploads)
        return UploadPage(
            uploads,
            page.common_prefixes,
            page.is_truncated,
            page.next_key_marker,
            page.next_upload_id_marker,
        )


def _maybe_applied(err: BaseException) -> bool:
    """Whether a commit that raised `err` may still have applied (no answer in time,
    or the connection broke after sending): then its shard files must stay (if it did
    not apply, garbage collection removes them)."""
    cause = err.__cause__ if isinstance(err, ServiceUnavailable) else err
    return isinstance(cause, (KvTimeout, KvOutcomeUnknown, asyncio.CancelledError))


def _put_op(key: bytes, value: bytes) -> kv_pb2.TxnOp:
    return kv_pb2.TxnOp(put=kv_pb2.PutRequest(key=key, value=value))


def _exists(key: bytes) -> kv_pb2.Compare:
    return kv_pb2.Compare(
        key=key, target=kv_pb2.Compare.EXISTS, result=kv_pb2.Compare.EQUAL, exists=True
    )


def _same_value(key: bytes, value: bytes | None) -> kv_pb2.Compare:
    """Holds if `key` still holds `value` (None: is still absent)."""
    if value is None:
        return kv_pb2.Compare(
            key=key, target=kv_pb2.Compare.EXISTS, result=kv_pb2.Compare.EQUAL, exists=False
        )
    return kv_pb2.Compare(
        key=key, target=kv_pb2.Compare.VALUE, result=kv_pb2.Compare.EQUAL, value=value
    )
