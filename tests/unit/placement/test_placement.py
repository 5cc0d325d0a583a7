"""Placement (src/atoll/placement/): the ring, PG tables, default pools, pg_of. Pure,
no mocks; the properties over random clusters are in tests/property/test_placement.py."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import pytest

from atoll.placement import (
    Device,
    PlacementError,
    Pool,
    default_pools,
    pg_of,
    place_pool,
    violations,
)
from atoll.placement.ring import Ring, hash64, vnodes_for
from atoll.placement.simulate import hosts_devices, moved


def pool(k: int, m: int, pgs: int = 64, domain: str = "host") -> Pool:
    return Pool(1, "p", k, m, pgs, domain, "STANDARD")


def test_hash64_is_blake2b_of_the_joined_parts() -> None:
    # Computed independently of the module: BLAKE2b-64 of "a\x1f1\x1fb", big-endian.
    expected = int.from_bytes(hashlib.blake2b(b"a\x1f1\x1fb", digest_size=8).digest(), "big")
    assert hash64("a", 1, "b") == expected


def test_pg_of_is_stable_and_masked() -> None:
    p = pool(4, 2, pgs=256)
    digest = hashlib.blake2b(b"object\x1f1\x1fbucket\x1fkey\x1fv1", digest_size=8).digest()
    assert pg_of(p, "bucket", "key", "v1") == int.from_bytes(digest, "big") % 256
    spread = Counter(pg_of(p, "b", f"k{i}", "") for i in range(25_600))
    assert len(spread) == 256 and max(spread.values()) < 2 * 100


def test_ring_walk_visits_every_device_once_and_weights_count() -> None:
    ring = Ring([(1, 1.0), (2, 1.0), (3, 4.0), (4, 0.0)])
    assert sorted(ring.walk(12345)) == [1, 2, 3]  # weight 0 takes nothing
    firsts = Counter(next(ring.walk(hash64("k", i))) for i in range(6000))
    assert firsts[3] > 2.5 * firsts[1] and firsts[3] > 2.5 * firsts[2]
    assert vnodes_for(1.0) == 128 and vnodes_for(0.001) == 16 and vnodes_for(100.0) == 1024
    assert list(Ring([]).walk(1)) == []


def test_a_device_added_to_the_ring_only_takes_first_places() -> None:
    before = Ring([(d, 1.0) for d in range(1, 9)])
    after = Ring([(d, 1.0) for d in range(1, 10)])
    for i in range(500):
        point = hash64("p", i)
        walk_before = list(before.walk(point))
        walk_after = [d for d in after.walk(point) if d != 9]
        assert walk_before == walk_after  # removing 9 from the walk gives the old walk


def test_three_hosts_two_devices_four_plus_two() -> None:
    devices = hosts_devices(3, 2, 1)
    p = pool(4, 2, pgs=128)
    table = place_pool(p, devices)
    assert len(table) == 128 and violations(p, table, devices) == []
    for row in table:
        # Every device once per PG, two per host: a host down loses m = 2 shards.
        assert sorted(row) == sorted(d.id for d in devices)
        assert max(Counter(d // 1000 for d in row).values()) == 2


def test_deterministic_and_independent_of_device_order() -> None:
    devices = hosts_devices(5, 3, 1)
    p = pool(4, 2)
    assert place_pool(p, devices) == place_pool(p, list(reversed(devices)))


def test_weights_set_the_load() -> None:
    devices = [Device(i, i, "", "", 2.0 if i <= 3 else 1.0, True) for i in range(1, 10)]
    p = pool(2, 1, pgs=512)
    table = place_pool(p, devices)
    load = Counter(d for row in table for d in row)
    heavy = sum(load[i] for i in (1, 2, 3)) / 3
    light = sum(load[i] for i in range(4, 10)) / 6
    assert 1.8 < heavy / light < 2.2


def test_out_of_service_devices_leave_only_their_own_shards() -> None:
    devices = hosts_devices(6, 2, 1)
    p = pool(4, 2, pgs=256)
    before = place_pool(p, devices)
    gone = devices[0].id
    after = place_pool(
        p,
        [Device(d.id, d.node_id, d.zone, d.rack, d.weight, d.id != gone) for d in devices],
        before,
    )
    assert all(gone not in row for row in after)
    held = sum(row.count(gone) for row in before)
    # Its own shards move; balancing may move a few more, never many.
    assert held <= moved(before, after) <= math.ceil(1.2 * held)


def test_typed_errors_and_violation_reports() -> None:
    with pytest.raises(PlacementError, match="needs 6 devices"):
        place_pool(pool(4, 2), hosts_devices(2, 2, 1))
    with pytest.raises(PlacementError, match="power of two"):
        place_pool(Pool(1, "p", 1, 1, 3, "host", "S"), hosts_devices(2, 1, 1))
    devices = hosts_devices(3, 2, 1)
    p = pool(2, 1, pgs=2)
    found = violations(p, ((1000, 1000, 2000), (1000, 1001, 3000)), devices)
    assert any("two shards" in v for v in found) and any("host 1 holds 2" in v for v in found)
    assert violations(p, ((1000, 99, 2000), (1000, 2000, 3000)), devices) == [
        "PG 0: unknown devices [99]"
    ]


def test_uneven_hosts_relax_the_limit_rather_than_fail() -> None:
    # 4+2 on hosts of 4, 1 and 1 devices: at most 2 per host is impossible.
    devices = hosts_devices(1, 4, 1) + hosts_devices(2, 1, 1, first=2)
    p = pool(4, 2, pgs=16)
    table = place_pool(p, devices)
    assert all(len(set(row)) == 6 for row in table)
    assert violations(p, table, devices)  # reported, not hidden


@pytest.mark.parametrize(
    ("devices", "standard", "replicated"),
    [(1, (1, 0), False), (2, (1, 1), False), (3, (2, 1), True), (5, (2, 1), True),
     (6, (4, 2), True), (11, (4, 2), True), (12, (8, 3), True), (16, (8, 3), True)],
)  # fmt: skip
def test_default_pools_follow_the_sizing_rules(
    devices: int, standard: tuple[int, int], replicated: bool
) -> None:
    pools = default_pools(hosts_devices(devices, 1, 1))
    assert (pools[0].name, (pools[0].k, pools[0].m), pools[0].storage_class) == (
        "standard",
        standard,
        "STANDARD",
    )
    assert (len(pools) == 2) == replicated
    if replicated:
        assert (pools[1].k, pools[1].m, pools[1].storage_class) == (1, 2, "REDUCED_REDUNDANCY")
    for p in pools:
        assert p.pg_count & (p.pg_count - 1) == 0 and p.failure_domain == "host"
