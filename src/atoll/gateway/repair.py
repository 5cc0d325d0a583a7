"""The repairer: every storage node makes the shards its devices should hold in the
PG tables actually be there (issue 6 §1; shared/DESIGN.md §8; docs/repair.md). Does
I/O: listings and shard streams through `StorageClient` (this node's own service in
process), the object index through `KvRpcClient`.

A **pass** (`Repairer.pass_once`) takes the node's current map and:

1. Reads the repair records (docs/formats/objects.md §4.5) of every pool: shards that
   missed a write while their node was down or slow.
2. Picks the PGs to check: those where a device of this node is a member and that
   were not yet verified with their current members (a new member after a node went
   out or came in, or every PG after this process started), and those with a repair
   record naming a position held here.
3. Lists each such PG on every member (`PgListing`): which object parts each position
   holds, header and size checked by the storage service.
4. Orders them most-endangered first: fewest shards of their worst part still held
   (`endangerment`).
5. For each PG (at most `pgs_max` at once), and each part missing at a local
   position, or named there by a repair record, and still referenced by the index
   (`gc.is_referenced`): rebuilds the position's shard a window at a time from k
   other shards, one stream per other node: a node holding several sends their partial
   sum (`storage.combine_shards`), the others' shards come as they are, and a
   worker thread adds them up by their decode coefficients (`sum_partials`; if a
   partial-sum read fails, whole shards through `DataPath.fetch` and
   `rebuild_blocks`), writes it
   (`put_shard`: CRC-32C checked block by block, fsynced before the reply), and
   verifies it by reading it back (every block's stored CRC-32C checked). The bytes
   rebuilt go through a token bucket (`bytes_per_s`).
6. After a PG's rebuilds all succeed: its members are remembered as verified, the
   local bits of its repair records cleared (a record with no bit left is deleted),
   and a part rebuilt from a record gets the position back in its manifest's
   durable set.
7. Removes stale shard files: on a PG directory of a device that is no longer a
   member of that PG, each file whose shard the current member of its position holds
   (listed valid) is deleted.

The pass ends with a report (`report`, sent in heartbeats): the map epoch it checked,
the PGs it could not complete, the bytes still to rebuild and the rate. The meta
leader judges PG health from the reports (`atoll.meta.health`).

The pure core is `repair_core`: `PgListing` (what each position holds, what is
missing, how endangered), `select_work`, `plan_reads` and `sum_partials` (the
partial-sum rebuild), `TokenBucket`, `RateMeter`. Clocks and sleep are injected
(shared/STYLE.md §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from atoll.base import workers
from atoll.base.tasks import gather_settled
from atoll.erasure import StripeLayout
from atoll.erasure.stripe import ReadableBuffer
from atoll.gateway.datapath import (
    SHARD_TIMEOUT_S,
    DataPath,
    PartTarget,
    collect_blocks,
    read_windows,
    rebuild_blocks,
    window_blocks,
)
from atoll.gateway.errors import ServiceUnavailable
from atoll.gateway.gc import References, is_referenced, read_references
from atoll.gateway.repair_core import (
    Group,
    PartRef,
    PgListing,
    RateMeter,
    Read,
    Record,
    TokenBucket,
    forced_positions,
    part_of,
    plan_reads,
    select_work,
    sum_partials,
)
from atoll.kv.errors import KvError
from atoll.meta.cluster_map import NODE_DRAINING, NODE_UP, ClusterMap, in_service
from atoll.objects.errors import ObjectsError
from atoll.objects.index import object_key, repair_range
from atoll.objects.manifest import (
    Layout,
    RepairRecord,
    decode_manifest,
    decode_repair_record,
    encode_record,
)
from atoll.proto import meta_pb2
from atoll.rpc import RpcCaller, RpcError, RpcPool
from atoll.storage import StorageClient
from atoll.storage.errors import ProtocolError, StaleEpoch, StorageError
from atoll.storage.messages import DeviceInfo, ReadCache, ShardInfo

log = logging.getLogger("atoll.gateway.repair")

RECORDS_PER_PASS_MAX = 100_000
"""Repair records read per pass (a backlog past this is read by later passes)."""
RECORD_PAGE = 1000
LIST_PAGE = 1000
LIST_BATCH_PGS = 64
"""PGs a pass lists together: one `storage.list_pgs` (a page at a time) per device
that is a member of any of them, rather than one `storage.list_pg` per PG and member
(a pass lists every PG it checks on every member)."""
TABLES_WAIT_S = 3.0
"""How long a pass waits for the PG tables of a map that calls for new ones (the meta
leader commits them within a second of the change that calls for them; a leader that
cannot must not stop repair)."""
TABLES_POLL_S = 0.1
_ERRORS = (StorageError, RpcError, OSError, ServiceUnavailable, KvError, ObjectsError)


@dataclasses.dataclass(frozen=True)
class RepairConfig:
    bytes_per_s: int = 32 << 20
    """Rebuilt shard bytes per second on this node; 0 = no limit."""
    pgs_max: int = 2
    """PGs rebuilt at once on this node."""
    shards_max: int = 1
    """Shards rebuilt at once on this node (over all its PGs): each is a pipeline of
    reads from k nodes, a decode and a local write, mostly waiting on the network."""
    interval_s: float = 5.0
    """Pause between passes (a map change ends it early)."""
    list_concurrency: int = 2
    """Batches of PGs (`LIST_BATCH_PGS` each) listed at once."""
    reverify_after_s: float = 3600.0
    """A PG verified this long ago is listed and checked again (a shard file lost
    without an error: a disk replaced under the node, files removed by hand)."""

    def __post_init__(self) -> None:
        if self.bytes_per_s < 0 or not 1 <= self.pgs_max <= 64 or not self.interval_s > 0:
            raise ValueError(f"repair: bad config {self}")
        if not 1 <= self.shards_max <= 64:
            raise ValueError(f"repair: bad config {self}")
        if not 1 <= self.list_concurrency <= 64:
            raise ValueError(f"repair: list_concurrency {self.list_concurrency} not in 1..64")


# -- the shell -------------------------------------------------------------------------------


class LocalDevices(Protocol):
    """What the repairer needs of the node's `StorageService` beyond its rpc methods."""

    def device_infos(self) -> list[DeviceInfo]: ...

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]: ...


class IndexStore(Protocol):
    """What the repairer needs of `KvRpcClient`."""

    async def get(self, key: bytes, serializable: bool = False) -> bytes | None: ...

    async def scan(
        self, start: bytes, end: bytes = b"", limit: int = 1000, *, reverse: bool = False
    ) -> tuple[list[tuple[bytes, bytes]], bool]: ...

    async def cas(self, key: bytes, expected: bytes | None, new: bytes | None) -> bool: ...


@dataclasses.dataclass
class PassStats:
    epoch: int = 0
    pgs_checked: int = 0
    pgs_verified: int = 0
    shards_rebuilt: int = 0
    bytes_rebuilt: int = 0
    failures: int = 0
    stale_removed: int = 0
    incomplete: set[tuple[int, int]] = dataclasses.field(default_factory=set)


class NodeNotUp(ServiceUnavailable):
    """The map says the device's node is not up: it is not asked."""


_DONE = 1 << 30  # a queue entry after every PG's (endangerment is at most k + m)
_Plan = tuple[int, int, int, "PgListing", list[int], list[tuple[PartRef, int]]]
# endangerment, pool id, pg, listing, local positions, (part, position) to rebuild


class Repairer:
    def __init__(
        self,
        node_id: int,
        devices: LocalDevices,
        local: RpcCaller,
        pool: RpcPool,
        kv: IndexStore,
        cluster_map: Callable[[], ClusterMap],
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        config: RepairConfig,
        on_pass: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_pass` is called after each pass that listed a PG, failed or removed a
        stale file (the node agent sends its heartbeat, which carries `report()`)."""
        self.node_id = node_id
        self._on_pass = on_pass
        self._devices = devices
        self.local = StorageClient(local)
        self._pool = pool
        self._kv = kv
        self._map = cluster_map
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self.config = config
        self._data = DataPath(pool, cluster_map)
        self._data.use_local(node_id, local)
        self._bucket = TokenBucket(config.bytes_per_s)
        self._shard_slots = asyncio.Semaphore(config.shards_max)
        self._meter = RateMeter()
        # (pool, pg) -> the epoch of the PG table it was verified under, and when
        # (clock seconds). The table's epoch, not its members: a PG whose members
        # change and later come back to the same devices (a table recomputed over the
        # same devices again, a node out and back in) may have taken writes elsewhere
        # meanwhile, so a verification under an earlier table says nothing now.
        self._verified: dict[tuple[int, int], tuple[int, float]] = {}
        self.checked_epoch = 0
        self.incomplete: frozenset[tuple[int, int]] = frozenset()
        # PGs the pass under way found something to rebuild in, until it is rebuilt:
        # reported as incomplete at once (not only when the pass ends).
        self._in_progress: set[tuple[int, int]] = set()
        self.bytes_to_repair = 0
        self.repaired_bytes = 0
        self.repaired_shards = 0
        self.stale_removed = 0
        self.last_pass_ms = 0

    def report(self) -> meta_pb2.RepairReport:
        return meta_pb2.RepairReport(
            checked_epoch=self.checked_epoch,
            incomplete=[
                meta_pb2.PgRef(pool_id=p, pg=g)
                for p, g in sorted(self.incomplete | self._in_progress)
            ],
            bytes_to_repair=self.bytes_to_repair,
            repaired_bytes=self.repaired_bytes,
            repaired_shards=self.repaired_shards,
            repair_bytes_per_s=self._meter.rate(self._clock()),
            stale_removed=self.stale_removed,
            last_pass_ms=self.last_pass_ms,
        )

    async def run(self) -> None:
        """A pass, then a pause of `interval_s` (shorter if the map changes), forever."""
        while True:
            await self._tables_placed()
            started = self._clock()
            # The map the pass works on: if it changes while the pass runs (an out
            # node's PG table follows the out mark within a second), the next pass
            # starts as soon as this one ends, not after interval_s.
            epoch = self._map().epoch
            try:
                stats = await self.pass_once()
                # Every pass that listed a PG (after a map change, or an hourly
                # re-verification) is worth a line: it may have verified PGs.
                if stats.pgs_checked or stats.failures or stats.stale_removed:
                    log.info(
                        "repair: pass at epoch %d: %d PGs checked (%d verified), %d shards"
                        " (%d bytes) rebuilt, %d failed, %d stale removed, %d PGs incomplete",
                        stats.epoch,
                        stats.pgs_checked,
                        stats.pgs_verified,
                        stats.shards_rebuilt,
                        stats.bytes_rebuilt,
                        stats.failures,
                        stats.stale_removed,
                        len(stats.incomplete),
                    )
                    self._on_pass()
            except _ERRORS as err:
                log.info("repair: pass failed (will retry): %s", err)
            except Exception:  # a bug: reported, and the next pass tries again
                log.exception("repair: pass failed")
                self.checked_epoch = 0  # verified nothing
            self.last_pass_ms = int((self._clock() - started) * 1000)
            waited = 0.0
            while waited < self.config.interval_s and self._map().epoch == epoch:
                await self._sleep(0.2)
                waited += 0.2

    async def _tables_placed(self) -> None:
        """Wait (at most `TABLES_WAIT_S`) while the map has pools whose PG table the
        meta leader is about to replace (`ClusterMap.stale_pools`: an out node's, a
        new node's): a pass started now would list and rebuild for positions that
        move within the second, and the pass after it would start only once it ends."""
        for _ in range(round(TABLES_WAIT_S / TABLES_POLL_S)):
            if not self._map().stale_pools():
                return
            await self._sleep(TABLES_POLL_S)

    # -- one pass -------------------------------------------------------------------------

    def local_devices(self, m: ClusterMap) -> set[int]:
        """This node's devices that hold shards now: served, not failed, in service."""
        usable = {d.device_id for d in self._devices.device_infos() if not d.failed}
        return {d.id for d in m.devices_of(self.node_id) if d.id in usable and in_service(m, d)}

    async def pass_once(self) -> PassStats:
        m = self._map()
        stats = PassStats(epoch=m.epoch)
        node = m.nodes.get(self.node_id)
        if node is not None and node.state == NODE_DRAINING:
            # Its devices hold no PG: only its stale copies are to go (each once the
            # PG's new member at its position holds it).
            usable = {d.device_id for d in self._devices.device_infos() if not d.failed}
            await self._remove_stale(m, usable & {d.id for d in m.devices_of(self.node_id)}, stats)
            self.checked_epoch = m.epoch
            return stats
        if node is None or node.state != NODE_UP:
            self._verified.clear()  # whatever it held may have moved meanwhile
            return stats
        local = self.local_devices(m)
        now = self._clock()
        records, records_complete = await self._records(m)
        work, held_here, named = select_work(
            m, local, self._verified, records, now, self.config.reverify_after_s
        )
        # A PG this node holds no position of is forgotten: its copies here are stale
        # (and removed); should the PG come back with the very same members, it is
        # checked again, not taken as verified.
        self._verified = {pg: v for pg, v in self._verified.items() if pg in held_here}
        # Listing and rebuilding overlap: each PG goes into a priority queue as soon as
        # it is listed, and `pgs_max` workers take the most endangered one listed so far
        # (so the order is the global one when listing is quicker than rebuilding, as
        # it is, and no PG waits for every other to be listed).
        semaphore = asyncio.Semaphore(self.config.list_concurrency)
        queue: asyncio.PriorityQueue[tuple[int, int, int]] = asyncio.PriorityQueue()
        plans: dict[tuple[int, int], _Plan] = {}
        incomplete: set[tuple[int, int]] = set()
        self._in_progress = {(pool_id, pg) for pool_id, pg, _, _ in work if (pool_id, pg) in named}
        self.bytes_to_repair = 0
        stats.pgs_checked = len(work)

        async def list_batch(batch: list[tuple[int, int, tuple[int, ...], list[int]]]) -> None:
            async with semaphore:
                listings = await self.list_pgs(m, [item[:3] for item in batch])
            for (pool_id, pg, _, positions), listing in zip(batch, listings, strict=True):
                forced = forced_positions(records.get((pool_id, pg), ()), positions)
                missing = listing.missing(positions, forced)
                parts = listing.parts()
                self.bytes_to_repair += sum(parts[p].shard_bytes for p, _ in missing if p in parts)
                if missing:
                    self._in_progress.add((pool_id, pg))
                endangerment = listing.endangerment()
                plans[(pool_id, pg)] = (endangerment, pool_id, pg, listing, positions, missing)
                queue.put_nowait((endangerment, pool_id, pg))

        async def lister() -> None:
            batches = [work[i : i + LIST_BATCH_PGS] for i in range(0, len(work), LIST_BATCH_PGS)]
            try:
                await asyncio.gather(*(list_batch(batch) for batch in batches))
            finally:
                for _ in range(self.config.pgs_max):
                    queue.put_nowait((_DONE, -1, -1))  # after every real entry

        async def repair(plan: _Plan) -> None:
            _, pool_id, pg, listing, positions, missing = plan
            ok = await self._repair_pg(
                m, listing, missing, records.get((pool_id, pg), ()), positions, stats
            )
            self._in_progress.discard((pool_id, pg))
            if ok and listing.complete:
                self._verified[(pool_id, pg)] = (m.pg_tables[pool_id].epoch, now)
                stats.pgs_verified += 1
            else:
                incomplete.add((pool_id, pg))

        async def worker() -> None:
            while True:
                _, pool_id, pg = await queue.get()
                if pool_id < 0:
                    return
                await repair(plans.pop((pool_id, pg)))

        await asyncio.gather(lister(), *(worker() for _ in range(self.config.pgs_max)))
        stats.incomplete = incomplete
        self.incomplete = frozenset(incomplete)
        self._in_progress.clear()
        self.bytes_to_repair = 0 if not incomplete else self.bytes_to_repair
        # Each stale file goes only once its position's current member holds it.
        await self._remove_stale(m, local, stats)
        if records_complete:
            self.checked_epoch = m.epoch
        else:
            log.warning("repair: over %d repair records: the pass saw part", RECORDS_PER_PASS_MAX)
        return stats

    async def _records(self, m: ClusterMap) -> tuple[dict[tuple[int, int], list[Record]], bool]:
        """The repair records of every pool by PG, and whether that is all of them
        (at most `RECORDS_PER_PASS_MAX` are read; a pass that did not see them all
        verifies nothing)."""
        out: dict[tuple[int, int], list[Record]] = {}
        count = 0
        complete = True
        for pool_id in sorted(m.pools):
            start, end = repair_range(pool_id)
            while True:
                if count >= RECORDS_PER_PASS_MAX:
                    complete = False
                    break
                entries, more = await self._kv.scan(start, end, RECORD_PAGE)
                for key, value in entries:
                    try:
                        record = decode_repair_record(value)
                    except ObjectsError as err:
                        log.warning("repair: undecodable repair record %r: %s", key, err)
                        continue
                    out.setdefault((record.pool_id, record.pg), []).append((key, value, record))
                count += len(entries)
                if not more or not entries:
                    break
                start = entries[-1][0] + b"\x00"
        return out, complete

    async def list_pg(
        self, m: ClusterMap, pool_id: int, pg: int, members: tuple[int, ...]
    ) -> PgListing:
        return (await self.list_pgs(m, [(pool_id, pg, members)]))[0]

    async def list_pgs(
        self, m: ClusterMap, pgs: Sequence[tuple[int, int, tuple[int, ...]]]
    ) -> list[PgListing]:
        """The listing of each PG of `pgs` ((pool id, pg, members) each) on its
        members: each device is listed once (`storage.list_pgs`) for all the PGs
        among `pgs` it is a member of."""
        places: dict[int, list[tuple[int, int]]] = {}  # device -> (index in pgs, position)
        for n, (_, _, members) in enumerate(pgs):
            for position, device_id in enumerate(members):
                places.setdefault(device_id, []).append((n, position))
        held: list[list[dict[PartRef, ShardInfo] | None]] = [[None] * len(p[2]) for p in pgs]
        unlisted: list[set[int]] = [set() for _ in pgs]

        async def one(device_id: int, where: list[tuple[int, int]]) -> None:
            try:
                found = await self._list_device(m, device_id, [pgs[n][:2] for n, _ in where])
            except NodeNotUp:
                return  # a member known to be down: its shards are counted out
            except _ERRORS as err:
                # A refused epoch (the other node's map is newer) is routine while a
                # table changes: the next pass lists with the newer map.
                level = logging.DEBUG if isinstance(err, StaleEpoch) else logging.INFO
                log.log(
                    level, "repair: cannot list %d PGs on device %d: %s", len(where), device_id, err
                )
                for n, position in where:
                    unlisted[n].add(position)
                return
            for (n, position), parts in zip(where, found, strict=True):
                # A file under position i's device holding another shard index (a PG
                # whose positions moved) is not that position's shard.
                held[n][position] = {
                    part: info for part, info in parts.items() if info.shard.shard_index == position
                }

        await asyncio.gather(*(one(device_id, where) for device_id, where in places.items()))
        return [
            PgListing(
                pool_id,
                pg,
                m.pools[pool_id].k,
                m.pools[pool_id].m,
                members,
                held[n],
                frozenset(unlisted[n]),
            )
            for n, (pool_id, pg, members) in enumerate(pgs)
        ]

    async def _list_device(
        self, m: ClusterMap, device_id: int, pgs: list[tuple[int, int]]
    ) -> list[dict[PartRef, ShardInfo]]:
        """What the device holds of each PG of `pgs`, a page at a time."""
        client, epoch = await self._client(m, device_id)
        out: list[dict[PartRef, ShardInfo]] = [{} for _ in pgs]
        index, start_after = 0, ""
        while index < len(pgs):
            page = await client.list_pgs(
                device_id,
                pgs,
                epoch=epoch,
                start_index=index,
                start_after=start_after,
                limit=LIST_PAGE,
            )
            for n, entries in page.pgs:
                if not index <= n < len(pgs):
                    raise ProtocolError(
                        f"list_pgs: a page for PG {n} of {len(pgs)}", device_id=device_id
                    )
                for entry in entries:
                    if entry.info is not None:
                        out[n][part_of(entry.info.shard)] = entry.info
            if (page.next_index, page.next_start_after) <= (index, start_after):
                raise ProtocolError(
                    f"list_pgs: a page that does not move on from {(index, start_after)}",
                    device_id=device_id,
                )
            index, start_after = page.next_index, page.next_start_after
        return out

    async def _client(self, m: ClusterMap, device_id: int) -> tuple[StorageClient, int]:
        device = m.devices.get(device_id)
        node = m.nodes.get(device.node_id) if device is not None else None
        if device is None or node is None or node.state not in (NODE_UP, NODE_DRAINING):
            raise NodeNotUp(f"device {device_id} is not on a node that is up")
        if node.id == self.node_id:
            return self.local, m.epoch
        return StorageClient(await self._pool.get(node.rpc)), m.epoch

    async def _repair_pg(
        self,
        m: ClusterMap,
        listing: PgListing,
        missing: list[tuple[PartRef, int]],
        records: Iterable[Record],
        positions: list[int],
        stats: PassStats,
    ) -> bool:
        """Rebuild what the PG lacks at this node's positions; then clear its repair
        records' local bits. True if everything it should hold is there."""
        references: dict[tuple[str, str], References] = {}
        dead: set[PartRef] = set()
        rebuilt: set[tuple[PartRef, int]] = set()
        # Positions a repair record names for a part hold no trustworthy copy of it
        # (at most an older upload of the same part under the same name).
        missed: dict[PartRef, set[int]] = {}
        for _, _, r in records:
            part_missed = missed.setdefault((r.bucket, r.key, r.version_id, r.part_number), set())
            part_missed.update(r.missed)
        failed = False

        async def one(part: PartRef, position: int) -> None:
            nonlocal failed

            def what() -> str:
                return (
                    f"{part[0]}/{part[1]} part {part[3]} shard {position} of pg"
                    f" {listing.pool_id}.{listing.pg}"
                )

            async with self._shard_slots:
                try:
                    if not await self.referenced(part, references):
                        dead.add(part)
                        # Rare (garbage the collector has not reached yet), and the
                        # one way a listed gap is left as it is: worth a line.
                        log.info("repair: %s not rebuilt: no object references it", what())
                        return
                    durable = self.durable_set(part, references)
                    await self.rebuild(
                        m,
                        listing,
                        part,
                        position,
                        stats,
                        trusted=durable,
                        distrust=missed.get(part),
                    )
                    rebuilt.add((part, position))
                except _ERRORS as err:
                    failed = True
                    stats.failures += 1
                    log.warning("repair: %s not rebuilt: %s", what(), err)

        await asyncio.gather(*(one(part, position) for part, position in missing))
        ok = not failed
        for key, value, record in records:
            part = (record.bucket, record.key, record.version_id, record.part_number)
            try:
                await self._settle_record(key, value, record, part, positions, dead, rebuilt)
            except _ERRORS as err:
                ok = False
                log.info("repair: record of %s not settled: %s", part, err)
        return ok

    async def referenced(self, part: PartRef, cache: dict[tuple[str, str], References]) -> bool:
        """Whether the index references the part (its key's references read once
        per PG repair, into `cache`)."""
        refs = cache.get(part[:2])
        if refs is None:
            refs = cache[part[:2]] = await read_references(
                self._kv, part[0], part[1], self._wall_clock()
            )
        return is_referenced(part, refs.manifest, refs.uploads)

    @staticmethod
    def durable_set(
        part: PartRef, cache: Mapping[tuple[str, str], References]
    ) -> frozenset[int] | None:
        """The shard indexes the manifest lists as durable for the part (read by
        `referenced` into `cache`), or None when no manifest lists it (a part of an
        upload in progress)."""
        refs = cache.get(part[:2])
        manifest = refs.manifest if refs is not None else None
        if manifest is None or manifest.version_id != part[2] or manifest.layout is None:
            return None
        for p in manifest.layout.parts:
            if p.number == part[3]:
                return frozenset(p.durable)
        return None

    async def rebuild(
        self,
        m: ClusterMap,
        listing: PgListing,
        part: PartRef,
        position: int,
        stats: PassStats,
        *,
        trusted: frozenset[int] | None = None,
        distrust: set[int] | None = None,
    ) -> None:
        """Rebuild shard `position` of `part` from k other positions' shards, write it
        to the position's (local) device, read it back verified. Sources are the
        positions that list the part, but only those in `trusted` (the manifest's
        durable set) if given, and none in `distrust` (named by a repair record)."""

        def usable(index: int) -> bool:
            if index == position or index in (distrust or ()):
                return False
            return trusted is None or index in trusted

        sources = [i for i in listing.holders(part) if usable(i)]
        if not sources:
            raise ServiceUnavailable(f"{part}: no trusted member holds a shard of it")
        held = listing.held[sources[0]]
        assert held is not None  # a holder was listed
        info = held[part]
        devices = list(listing.members)
        if len(sources) < listing.k:
            # Too few current members hold it (positions that moved away from live
            # devices, a drain): look for the shards on former holders.
            former = await self._former_holders(m, listing)
            for index, device in sorted(former.get(part, {}).items()):
                if usable(index) and index not in sources:
                    devices[index] = device
                    sources.append(index)
        if len(sources) < listing.k:
            raise ServiceUnavailable(
                f"{part}: {len(sources)} shards held, {listing.k} needed to rebuild"
            )
        bucket, key, version_id, part_number = part
        target = PartTarget(
            pool_id=listing.pool_id,
            k=listing.k,
            m=listing.m,
            pg=listing.pg,
            members=tuple(devices),
            epoch=m.epoch,
            bucket=bucket,
            key=key,
            version_id=version_id,
            part_number=part_number,
            block_size=info.block_size,
        )
        layout = StripeLayout(listing.k, listing.m, info.block_size)
        size = info.data_length
        device_id = listing.members[position]

        reads = self._combination(m, target, sources, position)

        async def build(window: range) -> list[ReadableBuffer]:
            nonlocal reads
            if reads is not None:
                try:
                    partials = await self._partials(
                        m,
                        reads,
                        window.start * layout.full_shard_bytes,
                        window_blocks(layout, size, window),
                    )
                    coefficients = bytes(c for c, _ in reads)
                    return await workers.shared().run(sum_partials, coefficients, partials)
                except _ERRORS as err:
                    log.warning(
                        "repair: %s: pre-combined read failed (%s): reading whole shards",
                        target.shard(position),
                        err,
                    )
                    reads = None
            shards = await self._data.fetch(
                target, size, window, sources, follow_map=False, prefer_local=True
            )
            rebuilt = await workers.shared().run(
                rebuild_blocks, layout, size, window, shards, position
            )
            return list(rebuilt)

        async def blocks() -> AsyncGenerator[ReadableBuffer, None]:
            # The next window is fetched and rebuilt while this one is written.
            windows = read_windows(target, range(layout.stripe_count(size)))
            pending = asyncio.create_task(build(windows[0])) if windows else None
            try:
                for n in range(len(windows)):
                    assert pending is not None
                    built = await pending
                    pending = (
                        asyncio.create_task(build(windows[n + 1])) if n + 1 < len(windows) else None
                    )
                    wait = self._bucket.delay(self._clock(), sum(len(b) for b in built))
                    if wait > 0:
                        await self._sleep(wait)
                    for block in built:
                        yield block
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending

        shard = target.shard(position)
        stream = blocks()
        try:
            result = await self.local.put_shard(
                device_id, shard, layout, stream, epoch=m.epoch, data_length=size
            )
        finally:
            await stream.aclose()
        read = 0
        reading = self.local.get_shard(device_id, shard, epoch=m.epoch, cache=ReadCache.DROP)
        async with contextlib.aclosing(reading):
            async for piece in reading:
                read += len(piece)
        if read != result.info.shard_bytes:
            raise StorageError(f"{shard}: read back {read} of {result.info.shard_bytes} bytes")
        stats.shards_rebuilt += 1
        stats.bytes_rebuilt += read
        self.repaired_shards += 1
        self.repaired_bytes += read
        self._meter.add(self._clock(), read)
        self.bytes_to_repair = max(0, self.bytes_to_repair - read)

    def _combination(
        self, m: ClusterMap, target: PartTarget, sources: Sequence[int], position: int
    ) -> list[Read] | None:
        """`plan_reads` for the rebuild of shard `position` of `target` by this node,
        with the devices the map says can serve."""
        node_of = {
            device.id: device.node_id
            for device in (m.devices.get(d) for d in target.members)
            if device is not None and self._data.readable(device.id)
        }
        return plan_reads(
            target.members,
            sources,
            position,
            target.k,
            target.m,
            node_of,
            self.node_id,
            target.shard,
        )

    async def _partials(
        self, m: ClusterMap, reads: list[Read], offset: int, sizes: list[int]
    ) -> list[list[memoryview]]:
        """Each read's blocks of `sizes` from shard offset `offset`: a shard as it is,
        or a combination of several."""

        async def one(group: Group) -> list[memoryview]:
            device_id, shard, _ = group[0]
            caller, epoch = await self._client(m, device_id)
            # A shard stream's wait, as the whole-shard reads of `DataPath` have it: a
            # node that hangs sends the rebuild to its fallback in seconds.
            client = StorageClient(caller.rpc, timeout_s=SHARD_TIMEOUT_S)
            length = sum(sizes)
            if len(group) == 1:
                stream = client.get_shard(
                    device_id, shard, epoch=epoch, offset=offset, length=length
                )
            else:
                stream = client.combine_shards(group, epoch=epoch, offset=offset, length=length)
            return await collect_blocks(stream, sizes)

        return await gather_settled(*(one(group) for _, group in reads))

    async def _former_holders(
        self, m: ClusterMap, listing: PgListing
    ) -> dict[PartRef, dict[int, int]]:
        """For each part of the PG, the devices outside its members that hold a shard
        of it (shard index -> device): every readable device of the cluster is listed
        once per PG and pass (kept in `listing.former`)."""
        if listing.former is not None:
            return listing.former
        found: dict[PartRef, dict[int, int]] = {}
        others = [d for d in sorted(m.devices) if d not in listing.members]

        async def one(device_id: int) -> None:
            try:
                pg = (listing.pool_id, listing.pg)
                held = (await self._list_device(m, device_id, [pg]))[0]
            except _ERRORS:
                return
            for part, info in held.items():
                found.setdefault(part, {}).setdefault(info.shard.shard_index, device_id)

        await asyncio.gather(*(one(d) for d in others))
        listing.former = found
        return found

    async def _settle_record(
        self,
        key: bytes,
        value: bytes,
        record: RepairRecord,
        part: PartRef,
        positions: list[int],
        dead: set[PartRef],
        rebuilt: set[tuple[PartRef, int]],
    ) -> None:
        """Clear the record's bits this pass took care of: all of them if the part is
        no longer referenced, else the local positions rebuilt (each then added back
        to the manifest's durable set)."""
        if part in dead:
            await self._kv.cas(key, value, None)
            return
        done = [i for i in record.missed if i in positions and (part, i) in rebuilt]
        if not done:
            return
        await self._mark_durable(record, done)
        left = tuple(i for i in record.missed if i not in done)
        new = encode_record(dataclasses.replace(record, missed=left)) if left else None
        await self._kv.cas(key, value, new)

    async def _mark_durable(self, record: RepairRecord, positions: list[int]) -> None:
        """Add rebuilt positions to the durable set of the manifest's part, if the
        manifest is still of the record's version (reads use only durable shards)."""
        mkey = object_key(record.bucket, record.key)
        for _ in range(3):
            value = await self._kv.get(mkey)
            if value is None:
                return
            manifest = decode_manifest(value)
            layout = manifest.layout
            if manifest.version_id != record.version_id or layout is None:
                return
            parts = [
                dataclasses.replace(p, durable=tuple(sorted({*p.durable, *positions})))
                if p.number == record.part_number
                else p
                for p in layout.parts
            ]
            new = dataclasses.replace(
                manifest, layout=Layout(layout.pool_id, layout.k, layout.m, parts)
            )
            if await self._kv.cas(mkey, value, encode_record(new)):
                return
        raise ServiceUnavailable(f"{mkey!r}: the manifest kept changing; durable set not updated")

    async def _remove_stale(self, m: ClusterMap, local: set[int], stats: PassStats) -> None:
        """Shard files of PGs that moved off a local device, once the current member
        of each file's position holds that shard."""
        for device_id in sorted(local):
            try:
                pgs = await self._devices.local_pgs(device_id)
            except _ERRORS as err:
                log.info("repair: cannot list PGs of device %d: %s", device_id, err)
                continue
            for pool_id, pg in pgs:
                table = m.pg_tables.get(pool_id)
                if table is None or pg >= len(table.members) or device_id in table.members[pg]:
                    continue
                try:
                    await self._remove_stale_pg(m, device_id, pool_id, pg, table.members[pg], stats)
                except _ERRORS as err:
                    log.info(
                        "repair: stale pg %d.%d on device %d kept: %s", pool_id, pg, device_id, err
                    )

    async def _remove_stale_pg(
        self,
        m: ClusterMap,
        device_id: int,
        pool_id: int,
        pg: int,
        members: tuple[int, ...],
        stats: PassStats,
    ) -> None:
        mine = (await self._list_device(m, device_id, [(pool_id, pg)]))[0]
        if not mine:
            return
        theirs: dict[int, dict[PartRef, ShardInfo]] = {}
        for part, info in mine.items():
            index = info.shard.shard_index
            if index >= len(members):
                continue
            if index not in theirs:
                held = (await self._list_device(m, members[index], [(pool_id, pg)]))[0]
                theirs[index] = {p: i for p, i in held.items() if i.shard.shard_index == index}
            if part in theirs[index]:
                await self.local.delete(device_id, info.shard, epoch=m.epoch)
                stats.stale_removed += 1
                self.stale_removed += 1


__all__ = [
    "IndexStore",
    "LocalDevices",
    "PassStats",
    "RepairConfig",
    "Repairer",
]
