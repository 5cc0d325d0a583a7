"""The repairer's pure core (`atoll.gateway.repair`): what a PG lacks at a position,
how endangered it is, which PGs a pass lists, and the rate limiter and meter; and
when the pass loop starts its next pass."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable

import pytest

from atoll.erasure import StripeCodec, StripeLayout, combine
from atoll.gateway.repair import TABLES_POLL_S, TABLES_WAIT_S, RepairConfig, Repairer
from atoll.gateway.repair_core import (
    PartRef,
    PgListing,
    RateMeter,
    TokenBucket,
    plan_reads,
    select_work,
    sum_partials,
)
from atoll.meta.cluster_map import (
    DEVICE_IN,
    NODE_DOWN,
    NODE_UP,
    ClusterMap,
    DeviceRecord,
    NodeRecord,
    PgTable,
    PoolRecord,
    placement_digest,
)
from atoll.objects.manifest import RepairRecord
from atoll.rpc import LocalClient, RpcPool
from atoll.storage.layout import ShardId
from atoll.storage.messages import DeviceInfo, ShardInfo
from shard_helpers import NoIndex

A: PartRef = ("b", "a", "v1", 0)
B: PartRef = ("b", "b", "v2", 0)
C: PartRef = ("b", "c", "v3", 1)


def info(part: PartRef, index: int, shard_bytes: int = 100) -> ShardInfo:
    shard = ShardId(1, 7, part[0], part[1], part[2], part[3], index)
    return ShardInfo(shard, 2, 1, 1024, 200, shard_bytes, shard_bytes + 64, f"f{index}")


def listing(*held: set[PartRef] | None) -> PgListing:
    return PgListing(
        1,
        7,
        2,
        1,
        tuple(range(10, 10 + len(held))),
        [None if h is None else {p: info(p, i) for p in h} for i, h in enumerate(held)],
    )


def test_a_new_member_lacks_every_part_the_others_hold() -> None:
    pg = listing({A, B}, {A, B}, set())
    assert pg.missing([2], {}) == [(A, 2), (B, 2)]
    assert pg.missing([0, 1], {}) == []


def test_a_part_only_some_positions_hold_is_missing_at_the_others() -> None:
    pg = listing({A, B}, {A}, {A, B})
    assert pg.missing([1], {}) == [(B, 1)]
    assert pg.holders(B) == [0, 2]


def test_a_repair_record_forces_a_rebuild_even_of_a_file_that_is_there() -> None:
    # The file at position 1 may be an older write under the same name.
    pg = listing({A, B}, {A, B}, {A, B})
    assert pg.missing([1], {A: frozenset({1})}) == [(A, 1)]
    assert pg.missing([0], {A: frozenset({1})}) == []


def test_a_position_that_cannot_be_listed_holds_nothing_and_misses_everything() -> None:
    pg = listing({A}, None, {A})
    assert pg.holders(A) == [0, 2]
    assert pg.missing([1], {}) == [(A, 1)]


def test_endangerment_is_the_worst_part_s_shard_count() -> None:
    assert listing({A, B}, {A, B}, {A, B}).endangerment() == 3
    assert listing({A, B}, {A}, {A}).endangerment() == 1
    assert listing(set(), set(), set()).endangerment() == 3  # nothing stored: nothing at risk
    worst_first = sorted(
        [listing({A}, {A}, {A}), listing({C}, set(), set()), listing({B}, {B}, set())],
        key=PgListing.endangerment,
    )
    assert [p.endangerment() for p in worst_first] == [1, 2, 3]


def test_parts_come_from_any_position_that_holds_them() -> None:
    pg = listing({A}, {B}, {C})
    assert set(pg.parts()) == {A, B, C}
    assert pg.parts()[B].shard.shard_index == 1


def test_token_bucket_allows_one_second_of_burst_then_paces() -> None:
    bucket = TokenBucket(100.0)
    assert bucket.delay(0.0, 100) == 0.0  # the burst
    assert bucket.delay(0.0, 50) == 0.5
    assert bucket.delay(0.0, 50) == 1.0
    # Idle time refills at most one second's worth.
    assert bucket.delay(100.0, 100) == 0.0
    assert bucket.delay(100.0, 100) == 1.0


def test_token_bucket_with_rate_zero_never_waits() -> None:
    bucket = TokenBucket(0)
    assert all(bucket.delay(0.0, 1 << 30) == 0.0 for _ in range(10))


def test_rate_meter_counts_the_last_window_only() -> None:
    meter = RateMeter(window_s=10.0)
    meter.add(0.0, 1000)
    meter.add(5.0, 1000)
    assert meter.rate(5.0) == 200.0
    assert meter.rate(12.0) == 100.0  # the first has left the window
    assert meter.rate(30.0) == 0.0


def test_a_listing_missing_a_live_member_cannot_verify_the_pg() -> None:
    # Position 1's node is up but refused the listing (a newer map epoch there): what
    # it holds is unknown, so nothing may be concluded about the PG.
    pg = listing({A}, None, {A})
    assert pg.complete
    unknown = PgListing(pg.pool_id, pg.pg, pg.k, pg.m, pg.members, pg.held, frozenset({1}))
    assert not unknown.complete


# -- which PGs a pass lists (select_work) ---------------------------------------------------

M_BEFORE = (1, 2, 3)  # the PG's members under the first table
M_DURING = (1, 2, 4)  # after a node joined: position 2 moved to device 4
LOCAL = {2}  # this node holds position 1 under both


def cluster(table_epoch: int, members: tuple[int, ...]) -> ClusterMap:
    return ClusterMap(
        cluster_id="c",
        epoch=table_epoch,
        pg_tables={1: PgTable(1, table_epoch, "d", (members,))},
    )


def test_a_pg_verified_under_the_current_table_is_not_listed_again() -> None:
    work, held, named = select_work(
        cluster(5, M_BEFORE), LOCAL, {(1, 0): (5, 100.0)}, {}, 110, 3600
    )
    assert (work, held, named) == ([], {(1, 0)}, set())


def test_members_that_come_back_to_the_same_devices_are_listed_again() -> None:
    # Verified under table 5 with M_BEFORE; the table changed (epoch 9, M_DURING, writes
    # went to device 4) and changed back (epoch 12, M_BEFORE) before this node verified
    # it again: the same members, but the old verification says nothing of the writes
    # made meanwhile (the test_repair failure of 2026-11-27).
    verified = {(1, 0): (5, 100.0)}
    work, _, _ = select_work(cluster(12, M_BEFORE), LOCAL, verified, {}, 110, 3600)
    assert work == [(1, 0, M_BEFORE, [1])]


def test_an_old_verification_and_a_repair_record_both_bring_a_pg_back() -> None:
    verified = {(1, 0): (5, 100.0)}
    work, _, _ = select_work(cluster(5, M_DURING), LOCAL, verified, {}, 100 + 3601, 3600)
    assert [w[:2] for w in work] == [(1, 0)]
    record = RepairRecord(1, 0, "bucket", "k", "v1", 0, 5, 2, 1, (1,))
    work, _, named = select_work(
        cluster(5, M_DURING), LOCAL, verified, {(1, 0): [(b"k", b"v", record)]}, 110, 3600
    )
    assert [w[:2] for w in work] == [(1, 0)] and named == {(1, 0)}


def test_a_pg_with_no_local_position_is_neither_held_nor_listed() -> None:
    work, held, _ = select_work(cluster(5, (7, 8, 9)), LOCAL, {}, {}, 0, 3600)
    assert (work, held) == ([], set())


class _Stop(Exception):
    """Ends `Repairer.run` at its first pause between passes."""


class _Devices:
    """No device: each pass asks once (`device_infos`); the first pass's asking stands
    for a map change that lands while the pass runs."""

    def __init__(self, on_first: Callable[[], None]) -> None:
        self.asked = 0
        self._on_first = on_first

    def device_infos(self) -> list[DeviceInfo]:
        self.asked += 1
        if self.asked == 1:
            self._on_first()
        return []

    async def local_pgs(self, device_id: int) -> list[tuple[int, int]]:
        return []


def test_a_map_change_during_a_pass_starts_the_next_pass_without_a_pause() -> None:
    """A node marked out is followed, within a second, by the PG table that moves its
    positions: the pass that started on the first map must be followed at once by
    one on the second, not after `interval_s` (5 s by default)."""
    epoch = [1]
    node = NodeRecord(1, "127.0.0.1:1", "", "", "", NODE_UP, True)
    devices = _Devices(lambda: epoch.__setitem__(0, 2))
    pauses: list[int] = []  # passes run before each pause

    async def sleep(seconds: float) -> None:
        pauses.append(devices.asked)
        raise _Stop

    repairer = _run_to_stop(devices, lambda: ClusterMap(epoch=epoch[0], nodes={1: node}), sleep)
    assert repairer.checked_epoch == 2
    assert pauses == [2]  # the pass on epoch 1, then at once the one on epoch 2


def _run_to_stop(
    devices: _Devices,
    cluster_map: Callable[[], ClusterMap],
    sleep: Callable[[float], Awaitable[None]],
) -> Repairer:
    """A repairer of node 1 with no index and `interval_s` 5, run until `sleep`
    raises `_Stop`."""

    async def body() -> Repairer:
        repairer = Repairer(
            1,
            devices,
            LocalClient({}),
            RpcPool(),
            NoIndex(),
            cluster_map,
            clock=lambda: 0.0,
            wall_clock=lambda: 0.0,
            sleep=sleep,
            config=RepairConfig(interval_s=5.0),
        )
        with pytest.raises(_Stop):
            await repairer.run()
        return repairer

    return asyncio.run(body())


def _pending_table_map() -> ClusterMap:
    """Node 1 with three devices in service and a pool with no PG table yet."""
    node = NodeRecord(1, "127.0.0.1:1", "", "", "", NODE_UP, True)
    pool = PoolRecord(1, "standard", 2, 1, 4, "device", "STANDARD")
    devices = {i: DeviceRecord(i, 1, f"/d{i}", 1 << 30, DEVICE_IN) for i in (1, 2, 3)}
    return ClusterMap(epoch=5, nodes={1: node}, devices=devices, pools={1: pool})


def test_a_pass_waits_for_the_pg_table_a_map_change_calls_for() -> None:
    """An out mark is committed a moment before the PG table that moves the out node's
    positions: the pass must not start on the map between the two (its rebuilds
    would go to positions about to move, and the pass on the new table would wait
    for it to end)."""
    pending = _pending_table_map()
    pool = pending.pools[1]
    assert pending.stale_pools() == [pool]
    table = PgTable(1, 6, placement_digest(pending, pool), ((1, 2, 3),) * 4)
    placed = dataclasses.replace(pending, epoch=6, pg_tables={1: table})
    assert placed.stale_pools() == []
    current = [pending]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            current[0] = placed  # the leader commits the table
        if seconds != TABLES_POLL_S:
            raise _Stop  # the pause after the first pass

    repairer = _run_to_stop(_Devices(lambda: None), lambda: current[0], sleep)
    assert repairer.checked_epoch == 6  # the first pass ran on the placed table
    assert waits[:3] == [TABLES_POLL_S] * 3


def test_a_pass_waits_for_a_pending_table_only_so_long() -> None:
    pending = _pending_table_map()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if seconds != TABLES_POLL_S:
            raise _Stop  # the pause after the first pass

    repairer = _run_to_stop(_Devices(lambda: None), lambda: pending, sleep)
    # The pass still runs, after TABLES_WAIT_S of waiting.
    assert repairer.checked_epoch == 5
    assert waits[:-1] == [TABLES_POLL_S] * round(TABLES_WAIT_S / TABLES_POLL_S)


# -- rebuilding from partial sums -----------------------------------------------------------


def _nodes(count: int = 3, down: int | None = None) -> ClusterMap:
    """Nodes 1..count (node `down` down), two devices each: devices 10+node and 20+node."""
    numbers = range(1, count + 1)
    nodes = {
        n: NodeRecord(n, f"127.0.0.1:{n}", "", "", "", NODE_DOWN if n == down else NODE_UP, True)
        for n in numbers
    }
    devices = {
        d: DeviceRecord(d, d % 10, f"/d{d}", 1 << 30, DEVICE_IN)
        for n in numbers
        for d in (10 + n, 20 + n)
    }
    return ClusterMap(epoch=9, nodes=nodes, devices=devices)


def _plan(
    m: ClusterMap, members: tuple[int, ...], position: int
) -> list[tuple[int, list[tuple[int, ShardId, int]]]] | None:
    """The reads the node holding `position` plans (devices of nodes up can serve)."""
    node_of = {
        d: device.node_id
        for d, device in m.devices.items()
        if m.nodes[device.node_id].state == NODE_UP
    }
    return plan_reads(
        members,
        [i for i in range(6) if i != position],
        position,
        4,
        2,
        node_of,
        m.devices[members[position]].node_id,
        lambda i: ShardId(1, 7, "b", "k", "v1", 0, i),
    )


@pytest.mark.parametrize("position", range(6))
def test_a_rebuild_reads_one_stream_per_node_and_the_sum_is_the_lost_shard(position: int) -> None:
    """A 4+2 PG on three nodes of two devices: the node of `position` rebuilds it
    from its own other device (read as it is), the partial sum of two sources on
    another node (coefficient 1) and one shard of the third node; summing what those
    reads would return gives the lost shard back."""
    members = (11, 12, 13, 21, 22, 23)  # position i on node (i % 3) + 1
    m = _nodes()
    reads = _plan(m, members, position)
    assert reads is not None
    node_of = {i: members[i] % 10 for i in range(6)}
    here = node_of[position]
    local = [group for _, group in reads if node_of[members.index(group[0][0])] == here]
    assert len(local) == 1 and len(local[0]) == 1  # this node's own source, alone
    combined = [group for c, group in reads if len(group) > 1]
    assert len(combined) == 1 and all(c == 1 for c, g in reads if len(g) > 1)
    assert len({node_of[members.index(d)] for d, _, _ in combined[0]}) == 1
    assert sum(len(group) for _, group in reads) == 4  # k sources, 3 streams
    assert len(reads) == 3

    layout = StripeLayout(4, 2, 4096)
    shards = [bytes(s) for s in StripeCodec(layout).encode(random.Random(position).randbytes(4000))]

    def served(group: list[tuple[int, ShardId, int]]) -> memoryview:
        data = [shards[shard.shard_index] for _, shard, _ in group]
        return memoryview(combine(bytes(c for _, _, c in group), data))

    partials = [[served(group)] for _, group in reads]
    (rebuilt,) = sum_partials(bytes(c for c, _ in reads), partials)
    assert bytes(rebuilt) == shards[position]


def test_a_rebuild_leaves_out_sources_on_a_node_that_is_not_up() -> None:
    # Four nodes, node 4 down: its one source is left out, four remain.
    reads = _plan(_nodes(4, down=4), (11, 12, 13, 21, 22, 14), 0)
    assert reads is not None
    used = sorted(shard.shard_index for _, group in reads for _, shard, _ in group)
    assert used == [1, 2, 3, 4]
    # Three nodes, node 3 down: three sources left, fewer than k: no plan (the
    # rebuild then reads whole shards, and fails for want of k).
    assert _plan(_nodes(3, down=3), (11, 12, 13, 21, 22, 23), 0) is None
