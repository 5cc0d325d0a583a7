"""Garbage collection of shard files that no object references (issue 5 §1;
shared/DESIGN.md §5; docs/gc.md). Runs on every storage node, over the node's own
devices. Does I/O: listings and deletes through the node's `StorageService` (in
process, so the device's capacity accounting follows every delete) and linearizable
reads of the object index through `KvRpcClient`.

The gateway deletes a replaced version's shard files right after an overwrite or a
delete (`ObjectStore._collect`), best effort. This is the safety net for what that
misses: a gateway that crashed between writing shards and committing the manifest, a
commit that failed, a restart before the background deletion ran, an upload aborted
half way.

Pure core (no clock, no I/O): `is_old` (has a file outlived the grace period),
`verdict` (does the index still reference it) and `Pacer` (the rate limit). Shell:
`Collector` walks each device's PG directories a page at a time, reads the index for
each old file, and deletes what nothing references; `collect_once` runs one pass and
`run_collector` one pass every `interval_s` until cancelled. Clock and sleep are
parameters (shared/STYLE.md §2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from atoll.base.errors import InvariantError
from atoll.erasure.shard_format import ShardHeader
from atoll.kv.errors import KvError
from atoll.objects.errors import ObjectsError
from atoll.objects.index import UPLOAD_ID_CHARS, object_key, prefix_end, upload_key
from atoll.objects.manifest import Manifest, UploadRecord, decode_manifest, decode_upload_record
from atoll.rpc import RpcError
from atoll.storage.devices import StoredShard
from atoll.storage.errors import StorageError
from atoll.storage.layout import ShardId
from atoll.storage.messages import DeviceInfo

log = logging.getLogger("atoll.gateway.gc")

GRACE_S_DEFAULT = 3600.0
"""A shard file younger than this is never collected: a write may still be on its way
to its manifest commit (docs/gc.md)."""
INTERVAL_S_DEFAULT = 3600.0
CHECKS_PER_S_DEFAULT = 100.0
PAGE_FILES_DEFAULT = 256
UPLOAD_SCAN_PAGE = 100
"""Upload records read per KV scan when looking for the uploads of one key."""

_ZERO_UPLOAD_ID = "0" * UPLOAD_ID_CHARS
_INDEX_ERRORS = (KvError, RpcError, ObjectsError, OSError)
"""The object index could not answer (or answered with a record that does not
decode): the file is kept and the error counted."""
_STORAGE_ERRORS = (StorageError, OSError)

Clock = Callable[[], float]
"""Wall-clock seconds since the Unix epoch (`time.time`): shard files' mtimes are
compared with it."""
Sleep = Callable[[float], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class GcConfig:
    """The collector's settings, checked once (shared/STYLE.md §7)."""

    grace_s: float = GRACE_S_DEFAULT
    """Files whose mtime is less than this far in the past are left alone."""
    interval_s: float = INTERVAL_S_DEFAULT
    """Pause between the end of one pass and the start of the next."""
    checks_per_s: float = CHECKS_PER_S_DEFAULT
    """Most old files checked against the object index per second, on this node."""
    page_files: int = PAGE_FILES_DEFAULT
    """Files listed per call into the storage service (at most its `list_page_max`)."""

    def __post_init__(self) -> None:
        if not self.grace_s >= 0:
            raise ValueError(f"gc: grace_s must be >= 0, got {self.grace_s}")
        if not self.interval_s > 0:
            raise ValueError(f"gc: interval_s must be > 0, got {self.interval_s}")
        if not self.checks_per_s > 0:
            raise ValueError(f"gc: checks_per_s must be > 0, got {self.checks_per_s}")
        if self.page_files < 1:
            raise ValueError(f"gc: page_files must be >= 1, got {self.page_files}")


@dataclasses.dataclass
class GcStats:
    """What one pass saw and did."""

    listed: int = 0
    """Shard files listed."""
    young: int = 0
    """Left alone: younger than the grace period."""
    unreadable: int = 0
    """Left alone: the header or size failed its checks (the scrubber's business)."""
    checked: int = 0
    """Old files whose references were looked up."""
    kept: int = 0
    """Checked and still referenced."""
    deleted: int = 0
    freed_bytes: int = 0
    errors: int = 0
    """Checks or deletes that failed (the file is kept), and devices or PG
    directories that could not be listed."""


# -- the pure core ---------------------------------------------------------------------------


class Verdict(enum.Enum):
    KEEP = "keep"
    DELETE = "delete"


def is_old(mtime_ns: int, now_s: float, grace_s: float) -> bool:
    """Whether a file last written at `mtime_ns` has outlived the grace period at
    `now_s`. A file from the future (a clock stepped back) is young."""
    return int(now_s * 1e9) - mtime_ns >= int(grace_s * 1e9)


def verdict(
    header: ShardHeader, manifest: Manifest | None, uploads: Iterable[UploadRecord]
) -> Verdict:
    """Keep the shard file `header` describes if the index references its part
    (`is_referenced`); else it may be deleted. The shard index and the manifest's
    durable set do not matter: a shard that missed the write is rebuilt by the
    repairer in place, and deleting it would only race with that."""
    part = (header.bucket, header.key, header.version_id, header.part_number)
    return Verdict.KEEP if is_referenced(part, manifest, uploads) else Verdict.DELETE


def is_referenced(
    part: tuple[str, str, str, int], manifest: Manifest | None, uploads: Iterable[UploadRecord]
) -> bool:
    """Whether part `(bucket, key, version id, part number)` belongs to an object:
    an upload of its key with its version id exists (any part: the upload is in
    progress), or the key's manifest is of its version and lists its part number
    among its parts.

    `manifest` is the one at `object_key(bucket, key)` (or None) and `uploads` the
    upload records of that key, both as the index holds them now, the uploads read
    before the manifest (`read_references`)."""
    bucket, key, version_id, part_number = part
    version = (bucket, key, version_id)
    if any((u.bucket, u.key, u.version_id) == version for u in uploads):
        return True
    if manifest is None or (manifest.bucket, manifest.key, manifest.version_id) != version:
        return False
    if manifest.layout is None:  # inline data: no shard file belongs to it
        return False
    return any(p.number == part_number for p in manifest.layout.parts)


class Pacer:
    """Spaces checks `1 / rate_per_s` apart. `delay(now_s)` is how long to wait before
    the next check (and books it). A pass that fell behind (a slow index) does not
    catch up in a burst, and a clock stepped back costs at most one interval."""

    def __init__(self, rate_per_s: float) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate must be > 0, got {rate_per_s}")
        self._interval_s = 1.0 / rate_per_s
        self._next_s: float | None = None

    def delay(self, now_s: float) -> float:
        if self._next_s is None:
            start = now_s
        else:
            start = min(max(now_s, self._next_s), now_s + self._interval_s)
        self._next_s = start + self._interval_s
        return start - now_s


# -- the shell -------------------------------------------------------------------------------


class LocalShards(Protocol):
    """What the collector needs of the node's `StorageService` (its in-process API)."""

    def device_infos(self) -> list[DeviceInfo]: ...

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]: ...

    async def local_list_pg(
        self, device_id: int, pool_id: int, pg: int, start_after: str, limit: int
    ) -> tuple[list[tuple[str, StoredShard | None, str]], str]: ...

    async def local_delete(self, device_id: int, shard: ShardId) -> int | None: ...


class IndexReader(Protocol):
    """What the collector needs of `KvRpcClient`: linearizable reads (its default)."""

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None: ...

    async def scan(
        self, start: bytes, end: bytes = b"", limit: int = 1000, *, reverse: bool = False
    ) -> tuple[list[tuple[bytes, bytes]], bool]: ...


@dataclasses.dataclass(frozen=True)
class References:
    """What the index said about one key: its manifest and its uploads, and the clock
    time before the reads began."""

    bucket: str
    key: str
    manifest: Manifest | None
    uploads: tuple[UploadRecord, ...]
    read_from_s: float


async def read_references(kv: IndexReader, bucket: str, key: str, now_s: float) -> References:
    """The uploads of `key`, then its manifest, each read linearizably.

    The order matters. CompleteMultipartUpload commits the manifest and removes the
    upload record in one transaction, so a version referenced by an upload at the
    first read is either still referenced by it (kept) or by the manifest at the
    second read. Reading the manifest first would let a Complete land between the
    reads and see neither."""
    # docs/formats/objects.md §2: ROOT 03 | bucket 00 | esc(key) 00 00 | upload id. The
    # prefix up to the terminator covers exactly this key's uploads.
    prefix = upload_key(bucket, key, _ZERO_UPLOAD_ID)[:-UPLOAD_ID_CHARS]
    start, end = prefix, prefix_end(prefix)
    uploads: list[UploadRecord] = []
    while True:
        entries, more = await kv.scan(start, end, UPLOAD_SCAN_PAGE)
        for _, upload in entries:
            record = decode_upload_record(upload)
            if (record.bucket, record.key) == (bucket, key):
                uploads.append(record)
        if not more or not entries:
            break
        start = entries[-1][0] + b"\x00"
    value = await kv.get(object_key(bucket, key))
    manifest = decode_manifest(value) if value is not None else None
    return References(bucket, key, manifest, tuple(uploads), now_s)


class Collector:
    """One node's collector over `shards` (its storage service) and `kv` (the object
    index). `collect_once` runs a pass; passes never overlap."""

    def __init__(
        self,
        shards: LocalShards,
        kv: IndexReader,
        config: GcConfig,
        *,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self._shards = shards
        self._kv = kv
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._pass = asyncio.Lock()

    async def collect_once(self) -> GcStats:
        """One pass over every device of the node that has not failed."""
        async with self._pass:
            stats = GcStats()
            pacer = Pacer(self.config.checks_per_s)
            for info in self._shards.device_infos():
                if not info.failed:
                    await self._device(info.device_id, stats, pacer)
            return stats

    async def _device(self, device_id: int, stats: GcStats, pacer: Pacer) -> None:
        try:
            pgs = await self._shards.local_pgs(device_id)
        except _STORAGE_ERRORS as err:
            stats.errors += 1
            log.warning("gc: device %d: cannot list its PGs: %s", device_id, err)
            return
        for pool_id, pg in pgs:
            await self._pg(device_id, pool_id, pg, stats, pacer)

    async def _pg(
        self, device_id: int, pool_id: int, pg: int, stats: GcStats, pacer: Pacer
    ) -> None:
        start_after = ""
        refs: References | None = None
        while True:
            try:
                entries, start_after = await self._shards.local_list_pg(
                    device_id, pool_id, pg, start_after, self.config.page_files
                )
            except _STORAGE_ERRORS as err:
                stats.errors += 1
                log.warning("gc: device %d: cannot list PG %d.%d: %s", device_id, pool_id, pg, err)
                return
            for name, stored, error in entries:
                stats.listed += 1
                if stored is None:
                    stats.unreadable += 1
                    log.debug("gc: device %d: %s left alone: %s", device_id, name, error)
                    continue
                refs = await self._check(device_id, pool_id, pg, stored, refs, stats, pacer)
            if not start_after:
                return

    async def _check(
        self,
        device_id: int,
        pool_id: int,
        pg: int,
        stored: StoredShard,
        refs: References | None,
        stats: GcStats,
        pacer: Pacer,
    ) -> References | None:
        """Check one listed file; returns the references to reuse for the next one."""
        header = stored.header
        if not is_old(stored.mtime_ns, self._clock(), self.config.grace_s):
            stats.young += 1
            return refs
        wait_s = pacer.delay(self._clock())
        if wait_s > 0:
            await self._sleep(wait_s)
        stats.checked += 1
        shard = ShardId(pool_id, pg, *header.identity)
        # Files of one version sort next to each other (their names start with the
        # version's digest), so the last key's references usually answer the next
        # file too: if the file was already old when they were read, using them is
        # the same as having checked it then.
        if not (
            refs is not None
            and (refs.bucket, refs.key) == (header.bucket, header.key)
            and is_old(stored.mtime_ns, refs.read_from_s, self.config.grace_s)
        ):
            try:
                refs = await read_references(self._kv, header.bucket, header.key, self._clock())
            except _INDEX_ERRORS as err:
                stats.errors += 1
                log.warning(
                    "gc: %s on device %d kept: the index did not answer: %s", shard, device_id, err
                )
                return None
        if verdict(header, refs.manifest, refs.uploads) is Verdict.KEEP:
            stats.kept += 1
            return refs
        try:
            freed = await self._shards.local_delete(device_id, shard)
        except _STORAGE_ERRORS as err:
            stats.errors += 1
            log.warning("gc: %s on device %d: delete failed: %s", shard, device_id, err)
            return refs
        if freed is not None:
            stats.deleted += 1
            stats.freed_bytes += freed
            log.info(
                "gc: %s on device %d deleted (%d bytes): no object references it",
                shard,
                device_id,
                freed,
            )
        return refs


async def collect_once(
    shards: LocalShards,
    kv: IndexReader,
    *,
    clock: Clock,
    sleep: Sleep,
    config: GcConfig | None = None,
) -> GcStats:
    """One pass of a fresh collector (tests, an operator's command)."""
    collector = Collector(shards, kv, config or GcConfig(), clock=clock, sleep=sleep)
    return await collector.collect_once()


async def run_collector(
    shards: LocalShards,
    kv: IndexReader,
    *,
    clock: Clock,
    sleep: Sleep,
    config: GcConfig | None = None,
) -> None:
    """A pass every `config.interval_s` (the first one interval after the start: a
    node just started has better things to do, and nothing here is urgent), until
    cancelled. A pass that fails is logged and the next one runs on time; an
    `InvariantError` (a bug) is not caught."""
    collector = Collector(shards, kv, config or GcConfig(), clock=clock, sleep=sleep)
    while True:
        await sleep(collector.config.interval_s)
        try:
            stats = await collector.collect_once()
        except InvariantError:
            raise
        except Exception:  # the task boundary: log it, try again next interval
            log.exception("gc: the pass failed")
            continue
        log.info("gc: pass done: %s", stats)


__all__ = [
    "GRACE_S_DEFAULT",
    "Collector",
    "GcConfig",
    "GcStats",
    "IndexReader",
    "LocalShards",
    "Pacer",
    "References",
    "Verdict",
    "collect_once",
    "is_old",
    "read_references",
    "run_collector",
    "verdict",
]
