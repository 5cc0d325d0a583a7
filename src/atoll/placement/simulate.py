"""`atoll placement simulate`: place a pool on a synthetic cluster, add a host, remove
one, and measure balance, movement and failure-domain violations (issue 4 §2).

Pure: no I/O, no clock; device capacities vary only through the `random.Random` the
caller passes. The cluster: hosts `1..n`, spread round-robin over zones `z1..zN` (no
zones for 0 or 1), `devices_per_host` devices each with ids `host * 1000 + i`. The
host added is `n + 1` (in the zone round-robin gives it); the host removed is host 1,
from the cluster before the addition. Both new tables are computed with the table
before as `previous`, as the meta leader does.

Figures (all recomputable from the tables and the devices in `figures()`):

- **Balance**: `max_over_mean`, the most loaded device's shards over its share by
  weight of all shards (`shards x weight / total weight`; with equal weights, the
  maximum over the mean), for the table before; `_after_add` and `_after_remove` for
  the others. `max_over_feasible_share` measures against the shares the failure
  domains allow instead (the same unless the limits keep a domain from its share by
  weight: 8+3 on 12 hosts puts a shard on 11 of the 12 hosts of every PG, whatever
  their weights).
- **Movement**: shards whose device changed (position by position) between the table
  before and each new one, over the ideal: `shards x capacity added / capacity after`
  and `shards x capacity removed / capacity before`.
- **Violations**: `violations()` of each table against its devices, summed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from atoll.placement.errors import InvalidDevices
from atoll.placement.pg_table import PgTable, layout_of, place_pool, violations
from atoll.placement.pools import Pool
from atoll.placement.ring import Device

if TYPE_CHECKING:
    from random import Random

HOSTS_MAX = 1024
DEVICES_PER_HOST_MAX = 64
CAPACITY_SPREAD_MAX = 0.9
VIOLATIONS_SHOWN_MAX = 20  # per table, in `violation_details`


@dataclass(frozen=True)
class SimulationSpec:
    hosts: int
    devices_per_host: int
    zones: int  # 0 or 1: no zones
    k: int
    m: int
    pg_count: int
    capacity_spread: float = 0.0  # weights uniform in [1 - spread, 1 + spread]

    def check(self) -> None:
        if not 1 <= self.hosts <= HOSTS_MAX:
            raise InvalidDevices(f"simulate: {self.hosts} hosts, not in [1, {HOSTS_MAX}]")
        if not 1 <= self.devices_per_host <= DEVICES_PER_HOST_MAX:
            raise InvalidDevices(
                f"simulate: {self.devices_per_host} devices per host,"
                f" not in [1, {DEVICES_PER_HOST_MAX}]"
            )
        if self.zones < 0:
            raise InvalidDevices(f"simulate: {self.zones} zones")
        if not 0 <= self.capacity_spread <= CAPACITY_SPREAD_MAX:
            raise InvalidDevices(
                f"simulate: capacity spread {self.capacity_spread}"
                f" not in [0, {CAPACITY_SPREAD_MAX}]"
            )


def hosts_devices(
    hosts: int,
    devices_per_host: int,
    zones: int,
    first: int = 1,
    capacity_spread: float = 0.0,
    rng: Random | None = None,
) -> list[Device]:
    """The devices of hosts `first .. first + hosts - 1`: ids `host * 1000 + i`, zones
    `z1..zN` round-robin by host (none for 0 or 1 zones), weight 1 or, with a spread
    and `rng`, uniform in `[1 - spread, 1 + spread]` (3 decimals)."""
    out = []
    for host in range(first, first + hosts):
        zone = f"z{(host - 1) % zones + 1}" if zones > 1 else ""
        for i in range(devices_per_host):
            weight = 1.0
            if capacity_spread and rng is not None:
                weight = round(1 + capacity_spread * (2 * rng.random() - 1), 3)
            out.append(Device(host * 1000 + i, host, zone, "", weight, True))
    return out


def moved(before: PgTable, after: PgTable) -> int:
    """Shards whose device changed, position by position."""
    return sum(
        a != b
        for row_a, row_b in zip(before, after, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )


def loads(table: PgTable, devices: Sequence[Device]) -> dict[int, int]:
    """Shards per device (0 for a device that holds none)."""
    held = Counter(d for row in table for d in row)
    return {d.id: held[d.id] for d in devices}


def max_over_share(table: PgTable, devices: Sequence[Device]) -> float:
    """The largest load over its share by weight, among devices with a weight."""
    weighted = [d for d in devices if d.in_service and d.weight > 0]
    total_weight = sum(d.weight for d in weighted)
    shards = sum(len(row) for row in table)
    load = loads(table, weighted)
    return max(load[d.id] / (shards * d.weight / total_weight) for d in weighted)


def max_over_feasible(pool: Pool, table: PgTable, devices: Sequence[Device]) -> float:
    """The largest load over the device's feasible share: its share by weight, moved
    where the failure domains' limits keep a domain from taking its whole share
    (`pg_table.Layout.share`). Above `max_over_share` only where the limits force it."""
    layout = layout_of(pool, devices)
    load = loads(table, layout.devices)
    return max(
        load[d.id] / (pool.pg_count * share)
        for d, share in zip(layout.devices, layout.share, strict=True)
    )


@dataclass(frozen=True)
class Simulation:
    spec: SimulationSpec
    pool: Pool
    devices: list[Device]
    added: list[Device]
    removed: list[Device]
    before: PgTable
    after_add: PgTable
    after_remove: PgTable | None  # None: too few devices would be left

    def tables(self) -> dict[str, tuple[PgTable, list[Device]]]:
        out = {
            "before": (self.before, self.devices),
            "after_add": (self.after_add, self.devices + self.added),
        }
        if self.after_remove is not None:
            left = [d for d in self.devices if d not in self.removed]
            out["after_remove"] = (self.after_remove, left)
        return out

    def figures(self) -> dict[str, Any]:
        shards = self.pool.pg_count * self.pool.width
        weight = sum(d.weight for d in self.devices)
        ideal_add = (
            shards
            * sum(d.weight for d in self.added)
            / (weight + sum(d.weight for d in self.added))
        )
        ideal_remove = shards * sum(d.weight for d in self.removed) / weight
        moved_add = moved(self.before, self.after_add)
        moved_remove = None if self.after_remove is None else moved(self.before, self.after_remove)
        tables = self.tables()
        found = {name: violations(self.pool, t, devices) for name, (t, devices) in tables.items()}
        balance = {name: max_over_share(t, devices) for name, (t, devices) in tables.items()}
        feasible = {
            name: max_over_feasible(self.pool, t, devices) for name, (t, devices) in tables.items()
        }
        before_loads = loads(self.before, self.devices)
        mean = shards / len(self.devices)
        return {
            "pool": f"{self.pool.k}+{self.pool.m}",
            "failure_domain": self.pool.failure_domain,
            "pgs": self.pool.pg_count,
            "shards": shards,
            "hosts": self.spec.hosts,
            "devices_per_host": self.spec.devices_per_host,
            "devices": len(self.devices),
            "zones": len({d.zone for d in self.devices}),
            "capacity_spread": self.spec.capacity_spread,
            "added_host": self.added[0].node_id,
            "removed_host": self.removed[0].node_id,
            "max_over_mean": balance["before"],
            "min_over_mean": min(before_loads.values()) / mean,
            "max_over_mean_after_add": balance["after_add"],
            "max_over_mean_after_remove": balance.get("after_remove"),
            "max_over_feasible_share": feasible,
            "moved_add": moved_add,
            "ideal_add": ideal_add,
            "move_add_ratio": moved_add / ideal_add,
            "moved_remove": moved_remove,
            "ideal_remove": ideal_remove,
            "move_remove_ratio": None if moved_remove is None else moved_remove / ideal_remove,
            "violations": sum(len(v) for v in found.values()),
            "violations_by_table": {name: len(v) for name, v in found.items()},
            "violation_details": {name: v[:VIOLATIONS_SHOWN_MAX] for name, v in found.items()},
            "device_loads": {str(d): n for d, n in sorted(before_loads.items())},
            "weights": {str(d.id): d.weight for d in self.devices + self.added},
            "tables": {name: [list(row) for row in t] for name, (t, _) in tables.items()},
        }


def simulate(spec: SimulationSpec, rng: Random | None = None) -> Simulation:
    """Place, add host `hosts + 1`, remove host 1. `rng` draws device weights when
    `spec.capacity_spread` is above 0 (equal weights without it)."""
    spec.check()
    pool = Pool(
        1, "simulated", spec.k, spec.m, spec.pg_count, "zone" if spec.zones > 1 else "host", ""
    )
    shape = (spec.devices_per_host, spec.zones)
    devices = hosts_devices(spec.hosts, *shape, 1, spec.capacity_spread, rng)
    added = hosts_devices(1, *shape, spec.hosts + 1, spec.capacity_spread, rng)
    removed = [d for d in devices if d.node_id == 1]
    left = [d for d in devices if d.node_id != 1]
    before = place_pool(pool, devices)
    after_add = place_pool(pool, devices + added, before)
    after_remove = place_pool(pool, left, before) if len(left) >= pool.width else None
    return Simulation(spec, pool, devices, added, removed, before, after_add, after_remove)
