"""`atoll placement simulate`: place a pool on a synthetic cluster, add a host, remove
one, and measure balance, movement and failure-domain violations (issue 4 §2).

Pure: no I/O, no clock (the caller times it if it wants to).

- **Balance**: `max_over_mean`, the most shards on one device over the mean (devices
  of equal weight here).
- **Movement**: shards whose device changed between two tables, over the ideal:
  `total shards x capacity added / capacity after` for an added host, and
  `total shards x capacity removed / capacity before` for a removed one.
- **Violations**: `violations()` over the three tables (before, after adding, after
  removing).

Hosts are numbered 1..n and spread round-robin over zones `z1..zN`; device ids are
`host * 1000 + index`. The host added is `n + 1` (in the zone round-robin gives it),
the host removed is host 1. Removing a host is measured from the table before the
addition, and skipped (None) when too few devices would be left for the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atoll.placement.pg_table import Device, PgTable, Pool, place_pool, violations

DEVICE_WEIGHT = 1.0


def hosts_devices(hosts: int, devices_per_host: int, zones: int, first: int = 1) -> list[Device]:
    out: list[Device] = []
    for host in range(first, first + hosts):
        zone = f"z{(host - 1) % zones + 1}" if zones > 1 else ""
        out.extend(
            Device(host * 1000 + i, host, zone, "", DEVICE_WEIGHT, True)
            for i in range(devices_per_host)
        )
    return out


def moved(before: PgTable, after: PgTable) -> int:
    """Shards whose device changed (position by position)."""
    return sum(
        a != b
        for row_a, row_b in zip(before, after, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )


def loads(table: PgTable, devices: list[Device]) -> dict[int, int]:
    out = {d.id: 0 for d in devices}
    for row in table:
        for device_id in row:
            out[device_id] += 1
    return out


@dataclass(frozen=True)
class Simulation:
    pool: Pool
    devices: list[Device]
    added: list[Device]
    removed: list[Device]
    before: PgTable
    after_add: PgTable
    after_remove: PgTable | None  # None: too few devices would be left

    def figures(self) -> dict[str, Any]:
        shards = self.pool.pg_count * self.pool.width
        weight = sum(d.weight for d in self.devices)
        added = sum(d.weight for d in self.added)
        removed = sum(d.weight for d in self.removed)
        ideal_add = shards * added / (weight + added)
        ideal_remove = shards * removed / weight
        moved_add = moved(self.before, self.after_add)
        device_loads = loads(self.before, self.devices)
        mean = shards / len(self.devices)
        tables = {
            "before": (self.before, self.devices),
            "after_add": (self.after_add, self.devices + self.added),
        }
        moved_remove: int | None = None
        if self.after_remove is not None:
            left = [d for d in self.devices if d not in self.removed]
            tables["after_remove"] = (self.after_remove, left)
            moved_remove = moved(self.before, self.after_remove)
        found = {
            name: violations(self.pool, table, devices) for name, (table, devices) in tables.items()
        }
        return {
            "pool": f"{self.pool.k}+{self.pool.m}",
            "pgs": self.pool.pg_count,
            "devices": len(self.devices),
            "hosts": len({d.node_id for d in self.devices}),
            "zones": len({d.zone for d in self.devices}),
            "max_over_mean": max(device_loads.values()) / mean,
            "min_over_mean": min(device_loads.values()) / mean,
            "moved_add": moved_add,
            "ideal_add": ideal_add,
            "move_add_ratio": moved_add / ideal_add,
            "moved_remove": moved_remove,
            "ideal_remove": ideal_remove,
            "move_remove_ratio": None if moved_remove is None else moved_remove / ideal_remove,
            "violations": sum(len(v) for v in found.values()),
            "violation_details": {name: v[:20] for name, v in found.items()},
            "device_loads": {str(k): v for k, v in sorted(device_loads.items())},
            "tables": {name: [list(row) for row in table] for name, (table, _) in tables.items()},
        }


def simulate(hosts: int, devices_per_host: int, zones: int, k: int, m: int, pgs: int) -> Simulation:
    pool = Pool(1, "simulated", k, m, pgs, "zone" if zones > 1 else "host", "STANDARD")
    devices = hosts_devices(hosts, devices_per_host, zones)
    added = hosts_devices(1, devices_per_host, zones, first=hosts + 1)
    removed = [d for d in devices if d.node_id == 1]
    before = place_pool(pool, devices)
    after_add = place_pool(pool, devices + added, previous=before)
    left = [d for d in devices if d.node_id != 1]
    after_remove = place_pool(pool, left, previous=before) if len(left) >= pool.width else None
    return Simulation(pool, devices, added, removed, before, after_add, after_remove)
