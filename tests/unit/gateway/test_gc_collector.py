"""The garbage collector's shell (atoll.gateway.gc.Collector) over small fakes of the
node's storage service and of the object index: what a pass deletes and keeps, that
it never deletes when the index does not answer, the order of its reads (a Complete
landing between them must not cost an object), paging, pacing on an injected clock,
and the loop of `run_collector`. No sockets, no real sleeps."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable

import pytest

from atoll.erasure.shard_format import ShardHeader
from atoll.gateway.gc import Collector, GcConfig, GcStats, collect_once, run_collector
from atoll.kv.errors import KvUnavailable
from atoll.objects.index import make_upload_id
from atoll.objects.manifest import Layout, Manifest, Part, UploadRecord, encode_record
from atoll.storage.devices import StoredShard
from atoll.storage.errors import DeviceFailed
from atoll.storage.layout import ShardId, shard_file_name
from atoll.storage.messages import DeviceInfo

MiB = 1024 * 1024
ETAG = "0" * 32
NOW_S = 1_764_000_000.0
OLD_NS = int((NOW_S - 7200) * 1e9)
YOUNG_NS = int((NOW_S - 60) * 1e9)
POOL, PG = 1, 3


class FakeShards:
    """The in-process API of `StorageService` over dicts: device -> PG -> name -> file."""

    def __init__(self) -> None:
        self.files: dict[int, dict[tuple[int, int], dict[str, StoredShard | None]]] = {}
        self.failed: set[int] = set()
        self.deleted: list[tuple[int, ShardId]] = []
        self.limits: list[int] = []
        self.fail_delete = False

    def add(self, device_id: int, h: ShardHeader, mtime_ns: int = OLD_NS) -> ShardId:
        shard = ShardId(POOL, PG, *h.identity)
        name = shard_file_name(shard)
        pgs = self.files.setdefault(device_id, {}).setdefault((POOL, PG), {})
        pgs[name] = StoredShard(name, h, 1000, mtime_ns)
        return shard

    def add_unreadable(self, device_id: int, name: str) -> None:
        self.files.setdefault(device_id, {}).setdefault((POOL, PG), {})[name] = None

    def names(self, device_id: int = 1) -> set[str]:
        return set(self.files.get(device_id, {}).get((POOL, PG), {}))

    def device_infos(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(d, f"/d{d}", 0, 0, 0, 0, d in self.failed, "")
            for d in sorted(self.files.keys() | self.failed)
        ]

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]:
        if device_id in self.failed:
            raise DeviceFailed("failed", device_id=device_id)
        return sorted(self.files.get(device_id, {}))

    async def local_list_pg(
        self, device_id: int, pool_id: int, pg: int, start_after: str, limit: int
    ) -> tuple[list[tuple[str, StoredShard | None, str]], str]:
        self.limits.append(limit)
        files = self.files[device_id][(pool_id, pg)]
        names = sorted(n for n in files if n > start_after)
        page = names[:limit]
        entries = [(n, files[n], "" if files[n] else "bad header") for n in page]
        return entries, page[-1] if len(names) > limit else ""

    async def local_delete(self, device_id: int, shard: ShardId) -> int | None:
        if self.fail_delete:
            raise DeviceFailed("I/O failed", device_id=device_id)
        files = self.files[device_id][(shard.pool_id, shard.pg)]
        if files.pop(shard_file_name(shard), None) is None:
            return None
        self.deleted.append((device_id, shard))
        return 1000


class FakeIndex:
    """The KV space as a sorted dict. `after_read` runs once, right after the next
    read (a get or a scan) has been answered: a write landing between two reads."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.reads = 0
        self.down = False
        self.after_read: Callable[[], None] | None = None

    def _answered(self) -> None:
        if self.after_read is not None:
            hook, self.after_read = self.after_read, None
            hook()

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None:
        assert not serializable, "gc reads must be linearizable"
        self.reads += 1
        if self.down:
            raise KvUnavailable("no replica")
        value = self.data.get(key)
        self._answered()
        return value

    async def scan(
        self, start: bytes, end: bytes = b"", limit: int = 1000, *, reverse: bool = False
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        self.reads += 1
        if self.down:
            raise KvUnavailable("no replica")
        keys = sorted(self.data)
        found = keys[bisect.bisect_left(keys, start) : bisect.bisect_left(keys, end)]
        result = [(k, self.data[k]) for k in found[:limit]], len(found) > limit
        self._answered()
        return result

    def commit(self, record: Manifest | UploadRecord) -> None:
        self.data[record.index_key] = encode_record(record)


def header(key: str, version_id: str, part: int = 0, index: int = 0) -> ShardHeader:
    return ShardHeader("photos", key, version_id, part, index, 4, 2, MiB, 5 * MiB)


def manifest(key: str, version_id: str, numbers: tuple[int, ...] = (0,)) -> Manifest:
    parts = [Part(n, 5 * MiB, ETAG, PG, MiB, 7, (0, 1, 2, 3, 4, 5)) for n in numbers]
    etag = ETAG if numbers == (0,) else f"{ETAG}-{len(parts)}"
    return Manifest(
        "photos",
        key,
        version_id,
        5 * MiB * len(parts),
        etag,
        1,
        "STANDARD",
        layout=Layout(POOL, 4, 2, parts),
    )


def upload(key: str, version_id: str) -> UploadRecord:
    upload_id = make_upload_id(1_764_000_000_000, bytes(8))
    return UploadRecord("photos", key, upload_id, version_id, 1_764_000_000_000, POOL, "STANDARD")


class Time:
    """An injected clock that only a sleep moves."""

    def __init__(self) -> None:
        self.now_s = NOW_S
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


def run_pass(shards: FakeShards, index: FakeIndex, **config: float) -> GcStats:
    t = Time()
    settings = GcConfig(**{"grace_s": 3600, "checks_per_s": 1e9, **config})  # type: ignore[arg-type]
    return asyncio.run(collect_once(shards, index, clock=t.clock, sleep=t.sleep, config=settings))


def test_a_pass_deletes_what_nothing_references_and_keeps_the_rest() -> None:
    shards, index = FakeShards(), FakeIndex()
    index.commit(manifest("live", "v1"))
    index.commit(manifest("mp", "v5", (1, 3)))
    index.commit(upload("going", "v7"))
    keep = {
        shards.add(1, header("live", "v1")),
        shards.add(1, header("mp", "v5", part=1)),
        shards.add(1, header("mp", "v5", part=3)),
        shards.add(1, header("going", "v7", part=2)),
        shards.add(1, header("fresh", "v9"), mtime_ns=YOUNG_NS),  # a write in flight
    }
    orphans = {
        shards.add(1, header("live", "v0")),  # the version "live" replaced
        shards.add(1, header("crashed", "v2")),  # never committed
        shards.add(1, header("mp", "v5", part=2)),  # a part Complete did not use
        shards.add(1, header("going", "v6", part=1)),  # an upload aborted half way
    }
    shards.add_unreadable(1, "f" * 32 + ".0.0.shard")
    stats = run_pass(shards, index)
    assert {s for _, s in shards.deleted} == orphans
    assert shards.names() == {shard_file_name(s) for s in keep} | {"f" * 32 + ".0.0.shard"}
    assert stats == GcStats(
        listed=10, young=1, unreadable=1, checked=8, kept=4, deleted=4, freed_bytes=4000
    )


def test_grace_zero_collects_a_file_just_written() -> None:
    shards, index = FakeShards(), FakeIndex()
    shards.add(1, header("fresh", "v9"), mtime_ns=int(NOW_S * 1e9))
    assert run_pass(shards, index, grace_s=0).deleted == 1


def test_nothing_is_deleted_when_the_index_does_not_answer() -> None:
    shards, index = FakeShards(), FakeIndex()
    for version in ("v1", "v2", "v3"):
        shards.add(1, header("k" + version, version))
    index.down = True
    stats = run_pass(shards, index)
    assert shards.deleted == [] and len(shards.names()) == 3
    assert (stats.checked, stats.errors, stats.deleted) == (3, 3, 0)


def test_a_record_that_does_not_decode_keeps_the_file() -> None:
    shards, index = FakeShards(), FakeIndex()
    shard = shards.add(1, header("k", "v1"))
    index.data[manifest("k", "v1").index_key] = b"\xc0\x01garbage"
    stats = run_pass(shards, index)
    assert shards.deleted == [] and stats.errors == 1
    assert shard_file_name(shard) in shards.names()


def test_a_complete_landing_between_the_reads_does_not_cost_the_object() -> None:
    """The uploads are read before the manifest: a Complete (manifest in, upload out,
    one transaction) right after the first read is seen by the second. (Read the
    other way round, neither read would see the version.)"""
    shards, index = FakeShards(), FakeIndex()
    shards.add(1, header("mp", "v5", part=1))
    index.commit(upload("mp", "v5"))

    def complete() -> None:
        index.commit(manifest("mp", "v5", (1,)))
        del index.data[upload("mp", "v5").index_key]

    index.after_read = complete
    stats = run_pass(shards, index)
    assert shards.deleted == [] and stats.kept == 1


def test_a_failed_delete_is_counted_and_the_pass_goes_on() -> None:
    shards, index = FakeShards(), FakeIndex()
    shards.add(1, header("a", "v1"))
    shards.add(1, header("b", "v2"))
    shards.fail_delete = True
    stats = run_pass(shards, index)
    assert (stats.checked, stats.errors, stats.deleted) == (2, 2, 0)


def test_failed_devices_are_skipped_and_others_collected() -> None:
    shards, index = FakeShards(), FakeIndex()
    shards.add(1, header("a", "v1"))
    shards.add(2, header("b", "v2"))
    shards.failed.add(3)
    stats = run_pass(shards, index)
    assert sorted(d for d, _ in shards.deleted) == [1, 2] and stats.errors == 0


def test_pages_and_one_lookup_per_version() -> None:
    """Ten parts of one upload: five pages of two, one read of the index per page
    (the next file of the same key reuses what the first one read)."""
    shards, index = FakeShards(), FakeIndex()
    index.commit(upload("mp", "v5"))
    for number in range(1, 11):
        shards.add(1, header("mp", "v5", part=number))
    stats = run_pass(shards, index, page_files=2)
    assert shards.limits == [2] * 5
    assert (stats.listed, stats.kept, stats.deleted) == (10, 10, 0)
    assert index.reads == 2  # one scan of the uploads, one get of the manifest


def test_checks_are_paced_on_the_injected_clock() -> None:
    shards, index = FakeShards(), FakeIndex()
    for n in range(10):
        shards.add(1, header(f"k{n}", "v1"))
    t = Time()
    config = GcConfig(grace_s=3600, checks_per_s=5)
    stats = asyncio.run(collect_once(shards, index, clock=t.clock, sleep=t.sleep, config=config))
    assert stats.deleted == 10
    assert t.now_s - NOW_S == pytest.approx(9 / 5)  # the first check at once, then 0.2 s apart


def test_passes_do_not_overlap() -> None:
    shards, index = FakeShards(), FakeIndex()
    for n in range(4):
        shards.add(1, header(f"k{n}", "v1"))
    t = Time()
    collector = Collector(shards, index, GcConfig(checks_per_s=1e9), clock=t.clock, sleep=t.sleep)

    async def both() -> list[GcStats]:
        return list(await asyncio.gather(collector.collect_once(), collector.collect_once()))

    first, second = asyncio.run(both())
    assert (first.deleted, second.deleted, second.listed) == (4, 0, 0)


def test_run_collector_runs_a_pass_every_interval_until_cancelled() -> None:
    shards, index = FakeShards(), FakeIndex()
    shards.add(1, header("a", "v1"))
    passes = 0
    original = shards.device_infos

    def counting() -> list[DeviceInfo]:
        nonlocal passes
        passes += 1
        if passes == 2:
            raise RuntimeError("a bad pass")  # logged; the next one runs on time
        return original()

    shards.device_infos = counting  # type: ignore[method-assign]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 4:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    async def body() -> None:
        with pytest.raises(asyncio.CancelledError):
            await run_collector(
                shards, index, clock=lambda: NOW_S, sleep=sleep, config=GcConfig(interval_s=600)
            )

    asyncio.run(body())
    assert slept == [600, 600, 600, 600] and passes == 3
    assert shards.names() == set()
