"""Scrub: re-read every shard this node holds, verify it, and rebuild what is corrupt
(issue 6 §3; shared/DESIGN.md §8; docs/repair.md). Does I/O through the node's own
storage service (in process) and the repairer's listing and rebuild.

A pass (`Scrubber.scrub_once`) walks each local device's PG directories (those the
device is a member of in the current PG tables; the repairer removes the others'
files). Each shard file is read whole through `get_shard`, which checks every block's
stored CRC-32C on the device and again on arrival; a listing already refuses a file
whose header fails its CRC or whose size disagrees with its header (a truncated
file). A file that fails either way is **corrupt**: its part is found (from its
header, or, for a file whose header cannot be trusted, from the PG's other members,
whose files of the same part share the name's digest and part number), and if the
object index still references it, the repairer rebuilds the shard from k others
and writes it over the bad file (atomically: temporary file, fsync, rename).

Reads go through a token bucket (`bytes_per_s`; 0 = no limit). The node runs a pass
every `interval_s` in the background (`run`), and `atoll admin scrub --now` asks
every node for one at once (`repair.scrub`, an atoll.rpc method).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable

from atoll.erasure import StripeLayout
from atoll.gateway.errors import ServiceUnavailable
from atoll.gateway.gc import References
from atoll.gateway.repair import LocalDevices, PassStats, Repairer
from atoll.gateway.repair_core import PartRef, TokenBucket, part_of
from atoll.kv.errors import KvError
from atoll.meta.cluster_map import ClusterMap
from atoll.objects.errors import ObjectsError
from atoll.rpc import Chunk, Handler, RpcError
from atoll.storage.errors import ShardCorrupt, StorageError
from atoll.storage.messages import ListedShard, ReadCache, ShardInfo

log = logging.getLogger("atoll.gateway.scrub")

METHOD_SCRUB = "repair.scrub"
LIST_PAGE = 1000
_ERRORS = (StorageError, RpcError, OSError, ServiceUnavailable, KvError, ObjectsError)


@dataclasses.dataclass(frozen=True)
class ScrubConfig:
    bytes_per_s: int = 32 << 20
    """Shard bytes read per second by the background scrub; 0 = no limit."""
    interval_s: float = 86_400.0
    """Pause between background passes."""

    def __post_init__(self) -> None:
        if self.bytes_per_s < 0 or not self.interval_s > 0:
            raise ValueError(f"scrub: bad config {self}")


@dataclasses.dataclass
class ScrubStats:
    files: int = 0
    blocks_checked: int = 0
    bytes_checked: int = 0
    errors_found: int = 0
    repaired: int = 0
    unrepaired: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)

    ERRORS_LISTED_MAX = 20

    def note(self, what: str) -> None:
        if len(self.errors) < self.ERRORS_LISTED_MAX:
            self.errors.append(what)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()


@dataclasses.dataclass(frozen=True)
class _Bad:
    """A corrupt file found in one PG at one position: its part if its header could
    be read, else its file name."""

    position: int
    file_name: str
    part: PartRef | None
    why: str


class Scrubber:
    def __init__(
        self,
        repairer: Repairer,
        devices: LocalDevices,
        cluster_map: Callable[[], ClusterMap],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        config: ScrubConfig,
    ) -> None:
        self._repairer = repairer
        self._devices = devices
        self._map = cluster_map
        self._clock = clock
        self._sleep = sleep
        self.config = config
        self.last: ScrubStats | None = None

    def rpc_handlers(self) -> dict[str, Handler]:
        return {METHOD_SCRUB: self._scrub_now}

    async def _scrub_now(self, message: bytes, payload: bytes | memoryview) -> Chunk:
        """`repair.scrub`: one pass now, unthrottled; the reply is its stats as JSON."""
        stats = await self.scrub_once(0)
        return stats.to_json(), None

    async def run(self) -> None:
        while True:
            await self._sleep(self.config.interval_s)
            try:
                stats = await self.scrub_once(self.config.bytes_per_s)
            except _ERRORS as err:
                log.info("scrub: pass failed (will retry): %s", err)
                continue
            except Exception:  # a bug: reported; the next pass tries again
                log.exception("scrub: pass failed")
                continue
            log.info(
                "scrub: %d files, %d blocks checked, %d errors, %d repaired",
                stats.files,
                stats.blocks_checked,
                stats.errors_found,
                stats.repaired,
            )

    async def scrub_once(self, bytes_per_s: int) -> ScrubStats:
        """One pass over every local shard file of the PGs this node's devices are
        members of. Two passes may overlap (`--now` during a throttled background
        pass): both only read, and a shard both find corrupt is rebuilt twice, to the
        same bytes."""
        stats = ScrubStats()
        bucket = TokenBucket(bytes_per_s)
        m = self._map()
        for device_id in sorted(self._repairer.local_devices(m)):
            try:
                pgs = await self._devices.local_pgs(device_id)
            except _ERRORS as err:
                stats.note(f"device {device_id}: cannot list its PGs: {err}")
                continue
            for pool_id, pg in sorted(pgs):
                table = m.pg_tables.get(pool_id)
                if table is None or pg >= len(table.members):
                    continue
                members = table.members[pg]
                if device_id not in members:
                    continue  # a PG that moved away: the repairer's stale files
                position = members.index(device_id)
                bad = await self._check_pg(m, device_id, pool_id, pg, position, bucket, stats)
                if bad:
                    await self._repair(m, pool_id, pg, members, bad, stats)
        self.last = stats
        return stats

    async def _check_pg(
        self,
        m: ClusterMap,
        device_id: int,
        pool_id: int,
        pg: int,
        position: int,
        bucket: TokenBucket,
        stats: ScrubStats,
    ) -> list[_Bad]:
        bad: list[_Bad] = []
        for entry in await self._local_listing(m, device_id, pool_id, pg):
            stats.files += 1
            info = entry.info
            if info is None:
                stats.errors_found += 1
                if _index_of(entry.file_name) == position:
                    bad.append(_Bad(position, entry.file_name, None, entry.error))
                else:  # another position's file (the PG's positions moved): not ours to fix
                    stats.unrepaired += 1
                    stats.note(f"pg {pool_id}.{pg} file {entry.file_name}: {entry.error}")
                continue
            if info.shard.shard_index != position:
                continue  # a file of another position (the PG's positions moved)
            wait = bucket.delay(self._clock(), info.shard_bytes)
            if wait > 0:
                await self._sleep(wait)
            try:
                await self._read_whole(m, device_id, info)
            except ShardCorrupt as err:
                stats.errors_found += 1
                bad.append(_Bad(position, entry.file_name, part_of(info.shard), str(err)))
            except _ERRORS as err:  # unreadable (an I/O error): rebuilt if it can be
                stats.errors_found += 1
                bad.append(_Bad(position, entry.file_name, part_of(info.shard), repr(err)))
            layout = StripeLayout(info.k, info.m, info.block_size)
            stats.blocks_checked += layout.stripe_count(info.data_length)
            stats.bytes_checked += info.shard_bytes
        return bad

    async def _local_listing(
        self, m: ClusterMap, device_id: int, pool_id: int, pg: int
    ) -> list[ListedShard]:
        out: list[ListedShard] = []
        start_after = ""
        while True:
            page = await self._repairer.local.list_pg(
                device_id, pool_id, pg, epoch=m.epoch, start_after=start_after, limit=LIST_PAGE
            )
            out.extend(page.shards)
            if not page.next_start_after:
                return out
            start_after = page.next_start_after

    async def _read_whole(self, m: ClusterMap, device_id: int, info: ShardInfo) -> None:
        stream = self._repairer.local.get_shard(
            device_id, info.shard, epoch=m.epoch, cache=ReadCache.BYPASS
        )
        async with contextlib.aclosing(stream):
            async for _ in stream:
                pass

    async def _repair(
        self,
        m: ClusterMap,
        pool_id: int,
        pg: int,
        members: tuple[int, ...],
        bad: list[_Bad],
        stats: ScrubStats,
    ) -> None:
        listing = await self._repairer.list_pg(m, pool_id, pg, members)
        parts = listing.parts()
        by_prefix = {_prefix(info.file_name): part for part, info in parts.items()}
        references: dict[tuple[str, str], References] = {}
        repair_stats = PassStats(epoch=m.epoch)
        for item in bad:
            part = item.part or by_prefix.get(_prefix(item.file_name))
            where = f"pg {pool_id}.{pg} position {item.position} file {item.file_name}"
            if part is None or part not in parts:
                stats.unrepaired += 1
                stats.note(f"{where}: {item.why}; no other member holds its part")
                continue
            try:
                if not await self._repairer.referenced(part, references):
                    stats.note(f"{where}: {item.why}; its object is gone (left to gc)")
                    continue
                durable = self._repairer.durable_set(part, references)
                await self._repairer.rebuild(
                    m, listing, part, item.position, repair_stats, trusted=durable
                )
            except _ERRORS as err:
                stats.unrepaired += 1
                stats.note(f"{where}: {item.why}; not rebuilt: {err}")
                continue
            stats.repaired += 1
            stats.note(f"{where}: {item.why}; rebuilt")
            log.warning("scrub: %s: %s; rebuilt", where, item.why)


def _index_of(file_name: str) -> int | None:
    """The shard index in a shard file name (`digest.part.shard.shard`), if any."""
    pieces = file_name.split(".")
    return int(pieces[2]) if len(pieces) == 4 and pieces[2].isdigit() else None


def _prefix(file_name: str) -> str:
    """`digest.part.` of a shard file name (docs/formats/storage.md §2): the same for
    every shard of one part."""
    digest, _, rest = file_name.partition(".")
    part, _, _ = rest.partition(".")
    return f"{digest}.{part}."


__all__ = ["METHOD_SCRUB", "ScrubConfig", "ScrubStats", "Scrubber"]
