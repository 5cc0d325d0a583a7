"""PG tables: which `k+m` devices hold each placement group of a pool, in shard order.

Pure: no I/O, no clock, no randomness (ties are broken by stable hashes). Computed by
the meta leader from the devices in service (and the pool's current table), committed
in the cluster map, so every node uses the same table at the same epoch.

`place_pool(pool, devices, previous)` works in three steps:

1. **Keep.** With a previous table, every PG keeps each member still in service, in
   its position (shard `i` stays on member `i`). Only positions whose device left are
   holes. Without one, every position is a hole.
2. **Fill** each hole by walking the consistent-hash ring (`Ring`) clockwise from the
   PG's point and taking the first device that the PG does not hold yet and whose
   failure domains have room: at most `ceil(width / zones)` shards of a PG per zone
   (failure domain `zone`, when there are several zones) and at most
   `ceil(width / hosts)` per host (failure domains `zone` and `host`). If the cluster
   cannot meet a limit (hosts of very different sizes), the limit is raised by one
   until the PG fills; `violations` reports such PGs.
3. **Balance** (as Ceph's upmap balancer): a device's target is its share of all
   shards by weight; while some device is more than `tolerance` over or under its
   target (and by a whole shard or more), move one shard from the most loaded device
   to the least loaded device that may take it within the limits. Each move changes
   one position of one PG.

Movement. A device added takes shards only through balancing, one move per shard it
receives; a device removed gives up exactly its own shards (its holes), filled on the
ring, and balancing then evens out. So a change moves close to the ideal
(`shards x capacity changed / capacity`); `atoll placement simulate` measures it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from atoll.placement.errors import PlacementError
from atoll.placement.ring import Ring, hash64

PgTable = tuple[tuple[int, ...], ...]
"""pg index -> device ids; shard `i` of the PG lives on its `i`-th device."""

FAILURE_DOMAINS = ("zone", "host", "device")
BALANCE_TOLERANCE = 0.05  # a device within 5% of its target is balanced
MOVES_PER_SHARD_MAX = 2  # bound on balancing moves: 2 x the number of shards
CANDIDATES_MAX = 8  # receivers a loaded device tries, least loaded first


def _mix(a: int, b: int) -> int:
    """A cheap, stable 32-bit mix of two ints: the order balancing visits PGs in."""
    x = (a * 0x9E3779B1 + b * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 15
    return (x * 0x2C1B3C6D) & 0xFFFFFFFF


@dataclass(frozen=True)
class Device:
    """One disk as placement sees it. `node_id` is its host."""

    id: int
    node_id: int
    zone: str
    rack: str
    weight: float  # proportional to capacity; 0 takes no new data
    in_service: bool


@dataclass(frozen=True)
class Pool:
    id: int
    name: str
    k: int
    m: int
    pg_count: int  # a power of two
    failure_domain: str  # "zone" | "host" | "device"
    storage_class: str

    @property
    def width(self) -> int:
        return self.k + self.m


def pg_of(pool: Pool, bucket: str, key: str, version_id: str) -> int:
    """The PG of an object version: a stable hash, masked to the pool's PG count."""
    return hash64("object", pool.id, bucket, key, version_id) & (pool.pg_count - 1)


@dataclass(frozen=True)
class Limits:
    """The most shards of one PG a zone and a host may hold (0: no limit)."""

    zone: int
    host: int


def limits_for(pool: Pool, devices: Sequence[Device]) -> Limits:
    width = pool.width
    zones = {d.zone for d in devices}
    hosts = {d.node_id for d in devices}
    zone = math.ceil(width / len(zones)) if pool.failure_domain == "zone" and len(zones) > 1 else 0
    host = math.ceil(width / len(hosts)) if pool.failure_domain in ("zone", "host") else 0
    return Limits(zone, host)


def _fits(
    members: Sequence[int | None],
    candidate: Device,
    by_id: dict[int, Device],
    limits: Limits,
    ignore: int | None = None,
) -> bool:
    """Whether `candidate` may join a PG with `members` (position `ignore` excepted)."""
    zone_count = host_count = 0
    for position, member in enumerate(members):
        if member is None or position == ignore:
            continue
        if member == candidate.id:
            return False
        device = by_id[member]
        if device.zone == candidate.zone:
            zone_count += 1
        if device.node_id == candidate.node_id:
            host_count += 1
    if limits.zone and zone_count >= limits.zone:
        return False
    return not (limits.host and host_count >= limits.host)


def place_pool(
    pool: Pool,
    devices: Sequence[Device],
    previous: PgTable | None = None,
    tolerance: float = BALANCE_TOLERANCE,
) -> PgTable:
    """The PG table of `pool` over the devices in service; `previous` (the pool's
    current table) keeps what can stay. Deterministic from its arguments, whatever
    the order of `devices`."""
    live = sorted((d for d in devices if d.in_service and d.weight > 0), key=lambda d: d.id)
    width = pool.width
    if pool.pg_count < 1 or pool.pg_count & (pool.pg_count - 1):
        raise PlacementError(f"pool {pool.name}: pg_count {pool.pg_count} is not a power of two")
    if len(live) < width:
        raise PlacementError(
            f"pool {pool.name} ({pool.k}+{pool.m}) needs {width} devices in service,"
            f" the cluster has {len(live)}"
        )
    if previous is not None and len(previous) != pool.pg_count:
        previous = None  # another PG count: start afresh
    by_id = {d.id: d for d in live}
    ring = Ring([(d.id, d.weight) for d in live])
    limits = limits_for(pool, live)
    table: list[list[int | None]] = []
    for pg in range(pool.pg_count):
        members: list[int | None] = [None] * width
        if previous is not None and len(previous[pg]) == width:
            members = [d if d in by_id else None for d in previous[pg]]
            if len({d for d in members if d is not None}) != sum(d is not None for d in members):
                members = [None] * width  # a corrupt previous row: refill it
        _fill(pool, pg, members, ring, by_id, limits)
        table.append(members)
    filled = [[d for d in row if d is not None] for row in table]
    _balance(pool, filled, live, by_id, limits, tolerance)
    return tuple(tuple(row) for row in filled)


def _fill(
    pool: Pool,
    pg: int,
    members: list[int | None],
    ring: Ring,
    by_id: dict[int, Device],
    limits: Limits,
) -> None:
    for position in range(len(members)):
        if members[position] is not None:
            continue
        relaxed = limits
        while True:
            for device_id in ring.walk(hash64("pg", pool.id, pg, position)):
                if _fits(members, by_id[device_id], by_id, relaxed):
                    members[position] = device_id
                    break
            if members[position] is not None:
                break
            relaxed = Limits(relaxed.zone and relaxed.zone + 1, relaxed.host and relaxed.host + 1)


def _balance(
    pool: Pool,
    table: list[list[int]],
    live: Sequence[Device],
    by_id: dict[int, Device],
    limits: Limits,
    tolerance: float,
) -> None:
    """Move single shards from the most loaded to the least loaded devices until every
    device is within `tolerance` of its target, or no move helps."""
    balancer = _Balancer(pool, table, live, by_id, limits)
    for _ in range(MOVES_PER_SHARD_MAX * len(table) * pool.width):
        ranked = sorted(balancer.target, key=lambda d: (balancer.ratio(d), d))
        low, high = ranked[0], ranked[-1]
        if not (balancer.off(high, tolerance) or balancer.off(low, tolerance)):
            return
        # Take from the most loaded device first; if it cannot give to anyone, bring
        # the least loaded device a shard from whoever can spare one.
        if not (balancer.give(high, ranked) or balancer.take(low)):
            return


class _Balancer:
    def __init__(
        self,
        pool: Pool,
        table: list[list[int]],
        live: Sequence[Device],
        by_id: dict[int, Device],
        limits: Limits,
    ) -> None:
        total_weight = sum(d.weight for d in live)
        shards = len(table) * pool.width
        self.table = table
        self.by_id = by_id
        self.limits = limits
        self.target = {d.id: shards * d.weight / total_weight for d in live}
        self.load: Counter[int] = Counter(d for row in table for d in row)
        self.holders: dict[int, set[int]] = {d.id: set() for d in live}
        for pg, row in enumerate(table):
            for device_id in row:
                self.holders[device_id].add(pg)

    def ratio(self, device_id: int) -> float:
        return self.load[device_id] / self.target[device_id]

    def off(self, device_id: int, tolerance: float) -> bool:
        """Whether a device is out of balance: more than `tolerance` away from its
        target, and by at least one whole shard (small clusters cannot do better)."""
        gap = abs(self.load[device_id] - self.target[device_id])
        return gap >= 1 and gap > tolerance * self.target[device_id]

    def ratio_after(self, device_id: int) -> float:
        """The device's ratio once it takes one more shard."""
        return (self.load[device_id] + 1) / self.target[device_id]

    def move(self, pg: int, position: int, to: int) -> None:
        source = self.table[pg][position]
        self.table[pg][position] = to
        self.holders[source].discard(pg)
        self.holders[to].add(pg)
        self.load[source] -= 1
        self.load[to] += 1

    def give(self, source: int, ranked: list[int]) -> bool:
        """Move one shard of `source` to one of the least loaded devices that may take
        it and stay below `source`'s ratio."""
        source_ratio = self.ratio(source)
        candidates = [to for to in ranked if to != source and self.ratio_after(to) < source_ratio][
            :CANDIDATES_MAX
        ]
        if not candidates:
            return False
        for pg in sorted(self.holders[source], key=lambda pg: _mix(pg, source)):
            position = self.table[pg].index(source)
            for to in candidates:
                if _fits(self.table[pg], self.by_id[to], self.by_id, self.limits, position):
                    self.move(pg, position, to)
                    return True
        return False

    def take(self, receiver: int) -> bool:
        """Move to `receiver` a shard of a device loaded well above it: the first such
        shard in a fixed pseudo-random order of PGs that the limits allow."""
        threshold = self.ratio_after(receiver)
        device = self.by_id[receiver]
        for pg in sorted(range(len(self.table)), key=lambda pg: _mix(pg, receiver)):
            if pg in self.holders[receiver]:
                continue
            row = self.table[pg]
            for position, member in enumerate(row):
                if self.ratio(member) > threshold and _fits(
                    row, device, self.by_id, self.limits, position
                ):
                    self.move(pg, position, receiver)
                    return True
        return False


def _zone_of(device: Device) -> str:
    return device.zone


def _host_of(device: Device) -> str:
    return str(device.node_id)


def violations(pool: Pool, table: PgTable, devices: Sequence[Device]) -> list[str]:
    """Every broken placement rule in `table`: a device twice in a PG, a device not
    among `devices`, or a failure domain (zone where there are several zones and the
    pool's domain is zone, else host, unless the domain is device) holding more than
    `ceil(width / domains)` shards of a PG."""
    by_id = {d.id: d for d in devices}
    out: list[str] = []
    zones = {d.zone for d in devices}
    hosts = {d.node_id for d in devices}
    domain_of: Callable[[Device], str] | None = None
    domains, name = 0, "device"
    if pool.failure_domain == "zone" and len(zones) > 1:
        domain_of, domains, name = _zone_of, len(zones), "zone"
    elif pool.failure_domain in ("zone", "host"):
        domain_of, domains, name = _host_of, len(hosts), "host"
    for pg, row in enumerate(table):
        if len(set(row)) != len(row):
            out.append(f"PG {pg}: a device holds two shards: {list(row)}")
        unknown = [d for d in row if d not in by_id]
        if unknown:
            out.append(f"PG {pg}: unknown devices {unknown}")
            continue
        if domain_of is not None:
            cap = math.ceil(len(row) / domains)
            counts = Counter(domain_of(by_id[d]) for d in row)
            worst, count = counts.most_common(1)[0]
            if count > cap:
                out.append(f"PG {pg}: {name} {worst} holds {count} shards, over {cap}")
    return out
